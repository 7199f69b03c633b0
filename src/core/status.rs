//! A read-only view of a node, for status pages, admin tools and tests.

use super::entry::HardState;
use super::ids::{LogId, LogIndex, NodeId};
use super::membership::Membership;
use super::output::Role;
use super::progress::ProgressState;

/// What a node knows about itself and, when leading, its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term and vote (not necessarily durable yet).
    pub hard_state: HardState,
    /// The leader it knows for its term.
    pub leader: Option<NodeId>,
    /// Its first log entry held (earlier ones were compacted).
    pub first_index: LogIndex,
    /// Its last log entry.
    pub last_log_id: LogId,
    /// Its last entry evicted from memory (`RaftOptions::log_cache_bytes_max`;
    /// read back from disk when a peer needs it); `first_index - 1` when
    /// none is.
    pub evicted_through: LogIndex,
    /// The last entry of its newest durable snapshot.
    pub snapshot: Option<LogId>,
    /// Its commit index.
    pub committed: LogIndex,
    /// The highest index handed out for applying.
    pub applied: LogIndex,
    /// The highest locally durable index.
    pub persisted: LogIndex,
    /// The configuration in effect.
    pub membership: Membership,
    /// Per-peer replication progress, when leading.
    pub peers: Vec<PeerStatus>,
    /// Whether the node is quiet (`core::quiesce`): no timer runs.
    pub quiet: bool,
}

/// A leader's view of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub id: NodeId,
    /// The highest index known to match and be durable there.
    pub matched: LogIndex,
    /// The next index to send.
    pub next: LogIndex,
    /// Probe, Replicate or Snapshot.
    pub state: ProgressState,
    /// AppendEntries in flight.
    pub inflight_msgs: usize,
}
