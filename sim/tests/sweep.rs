//! A small sweep in the test suite: every seed passes every checker, for
//! each fault class and for five nodes. The full default sweep runs from the
//! command line (README) and in CI.
#![cfg(madsim)]

use oar_sim::options::{FaultSet, SimOptions};
use oar_sim::run::{Verdict, run};

fn sweep(seeds: std::ops::Range<u64>, nodes: usize, faults: FaultSet) {
    for seed in seeds {
        let options = SimOptions {
            nodes,
            faults,
            ..SimOptions::new(seed)
        };
        let report = run(&options).report;
        assert!(
            matches!(report.verdict, Verdict::Pass),
            "seed {seed} ({nodes} nodes, {faults:?}): {:?}",
            report.verdict
        );
        assert!(
            report.ops > 100 && report.leader_terms >= 1,
            "seed {seed} did work: {report:?}"
        );
        // Every heal was measured, within the bound, and the tail ran.
        let last = report.recoveries.last().expect("the final heal recovered");
        assert!(last.stall <= report.recovery_bound, "seed {seed}: {last:?}");
        assert!(report.churn.is_some(), "seed {seed}: no tail");
    }
}

#[test]
fn every_fault_class_passes() {
    for faults in [
        FaultSet::Net,
        FaultSet::Crash,
        FaultSet::Disk,
        FaultSet::Stranger,
        FaultSet::None,
    ] {
        sweep(1000..1010, 3, faults);
    }
}

#[test]
fn five_nodes_pass() {
    sweep(2000..2020, 5, FaultSet::All);
}
