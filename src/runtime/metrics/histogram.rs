//! A lock-free histogram with fixed buckets: one relaxed atomic add for the
//! bucket and one for the sum per observation, no lock and no allocation.
//! (prometheus-client's own `Histogram` takes a mutex per observation.)

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts observations (integers in a fixed unit: nanoseconds, entries)
/// into buckets with fixed inclusive upper bounds, plus an overflow bucket.
#[derive(Debug)]
pub(crate) struct Histogram {
    /// Inclusive upper bounds, ascending, in the observation unit.
    bounds: &'static [u64],
    /// `counts[i]` observations fell in bucket `i` (not cumulative);
    /// `counts[bounds.len()]` above every bound.
    counts: Box<[AtomicU64]>,
    /// Sum of all observations, in the observation unit.
    sum: AtomicU64,
}

/// A histogram's counts read at one moment, for exposition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HistogramSnapshot {
    /// (upper bound in the exposed unit, observations in that bucket only),
    /// the overflow bucket last with an infinite bound.
    pub(crate) buckets: Vec<(f64, u64)>,
    /// Sum of observations in the exposed unit.
    pub(crate) sum: f64,
    /// Number of observations.
    pub(crate) count: u64,
}

/// Latency bounds in nanoseconds: 50 µs to 5 s, about three per decade.
pub(crate) const LATENCY_NANOS: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];

/// Batch-size bounds (entries): powers of two up to 8,192.
pub(crate) const BATCH_ENTRIES: &[u64] = &[
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
];

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub(crate) fn new(bounds: &'static [u64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub(crate) fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The counts now, bounds and sum multiplied by `scale` (e.g. 1e-9 for
    /// nanoseconds exposed as seconds). Concurrent observations may be
    /// half counted (bucket but not yet sum); Prometheus tolerates that.
    pub(crate) fn snapshot(&self, scale: f64) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(self.counts.len());
        let mut count = 0;
        for (i, n) in self.counts.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            count += n;
            let bound = match self.bounds.get(i) {
                Some(&b) => b as f64 * scale,
                None => f64::INFINITY,
            };
            buckets.push((bound, n));
        }
        HistogramSnapshot {
            buckets,
            sum: self.sum.load(Ordering::Relaxed) as f64 * scale,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = Histogram::new(&[1, 10, 100]);
        for v in [0, 1, 2, 10, 11, 100, 101, 5_000] {
            h.observe(v);
        }
        let s = h.snapshot(1.0);
        let counts: Vec<u64> = s.buckets.iter().map(|b| b.1).collect();
        assert_eq!(counts, [2, 2, 2, 2]);
        assert_eq!(s.buckets[3].0, f64::INFINITY);
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 5_225.0);
    }

    #[test]
    fn the_snapshot_scales_bounds_and_sum() {
        let h = Histogram::new(LATENCY_NANOS);
        h.observe(1_000_000);
        let s = h.snapshot(1e-9);
        assert_eq!(s.buckets[4], (0.001, 1));
        assert!((s.sum - 0.001).abs() < 1e-12);
    }
}
