//! The core's notion of time: a monotonic instant passed in by the driver.
//!
//! The core never reads a clock. The driver converts its own clock (tokio's,
//! madsim's, or a test's counter) into nanoseconds since an epoch of its
//! choosing, so that the same inputs give the same outputs byte for byte.

use std::ops::Add;
use std::time::Duration;

/// A point on the driver's monotonic clock, in nanoseconds since the driver's
/// epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// A deadline that never comes: what a quiet node (`core::quiesce`)
    /// asks to be woken at.
    pub const NEVER: Instant = Instant(u64::MAX);

    /// The instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, rhs: Duration) -> Instant {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}
