//! The crash-recovery property test against the server log (one log for
//! many groups), on the simulated disk and on real files with crashes:
//! many groups' batches interleaved, overwrites, compactions, resets,
//! removals, crashes at random points (see `storage/shared_driver.rs`).
//! `OAR_STORAGE_SEEDS` / `OAR_STORAGE_REAL_SEEDS` set the seed counts
//! (default 400 / 40).

mod storage;

use std::path::Path;

use oar::storage::MemFileSystem;
use storage::crash_fs::CrashFs;
use storage::shared_driver::run_shared_seed;

fn seeds(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_group_recovers_what_it_acknowledged_on_the_simulated_disk() {
    let seeds = seeds("OAR_STORAGE_SEEDS", 400);
    let mut total = storage::driver::Stats::default();
    for seed in 0..seeds {
        let disk = MemFileSystem::new(seed);
        let stats = run_shared_seed(seed, &disk, Path::new("/server/log"), 8).unwrap_or_else(|e| {
            panic!(
                "seed {seed}: {e}\nreplay: OAR_STORAGE_SEEDS={} cargo test --test storage_crash_shared",
                seed + 1
            )
        });
        total.crashes_mid_op += stats.crashes_mid_op;
        total.recovered_unacked += stats.recovered_unacked;
        total.acked_checked += stats.acked_checked;
    }
    eprintln!("{total:?}");
    // The workload must crash mid-operation and recover frames it had not
    // acknowledged, or it proves little.
    assert!(total.crashes_mid_op > seeds);
    assert!(total.recovered_unacked > 0 && total.acked_checked > seeds * 10);
}

#[test]
fn every_group_recovers_what_it_acknowledged_on_real_files() {
    let seeds = seeds("OAR_STORAGE_REAL_SEEDS", 40);
    let mut mid_op = 0;
    for seed in 0..seeds {
        let tmp = tempfile::tempdir().unwrap();
        let disk = CrashFs::new(seed);
        let stats = run_shared_seed(seed, &disk, &tmp.path().join("log"), 6)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        mid_op += stats.crashes_mid_op;
    }
    assert!(mid_op > seeds);
}
