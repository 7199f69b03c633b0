//! Protocol messages between peers, as plain Rust values.
//!
//! The wire form (protobuf) lives in `runtime`; keeping it out of the core
//! keeps codec errors out of the protocol (see STYLE.md §11).

use super::entry_batch::EntryBatch;
use super::ids::{LogId, LogIndex, NodeId, Term};
use super::snapshot::SnapshotInfo;

/// One message from one node to another, in the sender's term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The recipient.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of protocol messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// RequestVote (Raft §5.2), or a pre-vote (dissertation §9.6).
    VoteRequest(VoteRequest),
    /// The answer to a [`VoteRequest`].
    VoteResponse(VoteResponse),
    /// AppendEntries (Raft §5.3).
    AppendRequest(AppendRequest),
    /// The answer to an [`AppendRequest`].
    AppendResponse(AppendResponse),
    /// A leader's keep-alive, carrying what the recipient may commit.
    Heartbeat(Heartbeat),
    /// A leader's last heartbeat before it goes quiet (`core::quiesce`):
    /// the recipient also stops its election timer if its log is exactly
    /// the committed log described. Answered like a heartbeat.
    Quiesce(Heartbeat),
    /// The answer to a [`Heartbeat`], echoing its round.
    HeartbeatResponse {
        /// The heartbeat's [`Heartbeat::round`] (0 when refusing a stale term).
        round: u64,
    },
    /// A leader transferring leadership tells its up-to-date target to
    /// campaign at once, skipping pre-vote (dissertation §3.10).
    TimeoutNow,
    /// The leader no longer holds the entries the follower needs: it offers
    /// its snapshot, which the follower's driver pulls in chunks (Raft §7).
    /// Success is acknowledged like an append; see [`MessageBody::SnapshotFailed`].
    InstallSnapshot(SnapshotInfo),
    /// The follower could not install the offered snapshot (e.g. the leader
    /// replaced it meanwhile): the leader offers its newest one again.
    SnapshotFailed {
        /// The snapshot that failed.
        last: LogId,
    },
    /// The answer to a vote or pre-vote request from a node that the
    /// sender's committed configuration does not list as a voter: the entry
    /// at `config` carries that configuration. The candidate stops
    /// campaigning until its log holds a configuration entry after `config`
    /// (see `removed.rs`; dissertation §4.2.3).
    Removed {
        /// The index of the committed configuration entry that drops the
        /// recipient.
        config: LogIndex,
    },
    /// A follower or learner asks its leader for a read index, for every
    /// read it queued (see `core::read`).
    ReadIndexRequest(ReadIndexRequest),
    /// The leader's answer to a [`ReadIndexRequest`].
    ReadIndexResponse(ReadIndexResponse),
}

/// A follower's request for a read index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndexRequest {
    /// Names the request on the follower; echoed in the answer.
    pub request: u64,
    /// The leader may answer from its lease, without a round.
    pub lease: bool,
}

/// A leader's answer to a [`ReadIndexRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndexResponse {
    /// The request answered.
    pub request: u64,
    /// The read index, confirmed by a quorum round sent after the request
    /// arrived; `None`: refused (not the leader, or overloaded).
    pub read_index: Option<LogIndex>,
}

/// A request for a vote or a pre-vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    /// A pre-vote: asks whether the voter would vote, changing no state.
    pub pre_vote: bool,
    /// The candidate's last log entry, for the up-to-date check (§5.4.1).
    pub last_log_id: LogId,
    /// Sent by a leadership-transfer target: voters skip the lease check.
    pub leadership_transfer: bool,
}

/// A vote or pre-vote, granted or refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteResponse {
    /// Answers a pre-vote.
    pub pre_vote: bool,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// Entries for a follower, after `prev_log_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    /// The entry just before `entries`; the follower must hold it (§5.3).
    pub prev_log_id: LogId,
    /// Contiguous entries starting at `prev_log_id.index + 1` (may be empty).
    pub entries: EntryBatch,
    /// The leader's commit index.
    pub leader_commit: LogIndex,
}

/// A follower's answer to an [`AppendRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendResponse {
    /// Every entry up to `match_index` is durable on the follower and matches
    /// the leader's log.
    Success {
        /// The highest matching durable index.
        match_index: LogIndex,
    },
    /// The follower does not hold the request's `prev_log_id`.
    Reject {
        /// The index of the `prev_log_id` that did not match.
        rejected: LogIndex,
        /// Where the logs may diverge, for fast backtracking.
        hint: RejectHint,
    },
}

/// A follower's hint after a rejection, so the leader can skip a whole term
/// of conflicting entries per round trip instead of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectHint {
    /// The follower's last index.
    pub last_index: LogIndex,
    /// If the follower holds an entry at the rejected index: its term and the
    /// first index of that term in the follower's log.
    pub conflict: Option<(Term, LogIndex)>,
}

impl RejectHint {
    /// The hint of a follower that refuses the sender as unknown: its last
    /// index and no term. A follower that compares logs names the term of
    /// any entry it holds at the rejected index, so a rejection at or below
    /// `last_index` without one says "I do not know you" (see
    /// [`refuses_sender`](Self::refuses_sender)).
    pub fn refusal(last_index: LogIndex) -> Self {
        RejectHint {
            last_index,
            conflict: None,
        }
    }

    /// Whether a rejection at `rejected` with this hint is a refusal of the
    /// sender (see [`refusal`](Self::refusal)) rather than a log mismatch.
    pub fn refuses_sender(&self, rejected: LogIndex) -> bool {
        self.conflict.is_none() && rejected <= self.last_index
    }
}

/// A leader's heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The leader's commit index, capped at what the recipient is known to
    /// hold, so the follower may commit up to it without a log check.
    pub leader_commit: LogIndex,
    /// The leader's heartbeat round, echoed in the response: a quorum's
    /// echo confirms its reads and renews its lease (see `core::read`).
    pub round: u64,
}
