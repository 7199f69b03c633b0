//! Reads without the log in the simulation: clients read through every
//! policy (`ReadIndex`, `Lease`, `Log` barriers, and the old way, a GET
//! command through the log), on leaders and on followers, and read the
//! serving node's own map once its barrier resolved; every read goes into
//! the linearizability check. Each server's group runs on its own skewed
//! clock, its rate and offset drawn from the seed within the drift bound
//! its options declare, so the lease is checked against the clocks it
//! claims to tolerate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oar::core::{NodeId, RaftOptions};
use oar::runtime::{Clock, Error, Node, ReadPolicy};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{Outcome, Reply};

pub use crate::kv_machine::SharedMap;

/// The map of each server's running state machine, by node id. Set at
/// every start, together with the member handle (no await between them),
/// so a reader holding a handle and the map read with it holds the same
/// incarnation.
pub type ReadMaps = Arc<Mutex<BTreeMap<NodeId, SharedMap>>>;

/// Each running server's clock, by node id (replaced at every start), so
/// that the nemesis can aim the drift (`lease_pause.rs`).
pub type Clocks = Arc<Mutex<BTreeMap<NodeId, Arc<DriftClock>>>>;

/// A node's clock: a piecewise-linear map from the simulation's time, whose
/// rate the nemesis may change (within the bound) at any moment; the
/// reading stays continuous and monotonic across a change.
#[derive(Debug)]
pub struct DriftClock {
    /// The largest |rate| the drift bound allows, in parts per million.
    bound_ppm: i64,
    state: Mutex<DriftState>,
}

#[derive(Clone, Copy, Debug)]
struct DriftState {
    /// The last rate change, in simulation time, and the reading then.
    anchor: tokio::time::Instant,
    anchor_local_ns: u128,
    rate_ppm: i64,
}

impl DriftState {
    fn scale(&self) -> u128 {
        (1_000_000 + self.rate_ppm).max(1) as u128
    }

    fn local_ns(&self, at: tokio::time::Instant) -> u128 {
        let since = at.saturating_duration_since(self.anchor).as_nanos();
        self.anchor_local_ns + since * self.scale() / 1_000_000
    }
}

impl DriftClock {
    /// Runs from now on at the slowest rate the bound allows (`slow`), or
    /// the fastest: two nodes aimed apart differ by the whole drift over
    /// an election timeout, the edge the lease must survive.
    pub fn aim(&self, slow: bool) {
        let now = tokio::time::Instant::now();
        let mut state = self.state.lock().expect("clock");
        state.anchor_local_ns = state.local_ns(now);
        state.anchor = now;
        state.rate_ppm = if slow {
            -self.bound_ppm
        } else {
            self.bound_ppm
        };
    }
}

impl Clock for DriftClock {
    fn local(&self, at: tokio::time::Instant) -> oar::core::Instant {
        let ns = self.state.lock().expect("clock").local_ns(at);
        oar::core::Instant::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn runtime_instant(&self, local: oar::core::Instant) -> tokio::time::Instant {
        let state = *self.state.lock().expect("clock");
        let since = u128::from(local.as_nanos()).saturating_sub(state.anchor_local_ns);
        // Rounded up: the timer must not fire before the local deadline (a
        // later rate change may make it early or late: the group re-reads
        // the clock when it fires).
        let real = (since * 1_000_000).div_ceil(state.scale());
        state.anchor + Duration::from_nanos(u64::try_from(real).unwrap_or(u64::MAX))
    }
}

/// The clock server `id` runs its group on at this start: its rate within
/// ±`max_clock_drift / (2 × election_timeout_min)` of the simulation's (so
/// any two differ by at most the drift over an election timeout), often at
/// the edge of that bound, and a random offset.
pub fn node_clock(seed: u64, id: NodeId, raft: &RaftOptions) -> Arc<DriftClock> {
    let start = crate::cluster::SimCluster::now_ns();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ id.0.wrapping_mul(0x51ce_c10c) ^ start);
    let bound = raft.max_clock_drift.as_nanos() as f64
        / (2.0 * raft.election_timeout_min.as_nanos() as f64);
    let bound_ppm = (bound * 1e6) as i64;
    let rate_ppm = match rng.random_range(0..3) {
        0 => bound_ppm,
        1 => -bound_ppm,
        _ => rng.random_range(-bound_ppm..=bound_ppm),
    };
    let offset = Duration::from_millis(rng.random_range(0..10_000));
    Arc::new(DriftClock {
        bound_ppm,
        state: Mutex::new(DriftState {
            anchor: tokio::time::Instant::now(),
            anchor_local_ns: offset.as_nanos(),
            rate_ppm,
        }),
    })
}

/// How a client reads: `None` for a GET command through the log (as
/// before barriers existed), else a barrier with this policy.
pub fn pick_policy(rng: &mut ChaCha8Rng) -> Option<ReadPolicy> {
    match rng.random_range(0..4) {
        0 => None,
        1 => Some(ReadPolicy::ReadIndex),
        2 => Some(ReadPolicy::Lease),
        _ => Some(ReadPolicy::Log),
    }
}

/// Which server serves a barrier read: half the follower-capable reads go
/// to a random member (often a follower), the rest to the client's target.
pub fn pick_reader(rng: &mut ChaCha8Rng, target: usize, members: usize, p: ReadPolicy) -> usize {
    if p != ReadPolicy::Log && rng.random_range(0..2) == 0 {
        rng.random_range(0..members)
    } else {
        target
    }
}

/// What a barrier read gave: its outcome, and the leader a refusal named.
pub struct BarrierRead {
    /// For the history: the value read, or `Fail` (a read has no effect).
    pub outcome: Outcome,
    /// The value read, if any.
    pub value: Option<Option<String>>,
    /// A leader the refusal pointed at.
    pub leader: Option<NodeId>,
}

/// Reads `key` on `node` after a barrier with `policy`, from `map` (the
/// same incarnation's map, taken together with the handle).
pub async fn barrier_read(
    node: Node,
    map: SharedMap,
    policy: ReadPolicy,
    key: &str,
    timeout: Duration,
) -> BarrierRead {
    let failed = |leader| BarrierRead {
        outcome: Outcome::Fail,
        value: None,
        leader,
    };
    match tokio::time::timeout(timeout, node.read_barrier(policy)).await {
        Ok(Ok(_)) => {
            let value = map.lock().expect("map").get(key).cloned();
            BarrierRead {
                outcome: Outcome::Ok(Reply::Value(value.clone())),
                value: Some(value),
                leader: None,
            }
        }
        Ok(Err(Error::NotLeader { leader, .. })) => failed(leader),
        // Typed and retryable (or the node went down): nothing was served.
        Ok(Err(_)) | Err(_) => failed(None),
    }
}
