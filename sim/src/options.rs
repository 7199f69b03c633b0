//! What one simulated run looks like: cluster size, fault classes, workload
//! and phase lengths.

use std::time::Duration;

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

    /// Whether disk faults are on.
    pub fn disk(self) -> bool {
        matches!(self, FaultSet::All | FaultSet::Disk)
    }
}

/// Options of one run; the seed decides everything else.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The run's seed.
    pub seed: u64,
    /// Raft nodes.
    pub nodes: usize,
    /// Fault classes.
    pub faults: FaultSet,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys the clients share (few, so that operations conflict).
    pub keys: usize,
    /// Simulated time with faults and client load.
    pub fault_phase: Duration,
    /// After healing, a write must commit and the nodes converge within this.
    pub heal_deadline: Duration,
    /// A client gives up on an operation (outcome unknown) after this.
    pub op_timeout: Duration,
    /// Record the event trace.
    pub trace: bool,
}

impl SimOptions {
    /// Defaults for `seed`.
    pub fn new(seed: u64) -> Self {
        SimOptions {
            seed,
            nodes: 3,
            faults: FaultSet::All,
            clients: 4,
            keys: 3,
            fault_phase: Duration::from_secs(20),
            heal_deadline: Duration::from_secs(20),
            op_timeout: Duration::from_secs(2),
            trace: false,
        }
    }
}
