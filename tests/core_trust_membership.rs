//! The refusal of unknown senders (`src/core/trust.rs`) against membership
//! changes: a lagging member still catches up with a leader added after
//! its configuration, a joining node accepts its first leader, and a learner
//! is promoted only once it answered the leader (finding 9).

mod harness;

use std::time::Duration;

use harness::{Cluster, MS, n, set};
use oar::core::{
    ConfChangeError, Heartbeat, InputError, LogIndex, Message, MessageBody, NodeId, RaftOptions,
};

const STRANGER: NodeId = NodeId(42);

/// Voters {1,2,3,4} led by 1, appends of at most two entries. With 4 cut
/// off, ten writes commit, 5 joins as a learner, is promoted, and takes
/// over leadership; then ten more writes. 4 still knows only {1,2,3,4}, a
/// dozen entries (six appends) short of the one that added 5.
fn lagging_member(seed: u64, compaction_margin: u64) -> Cluster {
    let make = move |id| RaftOptions {
        append_entries_max: 2,
        compaction_margin,
        ..harness::options(id, seed)
    };
    let mut c = Cluster::with_options(4, make);
    c.make_leader(1);
    c.isolate(n(4));
    for i in 0..10 {
        c.propose(n(1), &format!("before {i}")).unwrap();
    }
    c.stabilize();
    c.add_node(n(5), make(n(5)));
    c.call(n(1), |r, now| r.add_learner(now, n(5))).unwrap();
    c.stabilize();
    c.call(n(1), |r, now| r.promote_learner(now, n(5)))
        .expect("caught up");
    c.stabilize();
    assert!(!c.node(1).membership_change_pending());
    c.call(n(1), |r, now| r.transfer_leadership(now, n(5)))
        .expect("transfer starts");
    c.stabilize();
    assert_eq!(c.leader(), Some(n(5)));
    for i in 0..10 {
        c.propose(n(5), &format!("after {i}")).unwrap();
    }
    c.stabilize();
    assert_eq!(c.node(4).membership().voters, set(&[1, 2, 3, 4]));
    c
}

/// 4 first refuses the leader it does not know — its term, log and timer
/// untouched — then, once the leader introduces itself, catches up over
/// many appends and acknowledges it.
fn lagging_member_catches_up(mut c: Cluster) -> Cluster {
    c.heal();
    let (term, leader) = (c.node(4).term(), c.node(4).leader());
    let deadline = c.node(4).poll_timeout();
    let beat = Message {
        from: n(5),
        to: n(4),
        term: c.node(5).term(),
        body: MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(0),
            round: 0,
        }),
    };
    assert_eq!(
        c.deliver_now(beat),
        Err(InputError::UnknownPeer { from: n(5) })
    );
    assert_eq!(
        c.node(4).term(),
        term,
        "a refused leader's term was adopted"
    );
    assert_eq!(c.node(4).leader(), leader);
    assert_eq!(c.node(4).poll_timeout(), deadline, "timer reset");
    let last = c.propose(n(5), "final").unwrap();
    let ok = c.run_until(5 * MS, Duration::from_secs(5), |c| {
        let acked = c
            .node(5)
            .status()
            .peers
            .iter()
            .any(|p| p.id == n(4) && p.matched == last.index);
        acked && c.test_node(4).applied.last().is_some_and(|e| e.id == last)
    });
    assert!(
        ok,
        "the lagging member did not catch up with the new leader"
    );
    assert_eq!(c.node(4).leader(), Some(n(5)));
    assert_eq!(c.node(4).membership().voters, set(&[1, 2, 3, 4, 5]));
    c.check_log_matching();
    c
}

/// The lagging member scenario, the leader's log still holding the entry
/// that added it: the introduction is an append carrying it.
#[test]
fn a_lagging_member_catches_up_with_a_leader_it_did_not_know() {
    let c = lagging_member_catches_up(lagging_member(1, 1_000));
    assert_eq!(c.test_node(4).installs, 0, "caught up from the log");
}

/// The same with the leader's log compacted past every configuration
/// entry: the introduction is the snapshot, whose membership names it.
#[test]
fn a_lagging_member_catches_up_through_the_snapshot() {
    let mut c = lagging_member(2, 0);
    c.snapshot_now(n(5)).expect("applied");
    assert!(c.node(5).log().first_index() > LogIndex(20), "compacted");
    let c = lagging_member_catches_up(c);
    assert_eq!(c.test_node(4).installs, 1, "caught up from the snapshot");
}

/// A node with an empty configuration is joining: it accepts its first
/// leader at once, from a heartbeat that names no configuration. Once a
/// member, it refuses strangers like everyone else.
#[test]
fn a_joining_node_accepts_its_first_leader() {
    let mut c = Cluster::new(3, 3);
    c.make_leader(1);
    c.add_node(n(4), harness::options(n(4), 3));
    assert!(c.node(4).membership().members().is_empty());
    let term = c.node(1).term();
    let beat = Message {
        from: n(1),
        to: n(4),
        term,
        body: MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(0),
            round: 0,
        }),
    };
    assert_eq!(c.deliver_now(beat), Ok(()));
    assert_eq!(c.node(4).leader(), Some(n(1)));
    assert_eq!(c.node(4).term(), term);
    c.network.clear();
    c.call(n(1), |r, now| r.add_learner(now, n(4))).unwrap();
    let last = c.propose(n(1), "x").unwrap();
    c.stabilize();
    assert!(c.node(4).membership().learners.contains(&n(4)));
    assert!(c.test_node(4).applied.last().is_some_and(|e| e.id == last));
    let forged = Message {
        from: STRANGER,
        to: n(4),
        term: oar::core::Term(term.0 + 1),
        body: MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(0),
            round: 0,
        }),
    };
    assert_eq!(
        c.deliver_now(forged),
        Err(InputError::UnknownPeer { from: STRANGER })
    );
    assert_eq!(c.node(4).term(), term);
}

/// Finding 9: a learner that never answered is not promoted, however short
/// the log; once it acknowledged the leader and caught up, it is. A new
/// leader asks for its own acknowledgement again.
#[test]
fn a_learner_is_promoted_only_after_it_acknowledged() {
    let mut c = Cluster::new(3, 4);
    c.make_leader(1);
    c.add_node(n(4), harness::options(n(4), 4));
    c.isolate(n(4));
    c.call(n(1), |r, now| r.add_learner(now, n(4))).unwrap();
    c.stabilize();
    let last_index = c.node(1).log().last_index();
    assert!(
        last_index < LogIndex(10),
        "a short log, far within the margin"
    );
    let refused = c.call(n(1), |r, now| r.promote_learner(now, n(4)));
    assert_eq!(
        refused,
        Err(ConfChangeError::LearnerLagging {
            id: n(4),
            matched: LogIndex(0),
            acknowledged: false,
            last_index,
            margin: 1_000,
        })
    );
    // It answers leader 1, then 2 takes over while 4 is cut off again.
    c.heal();
    let ok = c.run_until(5 * MS, Duration::from_secs(2), |c| {
        c.node(4).log().last_index() == c.node(1).log().last_index()
    });
    assert!(ok, "the learner did not catch up");
    c.call(n(1), |r, now| r.transfer_leadership(now, n(2)))
        .expect("transfer starts");
    c.isolate(n(4));
    c.stabilize();
    assert_eq!(c.leader(), Some(n(2)));
    let refused = c.call(n(2), |r, now| r.promote_learner(now, n(4)));
    assert!(
        matches!(
            refused,
            Err(ConfChangeError::LearnerLagging {
                acknowledged: false,
                ..
            })
        ),
        "{refused:?}"
    );
    c.heal();
    let ok = c.run_until(5 * MS, Duration::from_secs(2), |c| {
        c.node(4).log().committed() == c.node(2).log().last_index()
    });
    assert!(ok, "the learner did not follow the new leader");
    c.call(n(2), |r, now| r.promote_learner(now, n(4)))
        .expect("acknowledged and caught up");
    c.stabilize();
    for id in 1..=4 {
        assert_eq!(c.node(id).membership().voters, set(&[1, 2, 3, 4]), "n{id}");
    }
}
