//! A seeded random workload over a [`SegmentLog`] with crashes at random
//! points, checked against [`LogModel`] after every recovery.

use std::path::Path;
use std::sync::Arc;

use oar::core::LogId;
use oar::storage::{FileSystem, LogOptions, MemFileSystem, SegmentLog};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::{InFlight, LogModel};

/// A disk that can lose power.
pub trait Disk {
    /// The file system to run the log on.
    fn fs(&self) -> Arc<dyn FileSystem>;
    /// After `ops` more mutating calls, every call fails.
    fn power_off_after(&self, ops: u64);
    /// Loses unsynced state as the disk's seed decides; power comes back.
    fn crash(&self);
    /// Whether the power is off, so that calls fail.
    fn is_powered_off(&self) -> bool;
}

impl Disk for MemFileSystem {
    fn fs(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }
    fn power_off_after(&self, ops: u64) {
        MemFileSystem::power_off_after(self, ops)
    }
    fn crash(&self) {
        MemFileSystem::crash(self)
    }
    fn is_powered_off(&self) -> bool {
        MemFileSystem::is_powered_off(self)
    }
}

/// Counts of what one seed exercised, to check the workload has teeth.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Crashes in the middle of an operation (the power went off).
    pub crashes_mid_op: u64,
    /// Entries recovered past the acknowledged ones (unsynced but kept).
    pub recovered_unacked: u64,
    /// Acknowledged entries checked after recoveries.
    pub acked_checked: u64,
}

/// Runs `rounds` rounds of random operations, each ended by a crash at a
/// random point, over `disk` with the log in `dir`.
pub fn run_seed(seed: u64, disk: &dyn Disk, dir: &Path, rounds: u32) -> Result<Stats, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let segment_bytes_max = rng.random_range(600..4000);
    let options = LogOptions {
        segment_bytes_max,
        // Growing segments in most seeds, the full bound from the first in some.
        segment_bytes_first: rng.random_range(100..=segment_bytes_max),
        preallocate: rng.random_bool(0.8),
        direct_io: rng.random_bool(0.5),
    };
    let mut stats = Stats::default();
    let mut model = LogModel::default();
    let mut term = 1u64;
    let open = |disk: &dyn Disk| {
        SegmentLog::open(disk.fs(), dir, options).map_err(|e| format!("open: {e}"))
    };
    let (mut log, recovered) = open(disk)?;
    model.check_recovered(&recovered, InFlight::Nothing)?;
    for round in 0..rounds {
        disk.power_off_after(rng.random_range(0..120));
        let mut in_flight = InFlight::Nothing;
        for _ in 0..rng.random_range(1..60) {
            let op = rng.random_range(0..100);
            in_flight = InFlight::Nothing;
            let result = if op < 55 {
                let first = model.last() + 1;
                let batch: Vec<_> = (first..first + rng.random_range(1..8))
                    .map(|i| match rng.random_range(0..20) {
                        0 => super::config_entry(term, i),
                        _ => super::entry(term, i, rng.random_range(0..300)),
                    })
                    .collect();
                model.append(&batch);
                log.append(&batch)
            } else if op < 80 {
                log.flush().map(|_| model.flushed())
            } else if op < 92 {
                let t = rng.random_range(model.purged.index.0..=model.last());
                in_flight = InFlight::TruncateSuffix(t);
                term += 1;
                log.truncate_suffix(oar::core::LogIndex(t))
                    .map(|()| model.truncated_suffix(t))
            } else {
                let p = rng.random_range(model.purged.index.0 + 1..=model.last() + 3);
                let t = model.entries.get(&p).map_or(term, |e| e.id.term.0);
                let id = LogId::new(t, p);
                in_flight = InFlight::TruncatePrefix(id);
                log.truncate_prefix(id).map(|()| model.truncated_prefix(id))
            };
            if let Err(e) = result {
                // Only the power going off may fail a call here.
                if !disk.is_powered_off() {
                    return Err(format!("round {round}: failed with the power on: {e}"));
                }
                stats.crashes_mid_op += 1;
                break;
            }
        }
        drop(log);
        disk.crash();
        let acked = model.acked_last;
        let (reopened, recovered) = open(disk).map_err(|e| format!("round {round}: {e}"))?;
        log = reopened;
        model
            .check_recovered(&recovered, in_flight)
            .map_err(|e| format!("round {round}: {e}"))?;
        stats.acked_checked += acked.saturating_sub(model.purged.index.0);
        stats.recovered_unacked += model.acked_last.saturating_sub(acked);
        // The recovered log must be usable: a few more appends, flushed.
        for _ in 0..3 {
            let next = model.last() + 1;
            let e = super::entry(term, next, rng.random_range(0..300));
            model.append(std::slice::from_ref(&e));
            log.append(&[e])
                .map_err(|e| format!("append after recovery: {e}"))?;
            log.flush()
                .map_err(|e| format!("flush after recovery: {e}"))?;
            model.flushed();
        }
    }
    Ok(stats)
}
