//! What the core asks its driver to do.
//!
//! The driver drains actions with [`RaftNode::poll_action`](super::RaftNode::poll_action)
//! after every input. Rules:
//! - `PersistHardState` and `PersistEntries` must reach the disk in the order
//!   given (one ordered write queue); each completion is reported back with
//!   `handle_hard_state_persisted` / `handle_entries_persisted`.
//! - `Send` may go out at once, in parallel with the disk: the core holds back
//!   every message that claims durability (vote grants, append
//!   acknowledgements) until the disk has confirmed it.
//! - `Apply` batches are handed out in log order, each entry exactly once.

use super::entry::HardState;
use super::entry_batch::EntryBatch;
use super::error::{ProposalLost, ReadFailure};
use super::ids::{LogId, LogIndex, NodeId, Term};
use super::log_load::EntriesLoad;
use super::message::Message;
use super::read::ReadId;
use super::snapshot::SnapshotInfo;

/// One thing for the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this message to `message.to`.
    Send(Message),
    /// Make this term and vote durable, then report it.
    PersistHardState(HardState),
    /// Remove any durable entries at or after `entries[0].id.index`, then make
    /// these (contiguous, ascending) entries durable, then report the last.
    PersistEntries {
        /// The entries to write (shared with the peers' appends).
        entries: EntryBatch,
    },
    /// Apply these committed entries to the state machine, in order. A
    /// client waiting on a proposal with one of these ids gets its result.
    Apply {
        /// The entries, in log order.
        entries: EntryBatch,
    },
    /// The log through `through` is covered by a durable snapshot: storage
    /// may drop it (prefix truncation), in order with the other writes.
    CompactLog {
        /// The last entry to drop.
        through: LogId,
    },
    /// An installed snapshot replaced the whole log: storage drops every
    /// entry and continues after `snapshot` (in order with the other writes).
    ResetLog {
        /// The installed snapshot's last entry.
        snapshot: LogId,
    },
    /// Pull `snapshot` from `from` (the leader), make it durable, load it
    /// into the state machine, then report `handle_snapshot_installed` (or
    /// `handle_snapshot_install_failed`). No `Apply` is handed out meanwhile.
    InstallSnapshot {
        /// Who offers it.
        from: NodeId,
        /// What it covers.
        snapshot: SnapshotInfo,
    },
    /// Read entries back from the log's storage for a peer (they were
    /// evicted from memory: `RaftOptions::log_cache_bytes_max`), off the
    /// protocol's path, then report `handle_entries_loaded` or
    /// `handle_entries_load_failed`. Never answer with bytes that failed
    /// their checksum.
    LoadEntries(EntriesLoad),
    /// A proposal this node accepted will never be applied.
    ProposalFailed(ProposalLost),
    /// Read `id` may be served once the state machine has applied every
    /// `Apply` handed out before this action (which reach at least `index`).
    ReadReady {
        /// The read.
        id: ReadId,
        /// Its read index.
        index: LogIndex,
    },
    /// Read `id` failed; nothing may be served for it.
    ReadFailed {
        /// The read.
        id: ReadId,
        /// Why (every failure is retryable).
        error: ReadFailure,
    },
    /// The node's role, term or known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: Term,
        /// The leader of this term, if known.
        leader: Option<NodeId>,
    },
}

/// A node's role in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for pre-votes, without bumping its term.
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Leads its term.
    Leader,
}
