//! A server removed while a voter lagged must not keep the group from
//! electing a leader (dissertation §4.2.3; `src/core/removed.rs`): the
//! simulator's seed 113 at five servers.

mod harness;

use std::time::Duration;

use harness::{Cluster, MS, n, set};
use oar::core::{MessageBody, RaftOptions, Role};

/// Voters {1,2,3,4} led by 1. 4 is cut off (it keeps {1,2,3,4} and a short
/// log); 2 is removed, and cut off as soon as leader 1 appended C(new) =
/// {1,3,4}, so 2's removal looks uncommitted to it (it holds C(old,new), or
/// C(new) uncommitted, and campaigns). C(new) commits on 1 and 3; then 1
/// crashes and the partitions heal: 3 can win only with 4's vote, and 4 —
/// whose configuration still lists 2 and whose log is behind 2's — grants it
/// to 2 whenever 2 asks first.
fn removed_while_a_voter_lagged(pre_vote: bool, seed: u64) -> Cluster {
    let make = move |id| RaftOptions {
        pre_vote,
        ..harness::options(id, seed)
    };
    let mut c = Cluster::with_options(4, make);
    c.make_leader(1);
    c.isolate(n(4));
    for i in 0..5 {
        c.propose(n(1), &format!("before {i}")).unwrap();
    }
    c.stabilize();
    let joint = c
        .call(n(1), |r, now| r.remove_member(now, n(2)))
        .expect("removal accepted");
    c.drain_all();
    while c.node(1).log().last_index() == joint.index {
        assert!(c.deliver_first(|_| true), "C(old,new) never committed");
        c.drain_all();
    }
    c.isolate(n(2));
    c.stabilize();
    assert_eq!(c.node(3).membership().voters, set(&[1, 3, 4]));
    assert!(c.node(3).log().committed() > joint.index);
    assert!(c.node(2).log().committed() <= joint.index);
    assert_eq!(c.node(4).membership().voters, set(&[1, 2, 3, 4]));
    assert!(c.node(2).log().last_id() > c.node(4).log().last_id());
    c.crash(n(1));
    c.heal();
    c
}

/// Without the notice, 2 campaigns for ever and wins 4's vote term after
/// term (3 first led after 2.9 s); with it, 2 stops after its first
/// refusal, 3 leads within a second, and 2 campaigns no more. (Within a
/// second, not two of its election timeouts: 4, campaigning from its stale
/// log without pre-vote, raises the term and so restarts 3's timer until 3
/// draws the shorter timeout; over these 20 seeds that took 160-855 ms.)
fn a_removed_server_stops_disrupting(pre_vote: bool) {
    for seed in 0..20 {
        let mut c = removed_while_a_voter_lagged(pre_vote, seed);
        let start = c.now;
        let led = c.run_until(5 * MS, Duration::from_secs(5), |c| {
            c.leader().is_some_and(|l| l == n(3))
        });
        assert!(led, "seed {seed}: 3 never led");
        let took = c.now.saturating_duration_since(start);
        assert!(
            took <= Duration::from_millis(1000),
            "seed {seed}: 3 led after {took:?}: the removed server kept winning 4's vote"
        );
        c.propose(n(3), "after").expect("3 leads");
        c.stabilize();
        // 2 is told at its first request (here, or before 3 led) and never
        // asks again.
        let mut rounds = 0;
        for _ in 0..400 {
            c.advance(5 * MS);
            let asked = c
                .network
                .iter()
                .any(|m| m.from == n(2) && matches!(m.body, MessageBody::VoteRequest(_)));
            rounds += u32::from(asked);
            c.stabilize();
        }
        assert!(
            rounds <= 1,
            "seed {seed}: the removed server campaigned {rounds} times in 2 s"
        );
        assert_eq!(c.node(3).role(), Role::Leader, "seed {seed}");
        assert_ne!(c.node(2).role(), Role::Candidate, "seed {seed}");
        c.check_log_matching();
    }
}

#[test]
fn a_removed_server_stops_disrupting_without_pre_vote() {
    a_removed_server_stops_disrupting(false);
}

#[test]
fn a_removed_server_stops_disrupting_with_pre_vote() {
    a_removed_server_stops_disrupting(true);
}

/// The notice silences 2 only until its log holds a configuration after the
/// one that dropped it: re-added as a learner and promoted, it campaigns
/// again (here when the leader hands it leadership).
#[test]
fn a_removed_server_re_added_campaigns_again() {
    let mut c = removed_while_a_voter_lagged(false, 3);
    let led = c.run_until(5 * MS, Duration::from_secs(5), |c| c.leader().is_some());
    assert!(led);
    let leader = c.leader().unwrap();
    assert_eq!(c.node(2).role(), Role::Follower, "2 still campaigns");
    c.call(leader, |r, now| r.add_learner(now, n(2)))
        .expect("add learner");
    c.stabilize();
    c.call(leader, |r, now| r.promote_learner(now, n(2)))
        .expect("promote");
    c.stabilize();
    assert_eq!(c.node(2).membership().voters, set(&[1, 2, 3, 4]));
    c.call(leader, |r, now| r.transfer_leadership(now, n(2)))
        .expect("transfer starts");
    c.stabilize();
    assert_eq!(c.leader(), Some(n(2)), "re-added 2 did not campaign");
    c.propose(n(2), "led by 2").expect("2 leads");
    c.stabilize();
    c.check_log_matching();
}
