//! The timer a node asks its driver for always lies ahead: a node that may
//! not campaign (a learner cut off from its leader) must not hand its driver
//! a deadline already past, or the driver wakes at once, ticks, is handed
//! the same deadline, and spins a core.

mod harness;

use std::time::Duration;

use harness::{Cluster, n};

#[test]
fn a_learner_cut_off_from_its_leader_does_not_ask_for_a_past_deadline() {
    for seed in 0..10 {
        let mut c = Cluster::new(3, seed);
        c.make_leader(1);
        c.add_node(n(4), harness::options(n(4), seed));
        c.call(n(1), |r, now| r.add_learner(now, n(4))).unwrap();
        c.stabilize();
        assert!(c.node(4).membership().learners.contains(&n(4)));
        c.isolate(n(4));
        for _ in 0..20 {
            c.advance(Duration::from_millis(700));
            let now = c.now;
            let deadline = c.node(4).poll_timeout();
            assert!(
                deadline > now,
                "seed {seed}: the learner asks to be woken at {deadline:?}, already past at {now:?}"
            );
        }
    }
}
