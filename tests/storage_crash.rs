//! Crash-recovery property test over the simulated disk: for many seeds,
//! random appends, flushes and truncations, crashes at random points (unsynced
//! writes lost, torn or kept as the seed says, directory changes undone),
//! then recovery: every acknowledged entry is there intact and in order,
//! nothing never written (or durably removed) appears, and the log keeps
//! working. `OAR_STORAGE_SEEDS` sets the number of seeds (default 400).

mod storage;

use std::path::Path;

use oar::storage::MemFileSystem;
use storage::driver::run_seed;

fn seeds() -> u64 {
    std::env::var("OAR_STORAGE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
}

#[test]
fn acknowledged_entries_survive_crashes_on_the_simulated_disk() {
    let mut total = storage::driver::Stats::default();
    for seed in 0..seeds() {
        let disk = MemFileSystem::new(seed);
        let stats = run_seed(seed, &disk, Path::new("/data/log"), 8).unwrap_or_else(|e| {
            panic!(
                "seed {seed}: {e}\nreplay: OAR_STORAGE_SEEDS={} cargo test --test storage_crash",
                seed + 1
            )
        });
        total.crashes_mid_op += stats.crashes_mid_op;
        total.recovered_unacked += stats.recovered_unacked;
        total.acked_checked += stats.acked_checked;
    }
    eprintln!("{total:?}");
    // The workload must actually crash mid-operation and see kept unsynced
    // writes, or it proves little.
    assert!(total.crashes_mid_op > seeds());
    assert!(total.recovered_unacked > 0 && total.acked_checked > seeds() * 10);
}
