//! The errors a service embedding oar sees.

use std::net::SocketAddr;

use super::group_id::GroupId;
use super::session::SessionError;
use super::state_machine::QueryError;
use crate::core::{ConfChangeError, LogId, NodeId, TransferError};
use crate::storage::StorageError;

/// Why a client request to a Raft group did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This node does not lead its group. Remedy: retry at the leader.
    #[error("not the leader (leader: {leader:?} at {leader_addr:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
        /// The leader's Raft address, when known.
        leader_addr: Option<SocketAddr>,
    },
    /// The leader a read depended on stepped down, or another took over,
    /// before the read was confirmed: nothing was served. Remedy: retry
    /// (at `leader` when known).
    #[error("leadership lost before the read was confirmed (leader: {leader:?})")]
    LeadershipLost {
        /// The leader this node knows of now, if any.
        leader: Option<NodeId>,
    },
    /// A read was not confirmed within an election timeout (no quorum
    /// answered): nothing was served. Remedy: retry; the group may be
    /// partitioned.
    #[error("the read was not confirmed in time")]
    Timeout,
    /// Too many reads are pending on this node. Remedy: retry later.
    #[error("too many reads pending (at most {pending_max})")]
    Busy {
        /// The limit (`RaftOptions::read_pending_max`).
        pending_max: usize,
    },
    /// The request's entry was replaced by a later leader's: it was not and
    /// will never be applied. Remedy: retry.
    #[error("proposal {0} was overwritten by a new leader")]
    Overwritten(LogId),
    /// A snapshot installed from the leader covered the request's entry
    /// before this node applied it: it may or may not have been applied,
    /// and its response is lost. Remedy: retry in a session (which
    /// `oar::client` does), read back, or retry an idempotent request.
    #[error("proposal {0} was covered by an installed snapshot; outcome unknown")]
    OutcomeUnknown(LogId),
    /// The group stopped while the request was in flight: it may or may
    /// not have been committed. Remedy: retry in a session (which
    /// `oar::client` does), read back, or retry an idempotent request.
    #[error("the group shut down with the request in flight")]
    Shutdown,
    /// The group is not running, so the request was not accepted: it was
    /// not and will not be applied. Remedy: retry at another member.
    #[error("the group is not running; request not accepted")]
    NotRunning,
    /// No group with this id runs on this server.
    #[error("group {0} not found")]
    GroupNotFound(GroupId),
    /// A group with this id already runs on this server.
    #[error("group {0} already exists")]
    GroupExists(GroupId),
    /// The group stopped after a storage failure (fail-stop): the disk
    /// could not confirm a write, so the node can no longer vouch for its
    /// log; or its storage could not be recovered at start. The
    /// [`StorageError`] says which: `Locked` (another instance has the
    /// directory), `Corruption` (restore this node from its peers), `Io`
    /// (repair the disk and restart the node)...
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// The state machine broke its contract (e.g. a response count that
    /// does not match the commands).
    #[error("state machine error: {0}")]
    StateMachine(String),
    /// An on-disk state machine claims to hold, durably, entries through
    /// `claimed`, which this node's log does not hold (past its end, or of
    /// another term): it can only have applied committed entries, which the
    /// log keeps after the newest snapshot, so its store is corrupt or
    /// another node's. The group does not start. Remedy: remove the state
    /// machine's store (it then starts from the snapshot), or restore the
    /// node from its peers.
    #[error(
        "the state machine claims entries through {claimed}, which the log (through {log_last}) does not hold"
    )]
    AppliedNotInLog {
        /// The state machine's durable applied point.
        claimed: LogId,
        /// The log's last entry.
        log_last: LogId,
    },
    /// A membership change was refused (see the inner error for the remedy).
    #[error("membership change refused: {0}")]
    ConfChange(#[from] ConfChangeError),
    /// A leadership transfer was refused.
    #[error("leadership transfer refused: {0}")]
    Transfer(#[from] TransferError),
    /// Invalid options.
    #[error("invalid options: {0}")]
    Options(String),
    /// The command is larger than the group accepts
    /// ([`GroupOptions::command_bytes_max`](super::GroupOptions::command_bytes_max));
    /// nothing was logged. Remedy: split it, or raise the limit within what
    /// a log record and a frame hold.
    #[error("command of {size} bytes exceeds the limit of {max}")]
    CommandTooLarge {
        /// The command's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A session request was refused (see the inner error for the remedy);
    /// the command was not applied.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A session verb on a group without sessions
    /// ([`GroupOptions::sessions`](super::GroupOptions::sessions) is `None`).
    #[error("this group does not keep client sessions")]
    SessionsDisabled,
    /// The state machine did not answer a query (see the inner error).
    #[error("query: {0}")]
    Query(#[from] QueryError),
    /// A network operation failed.
    #[error("transport: {0}")]
    Transport(String),
}
