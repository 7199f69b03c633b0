//! Membership changes in the core: joint consensus (dissertation §4.3),
//! removal of the leader (§4.2.2), roll-back of truncated configurations
//! (§4.1), learners, promotion with a catch-up margin, one change at a time,
//! and a cluster grown from 1 to 5 voters and shrunk to 3 under load.

mod harness;

use std::time::Duration;

use harness::{Cluster, MS, n, set};
use oar::core::{
    ConfChangeError, EntryPayload, Instant, LogId, LogIndex, Membership, Message, MessageBody,
    NodeId, RaftNode, RaftOptions, Role, Term, VoteResponse,
};

/// A 3-voter group led by n1, plus fresh nodes `extra` added as learners
/// and caught up.
fn with_learners(seed: u64, extra: &[u64], margin: u64) -> Cluster {
    let make = move |id| RaftOptions {
        catchup_margin: margin,
        ..harness::options(id, seed)
    };
    let mut c = Cluster::with_options(3, make);
    c.make_leader(1);
    for &id in extra {
        c.add_node(n(id), make(n(id)));
        c.call(n(1), |r, now| r.add_learner(now, n(id)))
            .expect("add learner");
        c.stabilize();
    }
    c
}

fn committed(c: &Cluster, id: u64) -> LogIndex {
    c.node(id).log().committed()
}

/// Moves {1,2,3} → {1,4,5} with `cut` (one half's other two voters) cut off
/// first, then checks that the remaining half alone — it holds C(old,new)
/// and a command — can neither commit C(old,new) nor, once leader 1 dies,
/// elect anyone. Every leader announced counts, even one that check-quorum
/// deposes at once. Returns the cluster, with 1 crashed and `cut` still cut.
fn one_half_alone_cannot_commit_nor_elect(cut: [u64; 2], half: &str) -> Cluster {
    let mut c = with_learners(1, &[4, 5], 1000);
    for id in cut {
        c.isolate(n(id));
    }
    let target = Membership::with_voters(set(&[1, 4, 5]));
    let joint = c
        .call(n(1), |r, now| r.change_membership(now, target))
        .expect("change accepted");
    assert_eq!(c.node(1).membership().outgoing_voters, set(&[1, 2, 3]));
    let command = c.propose(n(1), "during joint").expect("leader accepts");
    c.stabilize();
    let holders: Vec<u64> = [2, 3, 4, 5]
        .into_iter()
        .filter(|id| !cut.contains(id))
        .collect();
    for &id in &holders {
        assert!(c.node(id).log().matches(command), "n{id} holds the command");
    }
    assert!(
        committed(&c, 1) < joint.index,
        "the {half} majority alone committed C(old,new)"
    );
    let last_term = *c.leaders.keys().max().expect("1 led");
    c.crash(n(1));
    c.run_until(5 * MS, Duration::from_secs(3), |_| false);
    let elected: Vec<_> = c.leaders.range(last_term.next().unwrap()..).collect();
    assert!(
        elected.is_empty(),
        "the {half} majority alone elected: {elected:?}"
    );
    c
}

/// The old majority alone can neither commit nor elect during C(old,new);
/// with the new majority back, the change completes and a leader that C(new)
/// removes steps down.
#[test]
fn joint_consensus_needs_both_majorities() {
    let mut c = one_half_alone_cannot_commit_nor_elect([4, 5], "old {1,2,3}");
    // 4 and 5 come back: 2 or 3 wins a majority of both halves, finishes
    // the change, and — not in C(new) — steps down once C(new) commits.
    c.heal();
    let done = c.run_until(5 * MS, Duration::from_secs(10), |c| {
        c.leader().is_some_and(|l| [4, 5].contains(&l.0)) && !c.node(4).membership_change_pending()
    });
    assert!(done, "the change did not complete");
    for id in [2, 3] {
        let node = c.node(id);
        assert_eq!(node.membership().voters, set(&[1, 4, 5]));
        assert_ne!(node.role(), Role::Leader);
    }
    // Every term 2 or 3 led ended before C(new) left them out.
    assert!(c.leaders.values().any(|l| [2, 3].contains(&l.0)));
    c.check_log_matching();
}

/// The mirror of the test above: C(new)'s majority alone, without C(old)'s,
/// may neither commit C(old,new) nor elect a leader.
#[test]
fn the_new_majority_alone_cannot_commit_nor_elect() {
    let c = one_half_alone_cannot_commit_nor_elect([2, 3], "new {1,4,5}");
    c.check_log_matching();
}

/// A leader that removes itself keeps leading until C(new) commits, takes no
/// more proposals meanwhile, then steps down and never campaigns again.
#[test]
fn a_removed_leader_steps_down_after_c_new_commits() {
    let mut c = Cluster::new(3, 2);
    c.make_leader(1);
    let joint = c
        .call(n(1), |r, now| r.remove_member(now, n(1)))
        .expect("change accepted");
    let mut saw_pending_removal = false;
    c.drain_all();
    while !c.network.is_empty() {
        let _ = c.deliver_at(0);
        c.drain_all();
        let node = c.node(1);
        if node.role() == Role::Leader && !node.membership().is_voter(n(1)) {
            saw_pending_removal = true;
            assert!(
                c.propose(n(1), "late").is_err(),
                "a leader being removed accepts proposals"
            );
        }
    }
    assert!(saw_pending_removal, "n1 led while C(new) was in flight");
    let node = c.node(1);
    assert_eq!(node.role(), Role::Follower, "n1 did not step down");
    assert!(committed(&c, 1) > joint.index);
    assert_eq!(node.membership().voters, set(&[2, 3]));
    let ok = c.run_until(5 * MS, Duration::from_secs(5), |c| {
        c.leader().is_some_and(|l| l != n(1))
    });
    assert!(ok, "2 and 3 elected no leader");
    c.run_until(5 * MS, Duration::from_secs(5), |_| false);
    assert_eq!(
        c.node(1).role(),
        Role::Follower,
        "the removed node campaigned"
    );
}

/// Once a configuration that removes a peer commits, the leader stops
/// tracking it: no more appends nor heartbeats go there.
#[test]
fn a_removed_peer_leaves_the_leaders_progress() {
    let mut c = Cluster::new(3, 4);
    c.make_leader(1);
    let tracked =
        |c: &Cluster| -> Vec<NodeId> { c.node(1).status().peers.iter().map(|p| p.id).collect() };
    assert_eq!(tracked(&c), vec![n(2), n(3)]);
    c.call(n(1), |r, now| r.remove_member(now, n(3)))
        .expect("change accepted");
    c.stabilize();
    assert_eq!(c.node(1).membership().voters, set(&[1, 2]));
    assert!(!c.node(1).membership().is_joint(), "C(new) not appended");
    c.propose(n(1), "after").expect("leader accepts");
    c.stabilize();
    assert_eq!(tracked(&c), vec![n(2)], "the leader still tracks n3");
}

/// A configuration entry that a new leader overwrites stops being in effect.
#[test]
fn a_truncated_configuration_entry_rolls_back() {
    let mut c = with_learners(3, &[4], 1000);
    c.isolate(n(1));
    let before = c.node(1).membership().clone();
    c.call(n(1), |r, now| r.remove_member(now, n(4)))
        .expect("change accepted");
    assert!(
        !c.node(1).membership().contains(n(4)),
        "in effect when appended"
    );
    // 2 and 3 elect a leader of a later term, which overwrites the entry.
    let ok = c.run_until(5 * MS, Duration::from_secs(5), |c| {
        c.leader().is_some_and(|l| l != n(1))
    });
    assert!(ok);
    c.heal();
    let leader = c.leader().unwrap();
    let last = c.propose(leader, "after").expect("accepts");
    let ok = c.run_until(5 * MS, Duration::from_secs(5), |c| {
        c.node(1).log().matches(last) && c.node(1).log().committed() >= last.index
    });
    assert!(ok, "n1 did not catch up");
    assert_eq!(
        c.node(1).membership(),
        &before,
        "configuration not rolled back"
    );
    assert!(c.node(1).membership().learners.contains(&n(4)));
}

/// Learners receive the log but are not counted, are not asked for votes,
/// their grants do not count, and they never campaign.
#[test]
fn learners_never_vote_nor_count_nor_campaign() {
    let mut c = with_learners(4, &[4, 5], 1000);
    c.record_trace = true;
    c.isolate(n(2));
    c.isolate(n(3));
    let id = c.propose(n(1), "x").expect("accepts");
    c.stabilize();
    for learner in [4, 5] {
        assert!(
            c.node(learner).log().matches(id),
            "learner n{learner} holds it"
        );
    }
    assert!(
        committed(&c, 1) < id.index,
        "learners counted toward commit"
    );
    // The leader dies; the learners wait forever.
    c.crash(n(1));
    c.run_until(5 * MS, Duration::from_secs(5), |_| false);
    for learner in [4, 5] {
        assert_eq!(c.node(learner).role(), Role::Follower);
        let prefix = format!("{}: Send(Message {{ from: {:?}", n(learner), n(learner));
        assert!(
            !c.trace
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains("VoteRequest")),
            "learner n{learner} campaigned"
        );
    }
    // n2 campaigns; forged grants from the learners must not elect it.
    c.heal();
    c.isolate(n(3));
    c.now = c.now + Duration::from_secs(1);
    c.tick_node(n(2));
    c.drain_all();
    let term = c.node(2).term();
    for learner in [4, 5] {
        assert!(
            c.in_flight(2, learner, "pre_vote").is_empty(),
            "learner asked to vote"
        );
        for pre_vote in [true, false] {
            let grant = Message {
                from: n(learner),
                to: n(2),
                term: if pre_vote { Term(term.0 + 1) } else { term },
                body: MessageBody::VoteResponse(VoteResponse {
                    pre_vote,
                    granted: true,
                }),
            };
            let now = c.now;
            let _ = c
                .nodes
                .get_mut(&n(2))
                .unwrap()
                .raft
                .handle_message(now, grant);
            c.drain(n(2));
        }
    }
    assert_ne!(c.node(2).role(), Role::Leader, "learners' votes counted");
    assert_ne!(
        c.node(2).role(),
        Role::Candidate,
        "learners' pre-votes counted"
    );
}

/// Promotion waits for the learner to be within the catch-up margin.
#[test]
fn promotion_is_refused_while_the_learner_lags() {
    let mut c = with_learners(5, &[], 5);
    c.add_node(
        n(4),
        RaftOptions {
            catchup_margin: 5,
            ..harness::options(n(4), 5)
        },
    );
    c.isolate(n(4));
    c.call(n(1), |r, now| r.add_learner(now, n(4))).unwrap();
    c.stabilize();
    for i in 0..20 {
        c.propose(n(1), &format!("c{i}")).unwrap();
    }
    c.stabilize();
    let refused = c.call(n(1), |r, now| r.promote_learner(now, n(4)));
    assert!(
        matches!(refused, Err(ConfChangeError::LearnerLagging { id, margin: 5, .. }) if id == n(4)),
        "{refused:?}"
    );
    assert_eq!(
        c.call(n(1), |r, now| r.promote_learner(now, n(9))),
        Err(ConfChangeError::NotAMember { id: n(9) })
    );
    let stranger = Membership::with_voters(set(&[1, 2, 3, 9]));
    assert_eq!(
        c.call(n(1), |r, now| r.change_membership(now, stranger)),
        Err(ConfChangeError::NotALearner { id: n(9) })
    );
    c.heal();
    let ok = c.run_until(5 * MS, Duration::from_secs(2), |c| {
        c.node(4).log().committed() >= c.node(1).log().last_index()
    });
    assert!(ok, "learner did not catch up");
    c.call(n(1), |r, now| r.promote_learner(now, n(4)))
        .expect("caught up");
    c.stabilize();
    for id in 1..=4 {
        let m = c.node(id).membership();
        assert_eq!(m.voters, set(&[1, 2, 3, 4]), "n{id}");
        assert!(!m.is_joint() && m.learners.is_empty());
    }
}

/// One change at a time, typed refusals, and no change during a transfer.
#[test]
fn a_second_change_in_flight_is_refused() {
    let mut c = with_learners(6, &[4, 5], 1000);
    assert_eq!(
        c.call(n(2), |r, now| r.add_learner(now, n(7))),
        Err(ConfChangeError::NotLeader {
            leader_hint: Some(n(1))
        })
    );
    assert_eq!(
        c.call(n(1), |r, now| r
            .change_membership(now, Membership::default())),
        Err(ConfChangeError::EmptyVoters)
    );
    let same = c.node(1).membership().clone();
    assert_eq!(
        c.call(n(1), |r, now| r.change_membership(now, same)),
        Err(ConfChangeError::Unchanged)
    );
    let joint = c.call(n(1), |r, now| r.promote_learner(now, n(4))).unwrap();
    let refused = c.call(n(1), |r, now| r.add_learner(now, n(6)));
    assert_eq!(
        refused,
        Err(ConfChangeError::InProgress {
            pending: joint.index
        })
    );
    assert!(
        c.call(n(1), |r, now| r.transfer_leadership(now, n(2)))
            .is_err()
    );
    // Joint committed, C(new) not yet: still in flight.
    let mut saw_c_new_pending = false;
    c.drain_all();
    while !c.network.is_empty() {
        let _ = c.deliver_at(0);
        c.drain_all();
        let node = c.node(1);
        if committed(&c, 1) >= joint.index && node.membership_change_pending() {
            saw_c_new_pending = true;
            let refused = c.call(n(1), |r, now| r.remove_member(now, n(5)));
            assert!(
                matches!(refused, Err(ConfChangeError::InProgress { .. })),
                "{refused:?}"
            );
        }
    }
    assert!(saw_c_new_pending);
    c.call(n(1), |r, now| r.transfer_leadership(now, n(2)))
        .expect("transfer starts");
    assert_eq!(
        c.call(n(1), |r, now| r.remove_member(now, n(5))),
        Err(ConfChangeError::TransferInProgress { target: n(2) })
    );
    c.stabilize();
    let leader = c.leader().unwrap();
    assert_eq!(leader, n(2));
    c.run_until(5 * MS, Duration::from_secs(1), |c| {
        c.node(2).log().committed() == c.node(2).log().last_index()
    });
    c.call(leader, |r, now| r.remove_member(now, n(5)))
        .expect("settled: accepted");
}

/// Grows a group from 1 to 5 voters and shrinks it to 3 (removing the
/// leader) while proposals keep flowing; nothing accepted is lost.
#[test]
fn grow_from_one_to_five_voters_and_shrink_to_three_under_load() {
    let make = |id| RaftOptions {
        catchup_margin: 3,
        ..harness::options(id, 7)
    };
    let mut c = Cluster::with_options(1, make);
    c.elect();
    let mut sent = 0;
    let mut load = |c: &mut Cluster| {
        if let Some(leader) = c.leader() {
            for _ in 0..3 {
                sent += 1;
                let _ = c.propose(leader, &format!("w{sent}"));
            }
        }
        c.advance(7 * MS);
        c.stabilize();
    };
    // Each step retries while the group refuses (lagging, in flight).
    type Change<'a> = &'a dyn Fn(&mut RaftNode, Instant) -> Result<LogId, ConfChangeError>;
    let mut apply = |c: &mut Cluster, change: Change| {
        for _ in 0..500 {
            load(c);
            let Some(leader) = c.leader() else { continue };
            match c.call(leader, change) {
                Ok(_) => return,
                Err(
                    ConfChangeError::LearnerLagging { .. } | ConfChangeError::InProgress { .. },
                )
                | Err(ConfChangeError::LeaderNotReady) => {}
                Err(e) => panic!("change refused: {e}"),
            }
        }
        panic!("change never accepted");
    };
    for id in 2..=5 {
        c.add_node(n(id), make(n(id)));
        apply(&mut c, &|r, now| r.add_learner(now, n(id)));
        apply(&mut c, &|r, now| r.promote_learner(now, n(id)));
    }
    apply(&mut c, &|r, now| r.remove_member(now, n(1)));
    apply(&mut c, &|r, now| r.remove_member(now, n(5)));
    let ok = c.run_until(5 * MS, Duration::from_secs(5), |c| {
        c.leader()
            .is_some_and(|l| !c.node(l.0).membership_change_pending())
    });
    assert!(ok);
    let leader = c.leader().unwrap();
    assert_eq!(c.node(leader.0).membership().voters, set(&[2, 3, 4]));
    let last = c.propose(leader, "final").unwrap();
    let ok = c.run_until(5 * MS, Duration::from_secs(5), |c| {
        [2, 3, 4]
            .iter()
            .all(|&id| c.test_node(id).applied.last().is_some_and(|e| e.id == last))
    });
    assert!(ok, "voters did not converge");
    // Every accepted write of the current members is applied or failed.
    c.check_log_matching();
    c.check_proposals_resolved();
    let applied_commands = c
        .test_node(2)
        .applied
        .iter()
        .filter(|e| matches!(e.payload, EntryPayload::Command(_)))
        .count();
    assert!(applied_commands > 30, "load flowed: {applied_commands}");
}
