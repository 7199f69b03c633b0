//! Reconnect delays with jitter, shared by the peer transport and the
//! snapshot copier: doubling from a floor up to a cap kept well below the
//! election timeout, so that a peer back from a partition is reached before
//! the group gives up on it (issue 20), and spread so that many connections
//! cut at once do not retry in step.

use std::hash::{Hash, Hasher};
use std::time::Duration;

/// Reconnect delays: doubling from `min` up to `max`, each drawn from
/// `[delay / 2, delay)`.
#[derive(Debug)]
pub(crate) struct Backoff {
    delay: Duration,
    min: Duration,
    max: Duration,
    /// splitmix64 state. Seeded from the caller's `seed` and the clock, not
    /// an OS random source: the simulator's clock is simulated, so runs
    /// replay.
    random: u64,
}

impl Backoff {
    /// A backoff starting at `min`. `seed` sets apart the backoffs of one
    /// process (a peer's address, a snapshot); the clock sets processes
    /// apart.
    pub(crate) fn new(seed: impl Hash, min: Duration, max: Duration) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        seed.hash(&mut hasher);
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .hash(&mut hasher);
        Self::with_random(hasher.finish(), min, max)
    }

    fn with_random(random: u64, min: Duration, max: Duration) -> Self {
        Backoff {
            delay: min,
            min,
            max: max.max(min),
            random,
        }
    }

    /// Starts again from `min` (after a connection that worked).
    pub(crate) fn reset(&mut self) {
        self.delay = self.min;
    }

    /// The next wait; the one after may be twice as long.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.delay;
        self.delay = (delay * 2).min(self.max);
        self.random = self.random.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let fraction = (z >> 11) as f64 / (1u64 << 53) as f64;
        delay / 2 + delay.mul_f64(fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(100);

    #[test]
    fn delays_double_up_to_the_cap_within_the_upper_half() {
        let mut backoff = Backoff::with_random(7, MIN, MAX);
        let ceilings = [10, 20, 40, 80, 100, 100, 100, 100];
        for ceiling in ceilings.map(Duration::from_millis) {
            let delay = backoff.next_delay();
            assert!(
                ceiling / 2 <= delay && delay < ceiling,
                "{delay:?} not in [{:?}, {ceiling:?})",
                ceiling / 2
            );
        }
        backoff.reset();
        assert!(
            backoff.next_delay() < MIN,
            "reset starts again at the floor"
        );
    }

    #[test]
    fn backoffs_with_different_seeds_spread_apart() {
        let delays = |random| {
            let mut backoff = Backoff::with_random(random, MIN, MAX);
            (0..8).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(1), delays(1), "a seed replays");
        assert_ne!(delays(1), delays(2));
        let a = Backoff::new("peer a", MIN, MAX).random;
        let b = Backoff::new("peer b", MIN, MAX).random;
        assert_ne!(a, b);
    }
}
