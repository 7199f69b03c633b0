//! Options of a group on a server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::group_id::GroupId;
use super::session::SessionOptions;
use crate::core::{Membership, NodeId, RaftOptions};

/// How to run one Raft group on a [`NodeManager`](super::NodeManager).
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// The group's id, the same on every member.
    pub group: GroupId,
    /// The protocol options; `raft.id` is this node's id in the group.
    /// [`GroupOptions::new`] turns quiescence on ([`QUIESCE_AFTER`]);
    /// `raft.quiesce_after = None` turns it off.
    pub raft: RaftOptions,
    /// The address book: the Raft address of every node that is or may
    /// become a member (this node's included).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The voters the group starts with (the same on every member); `None`
    /// means every node in `peers`. Members join later as learners
    /// (`Node::add_learner`, `Node::add_peer`).
    pub initial_voters: Option<BTreeSet<NodeId>>,
    /// Client requests queued before `apply` callers wait.
    pub inbox_max: usize,
    /// Save a snapshot (and compact the log) after this many applied
    /// entries, or after [`snapshot_log_bytes`](Self::snapshot_log_bytes)
    /// or [`snapshot_period`](Self::snapshot_period), whichever comes first;
    /// all `None`: only on request (`Node::snapshot`). A state machine
    /// without snapshot support turns them off at its first refusal.
    pub snapshot_interval: Option<u64>,
    /// Save a snapshot after this many bytes of log applied since the last
    /// one (command payloads plus 32 bytes an entry, about their size on
    /// disk): bounds the log a restart replays and a compaction frees,
    /// whatever the commands' size.
    pub snapshot_log_bytes: Option<u64>,
    /// Save a snapshot this long after the last one, if anything was
    /// applied since (braft's `snapshot_interval_s`, 3600 s by default).
    pub snapshot_period: Option<Duration>,
    /// The largest command `Node::apply` accepts, in bytes; larger ones are
    /// refused before anything is logged. It must fit one log record and
    /// one replication frame (checked by `add_group`).
    pub command_bytes_max: usize,
    /// Keep client sessions (exactly-once requests, see
    /// [`session`](super::session)); `None`: commands are logged as they
    /// are and the state machine's snapshot holds only its own files.
    /// Every member of a group must agree, for the life of its log.
    pub sessions: Option<SessionOptions>,
    /// The clock the group reads for the protocol's `now` and its timers;
    /// `None`: the runtime's monotonic clock from the group's start. Only
    /// lease reads depend on it (see `RaftOptions::max_clock_drift`).
    pub clock: Option<std::sync::Arc<dyn super::clock::Clock>>,
    /// Count proposals, latencies, batch sizes, elections and snapshots for
    /// `GET /metrics` (a few relaxed atomic adds per batch; the bench
    /// measures the cost). Off: those counters stay at zero; the gauges
    /// read from the group's status, and [`Node::watch`](super::Node::watch),
    /// work either way.
    pub metrics: bool,
}

/// The idle time after which [`GroupOptions::new`] lets a group go quiet
/// (`RaftOptions::quiesce_after`; set it to `None` to keep every group
/// ticking): two of the default `election_timeout_min`. A group written
/// or read more often than that never pays for waking (one heartbeat
/// round, and a lease read's fresh round), and an idle one sends at most
/// two seconds of heartbeats before it costs nothing. The server's
/// liveness probes (`runtime::liveness`) wake a quiet group whose leader's
/// server goes silent.
pub const QUIESCE_AFTER: Duration = Duration::from_secs(2);

/// The bound [`GroupOptions::new`] puts on a group's in-memory log
/// (`RaftOptions::log_cache_bytes_max`): beyond it, applied entries leave
/// memory and a lagging peer is sent them read back from disk. A snapshot
/// bounds the log too, but not while one is being saved: a long save of a
/// large state under writes would otherwise hold every entry written
/// meanwhile. Ignored by storage that does not read entries back (memory,
/// the shared log).
pub const LOG_CACHE_BYTES: u64 = 32 << 20;

/// The default [`GroupOptions::command_bytes_max`]: 8 MiB.
pub const COMMAND_BYTES_MAX: usize = 8 << 20;

/// Room in a frame for everything an AppendEntries carries besides the
/// entries' own bytes, per entry and per message.
const ENTRY_OVERHEAD_BYTES: u64 = 64;
const MESSAGE_OVERHEAD_BYTES: u64 = 4 << 10;

impl GroupOptions {
    /// The configuration the group starts from.
    pub fn bootstrap_membership(&self) -> Membership {
        match &self.initial_voters {
            Some(voters) => Membership::with_voters(voters.iter().copied()),
            None => Membership::with_voters(self.peers.keys().copied()),
        }
    }

    /// Options for `id` in `group` with these peers and default protocol options.
    pub fn new(group: GroupId, id: NodeId, peers: BTreeMap<NodeId, SocketAddr>) -> Self {
        GroupOptions {
            group,
            raft: RaftOptions {
                id,
                rng_seed: group.0.wrapping_mul(0x9e37_79b9) ^ id.0,
                quiesce_after: Some(QUIESCE_AFTER),
                log_cache_bytes_max: Some(LOG_CACHE_BYTES),
                ..RaftOptions::default()
            },
            peers,
            initial_voters: None,
            inbox_max: 65_536,
            snapshot_interval: Some(100_000),
            snapshot_log_bytes: Some(256 << 20),
            snapshot_period: Some(Duration::from_secs(3600)),
            command_bytes_max: COMMAND_BYTES_MAX,
            sessions: None,
            clock: None,
            metrics: true,
        }
    }

    /// Checks that the largest AppendEntries these options can produce fits
    /// a frame of `frame_bytes_max` and a receiver's `message_entries_max`,
    /// and that the largest command fits a log record; a command that fits
    /// neither would stop the group (a record refused by the disk) or stall
    /// it (a frame every follower refuses).
    ///
    /// # Errors
    /// What does not fit, with the numbers.
    pub fn check_fits(
        &self,
        frame_bytes_max: u32,
        message_entries_max: usize,
    ) -> Result<(), String> {
        let record_max = crate::storage::record::PAYLOAD_BYTES_MAX - MESSAGE_OVERHEAD_BYTES;
        let command = self.command_bytes_max as u64;
        if command > record_max {
            return Err(format!(
                "command_bytes_max {command} exceeds a log record's {record_max}"
            ));
        }
        let entries = self.raft.append_entries_max as u64;
        let largest = self
            .raft
            .append_bytes_max
            .max(command + ENTRY_OVERHEAD_BYTES)
            + entries * ENTRY_OVERHEAD_BYTES
            + MESSAGE_OVERHEAD_BYTES;
        if largest > u64::from(frame_bytes_max) {
            return Err(format!(
                "an AppendEntries may reach {largest} bytes (command_bytes_max, append_bytes_max, append_entries_max), over the frame limit {frame_bytes_max}"
            ));
        }
        if self.raft.append_entries_max > message_entries_max {
            return Err(format!(
                "append_entries_max {} exceeds the receivers' message_entries_max {message_entries_max}",
                self.raft.append_entries_max
            ));
        }
        Ok(())
    }
}
