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
use oar::runtime::{Clock, Error, Node, ReadPolicy, SkewedClock};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{Outcome, Reply};

pub use crate::kv_machine::SharedMap;

/// The map of each server's running state machine, by node id. Set at
/// every start, together with the member handle (no await between them),
/// so a reader holding a handle and the map read with it holds the same
/// incarnation.
pub type ReadMaps = Arc<Mutex<BTreeMap<NodeId, SharedMap>>>;

/// The clock server `id` runs its group on at this start: its rate within
/// ±`max_clock_drift / (2 × election_timeout_min)` of the simulation's (so
/// any two differ by at most the drift over an election timeout), often at
/// the edge of that bound, and a random offset.
pub fn node_clock(seed: u64, id: NodeId, raft: &RaftOptions) -> Arc<dyn Clock> {
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
    Arc::new(SkewedClock {
        epoch: tokio::time::Instant::now(),
        offset: Duration::from_millis(rng.random_range(0..10_000)),
        rate_ppm,
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
