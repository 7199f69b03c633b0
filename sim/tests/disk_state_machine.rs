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
