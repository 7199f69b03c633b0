//! Runs with quiescence (`--quiesce-after-ms`): idle phases in the client
//! load, so that the group goes quiet while the nemesis keeps injecting
//! faults (a quiet group whose leader crashes, is partitioned or paused
//! must wake through the runtime's server-level liveness and elect), and a
//! sampler that counts how often members were seen quiet, so that a sweep
//! shows quiescence was exercised at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use oar::runtime::Node;

use crate::cluster::SimCluster;

/// How often the sampler looks at every member.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// The client idle phases for `quiesce_after`: every other period of this
/// length, all clients pause together. Long enough to go quiet and stay
/// quiet through a few faults.
pub fn idle_period(quiesce_after: Duration) -> Duration {
    (quiesce_after * 4).max(Duration::from_secs(2))
}

/// Sleeps to the end of the current idle phase, if simulated time is in
/// one (the odd periods of `period` since the epoch), or until `stop`.
pub async fn wait_out_idle_phase(period: Duration, stop: &AtomicBool) {
    let period_ns = period.as_nanos().max(1) as u64;
    let now = SimCluster::now_ns();
    if (now / period_ns).is_multiple_of(2) {
        return;
    }
    let end = (now / period_ns + 1) * period_ns;
    while !stop.load(Ordering::Relaxed) && SimCluster::now_ns() < end {
        let left = Duration::from_nanos(end - SimCluster::now_ns());
        tokio::time::sleep(left.min(SAMPLE_INTERVAL)).await;
    }
}

/// Member samples taken and how many of them were quiet.
#[derive(Clone, Debug, Default)]
pub struct QuietSamples {
    /// Running members looked at.
    pub samples: Arc<AtomicU64>,
    /// Of those, the quiet ones.
    pub quiet: Arc<AtomicU64>,
}

impl QuietSamples {
    /// Samples every running member until `stop` is set.
    pub async fn run(
        self,
        members: Vec<Arc<std::sync::Mutex<Option<Node>>>>,
        stop: Arc<AtomicBool>,
    ) {
        while !stop.load(Ordering::Relaxed) {
            for slot in &members {
                let member = slot.lock().expect("member").clone();
                let Some(member) = member else { continue };
                // A status request is not a protocol input: it wakes no one.
                if let Ok(Ok(status)) = tokio::time::timeout(SAMPLE_INTERVAL, member.status()).await
                {
                    self.samples.fetch_add(1, Ordering::Relaxed);
                    if status.quiet {
                        self.quiet.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            tokio::time::sleep(SAMPLE_INTERVAL).await;
        }
    }

    /// (samples, quiet) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.samples.load(Ordering::Relaxed),
            self.quiet.load(Ordering::Relaxed),
        )
    }
}
