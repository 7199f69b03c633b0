//! What one simulated run looks like: cluster size, fault classes and mix,
//! workload and phase lengths.

use std::time::Duration;

use oar::core::RaftOptions;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fault_mix::FaultWeights;

/// Which faults the nemesis may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultSet {
    /// Every fault below.
    All,
    /// Partitions, one-way clogs and slow links.
    Net,
    /// Crashes (losing unsynced writes) and pauses.
    Crash,
    /// I/O errors and bit flips (with crashes to recover).
    Disk,
    /// Membership changes (remove, re-add, promote) and leadership transfers.
    Membership,
    /// A process outside the cluster: no credentials, another cluster's, or
    /// the right key on an address outside the address book, sending
    /// garbage and forged messages.
    Stranger,
    /// No faults: a baseline.
    None,
}

impl FaultSet {
    /// Whether network faults are on.
    pub fn net(self) -> bool {
        matches!(self, FaultSet::All | FaultSet::Net)
    }

    /// Whether crash and pause faults are on.
    pub fn crash(self) -> bool {
        matches!(self, FaultSet::All | FaultSet::Crash | FaultSet::Disk)
    }

    /// Whether membership changes and leadership transfers are on.
    pub fn membership(self) -> bool {
        matches!(self, FaultSet::All | FaultSet::Membership)
    }

    /// Whether disk faults are on.
    pub fn disk(self) -> bool {
        matches!(self, FaultSet::All | FaultSet::Disk)
    }

    /// Whether the stranger is on.
    pub fn stranger(self) -> bool {
        matches!(self, FaultSet::All | FaultSet::Stranger)
    }
}

/// Options of one run; the seed decides everything else.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The run's seed.
    pub seed: u64,
    /// Raft nodes (servers).
    pub nodes: usize,
    /// Raft groups: every server hosts a member of each, through its one
    /// `NodeManager`, so that a server's fault hits every group; the
    /// clients are spread over them (client `c` uses group `c mod groups`)
    /// and every check runs group by group.
    pub groups: usize,
    /// Fault classes: a filter on `fault_weights`.
    pub faults: FaultSet,
    /// How often the nemesis draws each fault kind, drawn from the seed
    /// (swarm testing); `fault_mix` is what a run uses.
    pub fault_weights: FaultWeights,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys the clients share (few, so that operations conflict).
    pub keys: usize,
    /// Simulated time with faults and client load.
    pub fault_phase: Duration,
    /// After healing, a write must commit and the nodes converge within this.
    pub heal_deadline: Duration,
    /// A client gives up on an attempt (outcome unknown) after this.
    pub op_timeout: Duration,
    /// The group keeps client sessions and the clients retry writes of
    /// unknown outcome through them (`sim/src/sessions.rs`).
    pub sessions: bool,
    /// A session with no request for this much log time expires
    /// (`SessionOptions::expiry`). The default outlasts every run; a short
    /// one makes sessions expire mid-run, as the expiry plant needs.
    pub session_expiry: Duration,
    /// Record the event trace.
    pub trace: bool,
    /// The protocol options every server runs with (`id` and `rng_seed`
    /// are set per server).
    pub raft: RaftOptions,
    /// Servers `1..=initial_voters` start as the voters; the others start
    /// outside the group, as spares for membership changes. Drawn from the
    /// seed when membership faults are on; every server otherwise.
    pub initial_voters: Option<usize>,
    /// The state machines keep their state in a store of their own that
    /// survives restarts (an on-disk state machine: `durable_applied`), a
    /// batch behind now and then; meaningful without sessions, whose
    /// groups always load the snapshot.
    pub disk_state_machine: bool,
    /// Each server keeps one log for all its groups (`SharedLog`, with its
    /// group commit) instead of one log per member.
    pub shared_log: bool,
    /// For tests: the group (by index) whose member on the first server
    /// misreports what it applies, a divergence the checks must report
    /// with the group's id.
    pub planted_divergence: Option<usize>,
}

impl SimOptions {
    /// Defaults for `seed`.
    pub fn new(seed: u64) -> Self {
        SimOptions {
            seed,
            nodes: 3,
            groups: 1,
            faults: FaultSet::All,
            fault_weights: FaultWeights::swarm(seed),
            clients: 4,
            keys: 3,
            fault_phase: Duration::from_secs(20),
            heal_deadline: Duration::from_secs(20),
            op_timeout: Duration::from_secs(2),
            sessions: true,
            session_expiry: oar::runtime::SessionOptions::default().expiry,
            trace: false,
            raft: swarm_raft_options(seed),
            initial_voters: None,
            disk_state_machine: false,
            shared_log: false,
            planted_divergence: None,
        }
    }

    /// Defaults for `seed` on `nodes` servers with the fault mix `weights`
    /// (`kind=weight,...` as a replay line prints it): a failing seed
    /// pinned by a test, so that a new fault kind leaves its mix alone.
    ///
    /// # Panics
    /// On weights that do not parse (a test's own typo).
    pub fn pinned(seed: u64, nodes: usize, weights: &str) -> Self {
        let defaults = SimOptions::new(seed);
        SimOptions {
            nodes,
            fault_weights: defaults
                .fault_weights
                .override_from(weights)
                .expect("pinned weights"),
            ..defaults
        }
    }
}

impl SimOptions {
    /// The group's session options, if it keeps sessions.
    pub fn session_options(&self) -> Option<oar::runtime::SessionOptions> {
        self.sessions.then(|| oar::runtime::SessionOptions {
            expiry: self.session_expiry,
            ..oar::runtime::SessionOptions::default()
        })
    }

    /// The fault mix the nemesis runs with: the weights, less the classes
    /// `faults` leaves out.
    pub fn fault_mix(&self) -> FaultWeights {
        self.fault_weights.filtered(self.faults)
    }

    /// How many servers start as voters: with membership faults, half the
    /// seeds start with three and keep the rest as spares.
    pub fn starting_voters(&self) -> usize {
        match self.initial_voters {
            Some(voters) => voters.clamp(1, self.nodes),
            None if self.faults.membership() && self.nodes > 3 && self.seed % 2 == 1 => 3,
            None => self.nodes,
        }
    }
}

/// Protocol options drawn from the seed ("swarm testing", as TigerBeetle's
/// simulator does): tiny batches and windows, short and long timeouts,
/// pre-vote and check-quorum on or off, so that different seeds stress
/// different paths (probing, pipelining, split votes, disruption).
pub fn swarm_raft_options(seed: u64) -> RaftOptions {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5357_4152_4d00_0000);
    let election_ms = rng.random_range(150..600);
    RaftOptions {
        election_timeout_min: Duration::from_millis(election_ms),
        election_timeout_max: Duration::from_millis(election_ms * 2),
        heartbeat_interval: Duration::from_millis(election_ms / 5),
        pre_vote: rng.random_range(0..4) != 0,
        check_quorum: rng.random_range(0..4) != 0,
        append_entries_max: [1, 3, 16, 1024][rng.random_range(0..4)],
        inflight_msgs_max: [1, 2, 8, 256][rng.random_range(0..4)],
        compaction_margin: [0, 3, 20, 1000][rng.random_range(0..4)],
        // Offers lost with a crashed or partitioned server are repeated
        // within the run.
        snapshot_install_timeout: Duration::from_millis(election_ms * 10),
        // Lease reads end a tenth of the election timeout early; each
        // server's clock is skewed up to this bound (`reads.rs`).
        max_clock_drift: Duration::from_millis(election_ms / 10),
        ..RaftOptions::default()
    }
}

/// How often servers snapshot on their own, drawn from the seed: often, so
/// that compaction and installs happen in most runs.
pub fn swarm_snapshot_interval(seed: u64) -> Option<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x534e_4150_0000_0000);
    [None, Some(8), Some(40), Some(150)][rng.random_range(0..4)]
}
