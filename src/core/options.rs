//! Protocol options (braft's `NodeOptions`, protocol part).

use std::time::Duration;

use super::error::OptionsError;
use super::ids::NodeId;

/// Options of one Raft node. `Default` gives sensible values except `id`.
#[derive(Clone, Debug)]
pub struct RaftOptions {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_timeout_max: Duration,
    /// How often a leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// Run a pre-vote round before a real election, so that a node that was
    /// partitioned does not bump the term on rejoining (dissertation §9.6).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum within an
    /// election timeout; followers that hear from a leader ignore votes
    /// (leader stickiness) for `election_timeout_min`.
    pub check_quorum: bool,
    /// At most this many entries in one AppendEntries.
    pub append_entries_max: usize,
    /// At most this many entry bytes in one AppendEntries (one larger entry
    /// still goes alone).
    pub append_bytes_max: u64,
    /// At most this many AppendEntries in flight to one peer.
    pub inflight_msgs_max: usize,
    /// At most this many entry bytes in flight to one peer.
    pub inflight_bytes_max: u64,
    /// At most this many entries handed out in one apply action.
    pub apply_batch_max: usize,
    /// Seed of the node's random number generator (election timeouts): the
    /// only source of randomness in the core.
    pub rng_seed: u64,
    /// A learner is promoted to voter only when it holds entries within this
    /// many of the leader's last index (braft's `catchup_margin`).
    pub catchup_margin: u64,
    /// After a snapshot, the log keeps this many entries before its last
    /// index, so a follower lagging by less catches up from the log rather
    /// than with a whole snapshot (braft's `raft_log_margin` idea).
    pub compaction_margin: u64,
    /// A peer that has not acknowledged a snapshot within this long is
    /// offered it again (the install may have been lost with its peer).
    pub snapshot_install_timeout: Duration,
    /// The most by which two nodes' monotonic clocks may disagree about
    /// the length of any interval no longer than `election_timeout_min`.
    /// Lease reads end this much before the election timeout (see
    /// `core::read`); a bound at or above `election_timeout_min` turns
    /// lease reads into ReadIndex rounds. The one clock assumption oar
    /// makes, and only for lease reads.
    pub max_clock_drift: Duration,
    /// At most this many reads pending on one node (leader or follower);
    /// more are refused with `ReadError::Busy`, a follower's request for a
    /// read index with a refusal.
    pub read_pending_max: usize,
    /// Quiescence (`core::quiesce`): a leader idle this long with nothing
    /// to replicate stops heartbeats and its followers stop their election
    /// timers, until a proposal, read, membership change, transfer,
    /// message or [`RaftNode::handle_peer_unreachable`](super::RaftNode::handle_peer_unreachable)
    /// wakes the group. `None` (the default): never quiet. Only for a
    /// driver that reports unreachable peers, or a quiet group never
    /// notices its leader's death.
    pub quiesce_after: Option<Duration>,
    /// Bounds the log entries held in memory to about this many bytes:
    /// beyond it the oldest applied entries leave memory (their terms
    /// stay), and a peer that needs them is sent them read back from disk
    /// (`Action::LoadEntries`). `None` (the default): every entry since the
    /// compaction point stays in memory. Only for a driver whose storage
    /// reads entries back.
    pub log_cache_bytes_max: Option<u64>,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            id: NodeId(0),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            heartbeat_interval: Duration::from_millis(100),
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 1024,
            append_bytes_max: 1 << 20,
            inflight_msgs_max: 256,
            inflight_bytes_max: 32 << 20,
            apply_batch_max: 1024,
            rng_seed: 0,
            catchup_margin: 1000,
            compaction_margin: 1000,
            snapshot_install_timeout: Duration::from_secs(120),
            max_clock_drift: Duration::from_millis(100),
            read_pending_max: 1 << 16,
            quiesce_after: None,
            log_cache_bytes_max: None,
        }
    }
}

impl RaftOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// The first option that is out of range.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.id == NodeId(0) {
            return Err(OptionsError::ZeroNodeId);
        }
        if self.heartbeat_interval.is_zero()
            || self.heartbeat_interval >= self.election_timeout_min
            || self.election_timeout_min >= self.election_timeout_max
            || self.quiesce_after.is_some_and(|d| d.is_zero())
        {
            return Err(OptionsError::Timeouts);
        }
        let limits = [
            ("append_entries_max", self.append_entries_max as u64),
            ("append_bytes_max", self.append_bytes_max),
            ("inflight_msgs_max", self.inflight_msgs_max as u64),
            ("inflight_bytes_max", self.inflight_bytes_max),
            ("apply_batch_max", self.apply_batch_max as u64),
            ("read_pending_max", self.read_pending_max as u64),
        ];
        match limits.iter().find(|(_, value)| *value == 0) {
            Some(&(name, _)) => Err(OptionsError::ZeroLimit { name }),
            None => Ok(()),
        }
    }
}
