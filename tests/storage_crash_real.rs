//! The crash-recovery property test over real files in a temp dir: a crash
//! kills every handle and reverts unsynced writes (lost, torn at a 512-byte
//! boundary, or kept, as the seed decides) — for an appended file that is
//! truncation to the last synced length. `OAR_STORAGE_REAL_SEEDS` sets the
//! number of seeds (default 40).

mod storage;

use storage::crash_fs::CrashFs;
use storage::driver::run_seed;

#[test]
fn acknowledged_entries_survive_crashes_on_real_files() {
    let seeds = std::env::var("OAR_STORAGE_REAL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut mid_op = 0;
    for seed in 0..seeds {
        let tmp = tempfile::tempdir().unwrap();
        let disk = CrashFs::new(seed);
        let stats = run_seed(seed, &disk, &tmp.path().join("log"), 6)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        mid_op += stats.crashes_mid_op;
    }
    assert!(mid_op > seeds);
}
