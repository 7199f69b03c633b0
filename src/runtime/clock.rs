//! The clock a group reads: the core's `now` and the group's timers both
//! come from it, so that a test or the simulator can run each node on its
//! own skewed clock (the lease is the one place the protocol relies on
//! clocks; see `core::read`).

use std::fmt::Debug;
use std::time::Duration;

use crate::core::Instant;

/// Maps the runtime's monotonic time (tokio's, or madsim's in the
/// simulator) to this node's local clock and back.
pub trait Clock: Send + Sync + Debug {
    /// The local clock's reading at runtime instant `at`.
    fn local(&self, at: tokio::time::Instant) -> Instant;
    /// The earliest runtime instant at which the local clock reads at
    /// least `local` (for timers).
    fn runtime_instant(&self, local: Instant) -> tokio::time::Instant;
}

/// The runtime's own monotonic clock, counted from `epoch` (the default).
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    /// The runtime instant the local clock reads zero at.
    pub epoch: tokio::time::Instant,
}

impl Clock for MonotonicClock {
    fn local(&self, at: tokio::time::Instant) -> Instant {
        let elapsed = at.saturating_duration_since(self.epoch);
        Instant::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    fn runtime_instant(&self, local: Instant) -> tokio::time::Instant {
        self.epoch + Duration::from_nanos(local.as_nanos())
    }
}

/// A clock that runs at its own rate from its own offset: reads
/// `offset + (t - epoch) × (1 + rate_ppm / 10⁶)`. The simulator gives each
/// node one within the configured drift bound.
#[derive(Clone, Copy, Debug)]
pub struct SkewedClock {
    /// The runtime instant the clock starts counting from.
    pub epoch: tokio::time::Instant,
    /// The reading at `epoch`.
    pub offset: Duration,
    /// How much faster (positive) or slower (negative) than the runtime's
    /// clock, in parts per million (|rate_ppm| < 10⁶).
    pub rate_ppm: i64,
}

impl SkewedClock {
    fn scale(&self) -> u128 {
        (1_000_000 + self.rate_ppm).max(1) as u128
    }
}

impl Clock for SkewedClock {
    fn local(&self, at: tokio::time::Instant) -> Instant {
        let elapsed = at.saturating_duration_since(self.epoch).as_nanos();
        let scaled = elapsed * self.scale() / 1_000_000 + self.offset.as_nanos();
        Instant::from_nanos(u64::try_from(scaled).unwrap_or(u64::MAX))
    }

    fn runtime_instant(&self, local: Instant) -> tokio::time::Instant {
        let since = u128::from(local.as_nanos()).saturating_sub(self.offset.as_nanos());
        // Rounded up: the timer must not fire before the local deadline.
        let real = (since * 1_000_000).div_ceil(self.scale());
        self.epoch + Duration::from_nanos(u64::try_from(real).unwrap_or(u64::MAX))
    }
}

/// Sleeps until `deadline`; forever if there is none. A quiet group's
/// deadline is `Instant::NEVER`, which is not armed as a timer at all: a
/// timer 584 years out is one the simulator would jump its clock to once
/// nothing else is runnable.
pub(crate) async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_round_trips_and_never_fires_early() {
        let epoch = tokio::time::Instant::now();
        for rate_ppm in [-50_000, -1, 0, 7, 100_000] {
            let clock = SkewedClock {
                epoch,
                offset: Duration::from_secs(3),
                rate_ppm,
            };
            for ms in [0u64, 1, 999, 12_345] {
                let local = Instant::from_nanos(3_000_000_000 + ms * 1_000_003);
                let at = clock.runtime_instant(local);
                assert!(clock.local(at) >= local, "fires at or after the deadline");
            }
            let later = epoch + Duration::from_secs(10);
            let expected = 3e9 + 10e9 * (1.0 + rate_ppm as f64 / 1e6);
            let got = clock.local(later).as_nanos() as f64;
            assert!(
                (got - expected).abs() < 2.0,
                "{rate_ppm}: {got} vs {expected}"
            );
        }
    }
}
