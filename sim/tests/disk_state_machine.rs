//! On-disk state machines under the simulator: each keeps its map in a
//! store of its own that outlives restarts (a batch behind now and then),
//! so restarts resume from it instead of the snapshot. Every seed passes
//! every checker (a resumed store must equal the run's applies through its
//! point, and applies must go on after it, never before), and restarts did
//! resume.
#![cfg(madsim)]

use oar_sim::options::{FaultSet, SimOptions};
use oar_sim::run::{Verdict, run};

#[test]
fn restarts_resume_from_the_state_machines_own_store() {
    let mut resumptions = 0;
    for seed in 3000..3010 {
        let options = SimOptions {
            faults: FaultSet::Crash,
            // A session group always loads the snapshot (its table is there).
            sessions: false,
            disk_state_machine: true,
            ..SimOptions::new(seed)
        };
        let report = run(&options).report;
        assert!(
            matches!(report.verdict, Verdict::Pass),
            "seed {seed}: {:?}",
            report.verdict
        );
        resumptions += report.resumptions;
    }
    assert!(resumptions > 0, "no restart resumed from its store");
}

/// Seed 77 with crash faults: a member applied a committed entry before
/// its own log held it durably, its store kept it, the crash took the log
/// write, and the restarted member refused to start (`AppliedNotInLog`).
/// A node now applies only what its own disk holds.
#[test]
fn a_store_is_never_ahead_of_its_members_durable_log() {
    let options = SimOptions {
        faults: FaultSet::Crash,
        sessions: false,
        disk_state_machine: true,
        ..SimOptions::new(77)
    };
    let report = run(&options).report;
    assert!(
        matches!(report.verdict, Verdict::Pass),
        "{:?}",
        report.verdict
    );
}
