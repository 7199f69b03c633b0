//! [`Throttle`] (braft's `SnapshotThrottle`): one byte-rate limit shared by
//! every snapshot copy of a server, serving and receiving, so that catching
//! up a follower cannot starve the Raft traffic on the same links and disks.
//!
//! A token bucket kept as a virtual time (GCRA): `full_at` is the instant the
//! bucket would be full again if nothing more were taken. Taking `n` bytes
//! pushes it `n / rate` later; a taker may go once the bucket is at most
//! `burst` from full. So over any interval `[t0, t)` at most
//! `rate × (t − t0 + burst)` bytes are let through, exactly, with no ticker
//! and no rounding drift (each cost is rounded up to the nanosecond).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How far ahead of the rate a caller may go after an idle spell: 100 ms
/// worth of bytes.
const BURST: Duration = Duration::from_millis(100);

/// A byte-rate limit, cheap to clone (clones share the limit).
#[derive(Clone, Debug, Default)]
pub struct Throttle {
    /// `None`: unlimited.
    limit: Option<Arc<Limit>>,
}

#[derive(Debug)]
struct Limit {
    /// Invariant: > 0.
    bytes_per_sec: u64,
    /// When the bucket is full again; `None` (or a past instant) means full
    /// now. Invariant: every caller released so far was released no earlier
    /// than `full_at − BURST` as it stood after its own booking.
    full_at: Mutex<Option<Instant>>,
}

impl Throttle {
    /// A limit of `bytes_per_sec` (`None`: unlimited). A rate of 0 is taken
    /// as 1 byte per second rather than "stop forever".
    pub fn new(bytes_per_sec: Option<u64>) -> Throttle {
        Throttle {
            limit: bytes_per_sec.map(|rate| {
                Arc::new(Limit {
                    bytes_per_sec: rate.max(1),
                    full_at: Mutex::new(None),
                })
            }),
        }
    }

    /// The configured rate; `None` if unlimited.
    pub fn bytes_per_sec(&self) -> Option<u64> {
        self.limit.as_ref().map(|l| l.bytes_per_sec)
    }

    /// Waits until `bytes` may be sent (or read) without exceeding the rate.
    ///
    /// The bytes are reserved when the call starts: dropping the future
    /// while it waits still counts them, which errs on the slow side.
    pub async fn acquire(&self, bytes: u64) {
        let Some(limit) = &self.limit else {
            return;
        };
        let now = Instant::now();
        let release = limit.reserve(now, bytes);
        if release > now {
            tokio::time::sleep_until(release).await;
        }
    }
}

impl Throttle {
    /// As [`acquire`](Self::acquire), blocking the calling thread: for
    /// work on a thread of its own (a snapshot save), never on a runtime
    /// worker.
    pub fn acquire_blocking(&self, bytes: u64) {
        let Some(limit) = &self.limit else {
            return;
        };
        let now = Instant::now();
        let release = limit.reserve(now, bytes);
        if release > now {
            std::thread::sleep(release - now);
        }
    }
}

impl Limit {
    /// Books `bytes` at `now`; returns when the caller may go.
    fn reserve(&self, now: Instant, bytes: u64) -> Instant {
        let mut full_at = self.full_at.lock().expect("throttle lock");
        let base = full_at.map_or(now, |t| t.max(now));
        let next = base + self.cost(bytes);
        *full_at = Some(next);
        next.checked_sub(BURST).map_or(now, |t| t.max(now))
    }

    /// How long `bytes` take at the rate, rounded up so the rate holds.
    fn cost(&self, bytes: u64) -> Duration {
        let nanos = (u128::from(bytes) * 1_000_000_000).div_ceil(u128::from(self.bytes_per_sec));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u64) -> Arc<Limit> {
        Throttle::new(Some(rate)).limit.expect("limited")
    }

    #[tokio::test]
    async fn reservations_follow_the_rate_after_one_burst() {
        let limit = limit(1_000_000); // 1 byte per µs
        let t0 = Instant::now();
        // An idle bucket lets 100 ms worth through at once ...
        assert_eq!(limit.reserve(t0, 100_000), t0);
        // ... and the next 50 ms worth waits 50 ms.
        assert_eq!(limit.reserve(t0, 50_000), t0 + Duration::from_millis(50));
        // Ten more 10 ms requests at t0: released 10 ms apart.
        for i in 1..=10 {
            assert_eq!(
                limit.reserve(t0, 10_000),
                t0 + Duration::from_millis(50 + 10 * i)
            );
        }
        // Over [t0, t0 + 150 ms] exactly rate × (150 ms + burst) went through.
        // After a long idle spell the bucket is full again, but no fuller.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limit.reserve(later, 100_000), later);
        assert_eq!(limit.reserve(later, 1), later + Duration::from_nanos(1_000));
    }

    #[tokio::test]
    async fn a_request_larger_than_the_burst_waits_for_the_excess() {
        let limit = limit(4 << 20); // 4 MiB/s: 1 MiB costs 250 ms
        let t0 = Instant::now();
        assert_eq!(limit.reserve(t0, 1 << 20), t0 + Duration::from_millis(150));
        assert_eq!(limit.reserve(t0, 1 << 20), t0 + Duration::from_millis(400));
        // Costs round up, never down: 3 bytes at 4 MiB/s.
        assert_eq!(limit.cost(3), Duration::from_nanos(716));
    }

    #[test]
    fn acquire_blocking_paces_the_calling_thread() {
        let unlimited = Throttle::new(None);
        let start = std::time::Instant::now();
        unlimited.acquire_blocking(u64::MAX);
        assert!(start.elapsed() < Duration::from_millis(50));

        // 10 MB/s: 3 MB take at least 300 ms minus the 100 ms burst.
        let throttle = Throttle::new(Some(10_000_000));
        let start = std::time::Instant::now();
        for _ in 0..30 {
            throttle.acquire_blocking(100_000);
        }
        assert!(start.elapsed() >= Duration::from_millis(199));
    }

    #[tokio::test]
    async fn acquire_paces_real_time_and_unlimited_never_waits() {
        let unlimited = Throttle::new(None);
        let start = Instant::now();
        unlimited.acquire(u64::MAX).await;
        assert!(start.elapsed() < Duration::from_millis(50));
        assert_eq!(unlimited.bytes_per_sec(), None);

        // 10 MB/s shared by two clones: 3 MB take 300 ms minus the 100 ms
        // burst.
        let throttle = Throttle::new(Some(10_000_000));
        let other = throttle.clone();
        let start = Instant::now();
        for _ in 0..15 {
            throttle.acquire(100_000).await;
            other.acquire(100_000).await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    }
}
