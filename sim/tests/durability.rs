//! The durability check against a legitimate loss: a follower's log
//! truncated by a newer leader keeps no promise about the entries it
//! dropped, even when the replacing entries never reached the disk.
#![cfg(madsim)]

use oar_sim::run::run_pinned_expecting_pass;

/// Seed 1057 at 5 servers with its whole fault mix pinned (a new fault
/// kind or another schedule would move it; 655 with a weighted mix did the
/// same on b72ab27): n4, a learner cut off with the term-1 leader,
/// acknowledged entries through 115 that were never committed; the term-3
/// leader's entries replaced them from 113 on, the truncation was durable,
/// the new segment's sync failed (fail-stop) and a power loss took its
/// entries. Before the checker learned of replacing writes this was a
/// `DurabilityLost` ("entries through 115 acknowledged to leader n2 in term
/// 1", recovered "log 82..=112 (last 1.112)").
#[test]
fn a_truncation_whose_replacement_never_reached_the_disk_breaks_no_promise() {
    let weights = "partition_leader=14,partition_random=6,partition_bridge=0,blackhole=2,\
        clog_link=0,slow_network=3,heal_network=9,crash=0,restart=28,pause=3,resume=5,\
        sync_error=12,meta_bit_flip=3,membership_change=7,transfer=0,replacement=2,linger=6,\
        config_window=2,install_campaign=5,install_restart=3,snapshot=0,lull=6,stranger=10,\
        lease_pause=4,fresh_leader_restart=0";
    let report = run_pinned_expecting_pass(1057, 5, weights);
    assert!(report.durability.appends > 0, "{:?}", report.durability);
}
