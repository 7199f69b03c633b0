//! Reads without the log (`core::read`): one test per rule — batching, the
//! first-commit rule, the lease (from send times, ended by step-down and by
//! transfer), follower reads waiting for their apply and failing on a
//! leader change, and log reads.

mod harness;

use std::time::Duration;

use harness::{Cluster, MS, n, options};
use oar::core::{
    Heartbeat, LogIndex, Message, MessageBody, NodeId, RaftOptions, ReadFailure, ReadId,
    ReadPolicy, Role,
};

/// Three nodes led by n1, its no-op committed and applied everywhere.
fn led_by_1(seed: u64) -> Cluster {
    let mut c = Cluster::with_options(3, |id| RaftOptions {
        max_clock_drift: 20 * MS,
        ..options(id, seed)
    });
    c.make_leader(1);
    c
}

fn read(c: &mut Cluster, id: u64, policy: ReadPolicy) -> ReadId {
    c.call(n(id), |r, now| r.read(now, policy))
        .expect("read accepted")
}

/// The outcome of `read` on node `id`, if resolved.
fn outcome(c: &Cluster, id: u64, read: ReadId) -> Option<Result<LogIndex, ReadFailure>> {
    let node = c.test_node(id);
    node.reads
        .iter()
        .find(|(r, _, _)| *r == read)
        .map(|(_, o, _)| o.clone())
}

fn heartbeats_sent(c: &Cluster) -> u64 {
    c.sent.get("heartbeat").copied().unwrap_or(0)
}

#[test]
fn many_reads_share_one_heartbeat_round() {
    let mut c = led_by_1(1);
    let before = heartbeats_sent(&c);
    // Ten reads in one input batch (as the runtime drains its inbox).
    let reads: Vec<ReadId> = c.call(n(1), |r, now| {
        (0..10)
            .map(|_| r.read(now, ReadPolicy::ReadIndex).expect("accepted"))
            .collect()
    });
    c.stabilize();
    // One round: one heartbeat to each of the two followers, not twenty.
    assert_eq!(heartbeats_sent(&c) - before, 2, "N reads, one round");
    let committed = c.node(1).log().committed();
    for r in reads {
        assert_eq!(outcome(&c, 1, r), Some(Ok(committed)));
    }
    // Reads arriving while that round is out wait for the next one, which
    // they again share.
    let first = read(&mut c, 1, ReadPolicy::ReadIndex);
    let before = heartbeats_sent(&c);
    let later: Vec<ReadId> = (0..5)
        .map(|_| read(&mut c, 1, ReadPolicy::ReadIndex))
        .collect();
    assert_eq!(heartbeats_sent(&c) - before, 0, "round in flight: wait");
    c.stabilize();
    assert_eq!(
        heartbeats_sent(&c) - before,
        2,
        "one more round for all five"
    );
    assert!(outcome(&c, 1, first).is_some_and(|o| o.is_ok()));
    for r in later {
        assert!(outcome(&c, 1, r).is_some_and(|o| o.is_ok()));
    }
}

#[test]
fn a_read_index_is_confirmed_by_a_quorum_round() {
    let mut c = led_by_1(2);
    let r = read(&mut c, 1, ReadPolicy::ReadIndex);
    // Without any heartbeat answered, nothing is served...
    c.stabilize_dropping(|m| matches!(m.body, MessageBody::HeartbeatResponse { .. }));
    assert_eq!(outcome(&c, 1, r), None, "no quorum round yet");
    // ...and one follower's echo (with the leader's own) is a quorum.
    c.advance(30 * MS);
    c.stabilize_dropping(|m| m.from == n(3));
    assert!(matches!(outcome(&c, 1, r), Some(Ok(_))));
}

#[test]
fn a_new_leader_serves_no_read_before_its_first_commit() {
    let mut c = Cluster::new(3, 3);
    c.now = c.now + Duration::from_secs(1);
    c.tick_node(n(1));
    // Elected, but no append is answered: its no-op does not commit.
    c.stabilize_dropping(|m| matches!(m.body, MessageBody::AppendResponse(_)));
    assert_eq!(c.node(1).role(), Role::Leader);
    let noop = c.node(1).log().last_index();
    assert!(c.node(1).log().committed() < noop);
    let r = read(&mut c, 1, ReadPolicy::ReadIndex);
    let lease = read(&mut c, 1, ReadPolicy::Lease);
    // Heartbeat rounds are acknowledged meanwhile: they must not do.
    for _ in 0..3 {
        c.advance(30 * MS);
        c.stabilize_dropping(|m| matches!(m.body, MessageBody::AppendResponse(_)));
    }
    assert_eq!(outcome(&c, 1, r), None, "queued until the first commit");
    assert_eq!(outcome(&c, 1, lease), None, "no lease before it either");
    assert_eq!(
        c.node(1).lease_read_until(),
        None,
        "nor a lease for a driver to publish"
    );
    c.advance(30 * MS);
    c.stabilize();
    assert_eq!(c.node(1).log().committed(), noop);
    assert!(
        c.node(1).lease_read_until().is_some(),
        "a lease once it did"
    );
    assert_eq!(outcome(&c, 1, r), Some(Ok(noop)));
    assert_eq!(outcome(&c, 1, lease), Some(Ok(noop)));
}

#[test]
fn a_lease_read_needs_no_round_trip_and_lasts_from_the_send_time() {
    let mut c = led_by_1(4);
    // A round sent at t0 and acknowledged 100 ms later.
    c.advance(30 * MS);
    let sent_at = c.now;
    c.now = c.now + 100 * MS;
    c.stabilize();
    assert!(c.node(1).lease_valid());
    let before = heartbeats_sent(&c);
    let r = read(&mut c, 1, ReadPolicy::Lease);
    assert!(matches!(outcome(&c, 1, r), Some(Ok(_))), "served at once");
    assert_eq!(heartbeats_sent(&c), before, "no round trip");
    // The lease ends at send time + election_timeout_min - max_clock_drift
    // (150 - 20 ms), however late the acknowledgements came.
    c.isolate(n(2));
    c.isolate(n(3));
    c.now = sent_at + 129 * MS;
    assert!(c.node(1).lease_valid() || c.node(1).role() != Role::Leader);
    c.call(n(1), |r, now| r.handle_tick(now));
    c.now = sent_at + 131 * MS;
    let late = read(&mut c, 1, ReadPolicy::Lease);
    assert!(!c.node(1).lease_valid(), "lease expired");
    assert_eq!(outcome(&c, 1, late), None, "falls back to a round");
}

#[test]
fn stepping_down_ends_the_lease_at_once() {
    let mut c = led_by_1(5);
    c.advance(30 * MS);
    c.stabilize();
    assert!(c.node(1).lease_valid());
    let term = c.node(1).term();
    // A higher term (a heartbeat from a leader of the next term) deposes it.
    let from_n2 = Message {
        from: n(2),
        to: n(1),
        term: term.next().unwrap(),
        body: MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(0),
            round: 1,
        }),
    };
    let _ = c.call(n(1), |r, now| r.handle_message(now, from_n2));
    assert_eq!(c.node(1).role(), Role::Follower);
    assert!(!c.node(1).lease_valid());
    let r = read(&mut c, 1, ReadPolicy::Lease);
    assert_eq!(outcome(&c, 1, r), None, "asks the new leader instead");
    assert_eq!(c.in_flight(1, 2, "read_index").len(), 1);
}

#[test]
fn a_leadership_transfer_ends_the_lease_at_once() {
    let mut c = led_by_1(6);
    c.advance(30 * MS);
    c.stabilize();
    assert!(c.node(1).lease_valid());
    // Hold the TimeoutNow: the leader still leads, but its target may
    // campaign past every follower's lease at any moment.
    c.call(n(1), |r, now| r.transfer_leadership(now, n(3)))
        .expect("transfer starts");
    assert_eq!(c.node(1).role(), Role::Leader);
    assert!(!c.node(1).lease_valid(), "lease ends with the transfer");
    let before = heartbeats_sent(&c);
    let r = read(&mut c, 1, ReadPolicy::Lease);
    assert_eq!(outcome(&c, 1, r), None, "not served from the lease");
    assert_eq!(heartbeats_sent(&c) - before, 2, "a round instead");
}

#[test]
fn a_leader_read_fails_when_the_leader_steps_down() {
    let mut c = led_by_1(7);
    let r = read(&mut c, 1, ReadPolicy::ReadIndex);
    c.drop_where(|_| true);
    let term = c.node(1).term();
    let depose = Message {
        from: n(3),
        to: n(1),
        term: term.next().unwrap(),
        body: MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(0),
            round: 1,
        }),
    };
    let _ = c.call(n(1), |r, now| r.handle_message(now, depose));
    assert!(matches!(
        outcome(&c, 1, r),
        Some(Err(ReadFailure::LeadershipLost { .. }))
    ));
}

#[test]
fn a_follower_read_waits_for_its_own_apply() {
    let mut c = led_by_1(8);
    let to_2 = |m: &Message| m.to == n(2) && matches!(m.body, MessageBody::AppendRequest(_));
    // Writes commit on n1 and n3; n2 sees none of them.
    for i in 0..3 {
        c.propose(n(1), &format!("w{i}")).expect("leader");
        c.stabilize_dropping(to_2);
    }
    let committed = c.node(1).log().committed();
    assert!(c.node(2).log().applied() < committed);
    let r = read(&mut c, 2, ReadPolicy::ReadIndex);
    c.stabilize_dropping(to_2);
    // The leader answered with its commit index; n2 has not applied it.
    assert_eq!(outcome(&c, 2, r), None, "waits for its apply");
    c.advance(30 * MS);
    c.stabilize();
    let (_, result, applied) = c.test_node(2).reads[0].clone();
    assert_eq!(result, Ok(committed));
    assert!(applied as u64 >= committed.0, "served only after applying");
}

#[test]
fn a_follower_read_fails_on_a_leader_change() {
    let mut c = led_by_1(9);
    let r = read(&mut c, 2, ReadPolicy::ReadIndex);
    assert_eq!(c.in_flight(2, 1, "read_index").len(), 1);
    // Before n1 answers, n2 hears from n3 as leader of the next term.
    let term = c.node(2).term();
    let new_leader = Message {
        from: n(3),
        to: n(2),
        term: term.next().unwrap(),
        body: MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(0),
            round: 1,
        }),
    };
    let _ = c.call(n(2), |r, now| r.handle_message(now, new_leader));
    assert_eq!(c.node(2).leader(), Some(n(3)));
    assert!(matches!(
        outcome(&c, 2, r),
        Some(Err(ReadFailure::LeadershipLost { .. }))
    ));
    // The old leader's late answer serves nothing.
    c.stabilize();
    let node = c.test_node(2);
    assert_eq!(node.reads.iter().filter(|(id, _, _)| *id == r).count(), 1);
}

#[test]
fn a_follower_read_times_out_without_an_answer() {
    let mut c = led_by_1(10);
    let r = read(&mut c, 2, ReadPolicy::ReadIndex);
    c.drop_where(|m| matches!(m.body, MessageBody::ReadIndexRequest(_)));
    c.now = c.now + 300 * MS;
    c.tick_node(n(2));
    assert_eq!(outcome(&c, 2, r), Some(Err(ReadFailure::Timeout)));
}

#[test]
fn a_log_read_goes_through_the_log_on_the_leader_only() {
    let mut c = led_by_1(11);
    let last = c.node(1).log().last_index();
    let r = read(&mut c, 1, ReadPolicy::Log);
    assert_eq!(c.node(1).log().last_index(), last.next(), "a no-op entry");
    c.stabilize();
    assert_eq!(outcome(&c, 1, r), Some(Ok(last.next())));
    let refused = c.call(n(2), |r, now| r.read(now, ReadPolicy::Log));
    assert!(refused.is_err());
}

#[test]
fn a_group_of_one_confirms_its_own_rounds() {
    let mut c = Cluster::new(1, 13);
    c.make_leader(1);
    // Regular heartbeat rounds (to no one) must not leave a round "in flight".
    c.advance(30 * MS);
    c.advance(30 * MS);
    for policy in [ReadPolicy::ReadIndex, ReadPolicy::Lease, ReadPolicy::Log] {
        let r = read(&mut c, 1, policy);
        c.stabilize();
        assert!(matches!(outcome(&c, 1, r), Some(Ok(_))), "{policy:?}");
    }
}

#[test]
fn a_stranger_gets_no_read_index() {
    let mut c = led_by_1(12);
    let ask = Message {
        from: NodeId(9),
        to: n(1),
        term: c.node(1).term(),
        body: MessageBody::ReadIndexRequest(oar::core::ReadIndexRequest {
            request: 1,
            lease: false,
        }),
    };
    let result = c.call(n(1), |r, now| r.handle_message(now, ask));
    assert!(matches!(
        result,
        Err(oar::core::InputError::UnknownPeer { .. })
    ));
    assert!(c.network.is_empty(), "unanswered");
}

#[test]
fn a_learner_read_asks_the_leader_and_waits_for_its_own_apply() {
    let mut c = led_by_1(14);
    let make = |id| RaftOptions {
        max_clock_drift: 20 * MS,
        ..options(id, 14)
    };
    c.add_node(n(4), make(n(4)));
    c.call(n(1), |r, now| r.add_learner(now, n(4)))
        .expect("add learner");
    c.stabilize();
    assert!(c.node(1).membership().learners.contains(&n(4)));
    let to_4 = |m: &Message| m.to == n(4) && matches!(m.body, MessageBody::AppendRequest(_));
    // Writes commit on the voters; the learner sees none of them, so its
    // own commit index is stale.
    for i in 0..3 {
        c.propose(n(1), &format!("w{i}")).expect("leader");
        c.stabilize_dropping(to_4);
    }
    let committed = c.node(1).log().committed();
    assert!(c.node(4).log().committed() < committed);
    let r = read(&mut c, 4, ReadPolicy::ReadIndex);
    assert_eq!(c.in_flight(4, 1, "read_index").len(), 1, "asks the leader");
    c.stabilize_dropping(to_4);
    // The leader confirmed a round with its voters and answered with its
    // commit index; the learner has not applied it yet.
    assert_eq!(outcome(&c, 4, r), None, "waits for its apply");
    c.advance(30 * MS);
    c.stabilize();
    let (_, result, applied) = c.test_node(4).reads[0].clone();
    assert_eq!(result, Ok(committed), "the leader's read index");
    assert!(applied as u64 >= committed.0, "served only after applying");
}
