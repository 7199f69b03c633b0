//! The durability check against a legitimate loss: a follower's log
//! truncated by a newer leader keeps no promise about the entries it
//! dropped, even when the replacing entries never reached the disk.
#![cfg(madsim)]

use oar_sim::options::SimOptions;
use oar_sim::run::{Verdict, run};

/// Seed 655 at 5 servers with sync errors, restarts and leader partitions
/// weighted up (seed 1057 with its own mix did the same on 54ea817): n4
/// acknowledged entries through 544 to the term-2 leader, which were never
/// committed; the term-3 leader's entries from 541 on replaced them, the
/// truncation was durable, the new segment's sync failed (fail-stop) and a
/// power loss took its entries. Before the checker learned of replacing
/// writes this was a `DurabilityLost` ("entries through 544 acknowledged to
/// leader n1 in term 2", recovered "log 452..=540 (last 2.540)").
#[test]
fn a_truncation_whose_replacement_never_reached_the_disk_breaks_no_promise() {
    let defaults = SimOptions::new(655);
    let weights = "sync_error=40,restart=30,partition_leader=20,linger=10";
    let options = SimOptions {
        nodes: 5,
        fault_weights: defaults
            .fault_weights
            .override_from(weights)
            .expect("weights"),
        ..defaults
    };
    let report = run(&options).report;
    assert!(
        matches!(report.verdict, Verdict::Pass),
        "{:?}",
        report.verdict
    );
    assert!(report.durability.appends > 0, "{:?}", report.durability);
}
