//! A killed server's undelivered bytes against its successor: seed 3 at 5
//! servers with its whole fault mix pinned (a new fault kind or another
//! schedule would move it). Pre-vote and check-quorum are off in this seed.
//! n1's group failed its vote's sync at 12.66 s while campaigning for term
//! 18 in a partition; its vote request sat on the clogged link (the
//! simulated network retries a clogged link's data with backoff); n1 was
//! killed and restarted at 18.37 s and followed leader n2 in term 17; the
//! old request reached n2 at 20.86 s, in the fault-free tail, and deposed
//! it (`LIVENESS`: two elections in the tail). Since a restarted server's
//! `Hello` names its new start, n2 closes the earlier life's connection
//! when the new one connects (`src/runtime/peer_lives.rs`), and the stale
//! request never arrives.
#![cfg(madsim)]

use oar_sim::run::run_pinned_expecting_pass;

#[test]
fn a_dead_lifes_vote_request_does_not_depose_the_leader() {
    let weights = "partition_leader=20,partition_random=2,partition_bridge=1,blackhole=0,\
        clog_link=9,slow_network=0,heal_network=16,crash=15,restart=30,pause=7,resume=10,\
        sync_error=40,meta_bit_flip=7,membership_change=20,transfer=3,replacement=8,linger=10,\
        config_window=0,install_campaign=6,install_restart=0,snapshot=8,lull=3,stranger=8,\
        lease_pause=8,fresh_leader_restart=6";
    run_pinned_expecting_pass(3, 5, weights);
}
