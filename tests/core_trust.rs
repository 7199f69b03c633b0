//! The core refuses what no honest peer sends (`src/core/trust.rs`): terms
//! above the ceiling, and leader messages and responses from nodes outside
//! its configuration — and a refused message changes nothing durable. The
//! refusals keep the group live: a lagging member still catches up with a
//! leader it does not know yet, a joining node accepts its first leader.

mod harness;

use std::time::Duration;

use bytes::Bytes;
use harness::{Cluster, MS, n};
use oar::core::{
    AppendRequest, AppendResponse, ConfChangeError, Entry, EntryPayload, HardState, Heartbeat,
    InitialState, InputError, LogId, LogIndex, Membership, Message, MessageBody, NodeId,
    RejectHint, Role, SnapshotInfo, Term, VoteRequest,
};

const STRANGER: NodeId = NodeId(42);

/// Three voters led by 1, settled.
fn led_by_1(seed: u64) -> Cluster {
    let mut c = Cluster::new(3, seed);
    c.make_leader(1);
    c
}

fn command(term: u64, index: u64, data: &'static str) -> Entry {
    Entry {
        id: LogId::new(term, index),
        payload: EntryPayload::Command(Bytes::from_static(data.as_bytes())),
    }
}

/// What a refused message must leave alone on node `id`.
#[derive(Debug, PartialEq)]
struct Observed {
    hard_state: HardState,
    durable: HardState,
    role: Role,
    leader: Option<NodeId>,
    last: LogId,
    committed: LogIndex,
    applied: usize,
    deadline: oar::core::Instant,
}

fn observe(c: &Cluster, id: NodeId) -> Observed {
    let node = &c.nodes[&id];
    Observed {
        hard_state: node.raft.status().hard_state,
        durable: node.durable_hard_state,
        role: node.raft.role(),
        leader: node.raft.leader(),
        last: node.raft.log().last_id(),
        committed: node.raft.log().committed(),
        applied: node.applied.len(),
        deadline: node.raft.poll_timeout(),
    }
}

/// The group still elects a new leader and commits through it.
fn still_elects_and_commits(c: &mut Cluster) {
    let old = c.leader().expect("a leader");
    let before = c.node(old.0).term();
    c.crash(old);
    let ok = c.run_until(5 * MS, Duration::from_secs(10), |c| {
        c.leader().is_some_and(|l| l != old)
    });
    assert!(ok, "no new leader after the refused messages");
    let leader = c.leader().unwrap();
    assert!(c.node(leader.0).term() > before);
    let id = c.propose(leader, "after").expect("leader accepts");
    let ok = c.run_until(5 * MS, Duration::from_secs(5), |c| {
        c.nodes
            .values()
            .filter(|t| t.up)
            .all(|t| t.applied.last().is_some_and(|e| e.id == id))
    });
    assert!(ok, "the new leader did not commit");
}

/// Finding 1: a heartbeat, an append and a vote at u64::MAX or just above
/// the ceiling, from a member or a stranger, to a leader or a follower, are
/// refused unanswered and change nothing; the group stays live.
#[test]
fn terms_above_the_ceiling_are_refused_and_change_nothing() {
    let mut c = led_by_1(1);
    let last = c.node(1).log().last_id();
    for term in [Term(u64::MAX), Term(Term::MAX.0 + 1)] {
        for (to, member) in [(n(2), n(1)), (n(1), n(3))] {
            for from in [member, STRANGER] {
                let bodies = [
                    MessageBody::Heartbeat(Heartbeat {
                        leader_commit: last.index,
                        round: 0,
                    }),
                    MessageBody::AppendRequest(AppendRequest {
                        prev_log_id: last,
                        entries: vec![command(term.0, last.index.0 + 1, "evil")].into(),
                        leader_commit: last.index.next(),
                    }),
                    MessageBody::VoteRequest(VoteRequest {
                        pre_vote: false,
                        last_log_id: LogId::new(term.0, 1_000),
                        leadership_transfer: true,
                    }),
                ];
                for body in bodies {
                    let before = observe(&c, to);
                    let what = format!("{from} -> {to} at {term}: {}", harness::kind(&body));
                    let m = Message {
                        from,
                        to,
                        term,
                        body,
                    };
                    assert_eq!(
                        c.deliver_now(m),
                        Err(InputError::TermAboveCeiling { term }),
                        "{what}"
                    );
                    assert_eq!(observe(&c, to), before, "{what}: state changed");
                    assert!(c.network.is_empty(), "{what}: answered");
                }
            }
        }
    }
    still_elects_and_commits(&mut c);
}

/// A node whose term is at the ceiling neither campaigns nor wraps, and
/// `reset_peers` (which needs a new term) is refused with a typed error.
#[test]
fn a_node_at_the_ceiling_does_not_campaign() {
    let state = InitialState {
        hard_state: HardState {
            term: Term::MAX,
            voted_for: None,
        },
        membership: Membership::with_voters([n(1)]),
        ..InitialState::default()
    };
    let mut c = Cluster::from_states([(n(1), state)].into(), |id| harness::options(id, 2));
    c.run_until(10 * MS, Duration::from_secs(5), |_| false);
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).term(), Term::MAX);
    let reset = c.call(n(1), |r, now| {
        r.reset_peers(now, Membership::with_voters([n(1)]))
    });
    assert_eq!(
        reset,
        Err(ConfChangeError::TermAtCeiling { term: Term::MAX })
    );
    assert_eq!(c.node(1).term(), Term::MAX);
}

/// A snapshot offer whose last entry is from a later term than its message
/// is refused before the term or the log change.
#[test]
fn a_snapshot_from_beyond_the_message_term_is_refused() {
    let mut c = led_by_1(3);
    c.defer_installs = true;
    let term = c.node(2).term();
    let before = observe(&c, n(2));
    let info = SnapshotInfo {
        last_included: LogId::new(u64::MAX, 1_000),
        membership: Membership::with_voters([n(1), n(2), n(3)]).into(),
    };
    let m = Message {
        from: n(1),
        to: n(2),
        term: Term(term.0 + 1),
        body: MessageBody::InstallSnapshot(info),
    };
    assert!(matches!(
        c.deliver_now(m),
        Err(InputError::MalformedSnapshot { .. })
    ));
    assert_eq!(observe(&c, n(2)), before);
    assert!(c.pending_installs.is_empty(), "install started");
}

/// Finding 2: an append from a non-member, a term ahead and with an entry
/// it marks committed, is refused: nothing appended or applied, the term
/// not adopted, the timer not reset; the answer names only the last index,
/// at the stranger's term. The real leader keeps working.
#[test]
fn an_append_from_a_stranger_is_refused_and_applies_nothing() {
    let mut c = led_by_1(4);
    let term = c.node(2).term();
    let last = c.node(2).log().last_id();
    let before = observe(&c, n(2));
    let forged = AppendRequest {
        prev_log_id: last,
        entries: vec![command(term.0 + 1, last.index.0 + 1, "evil")].into(),
        leader_commit: last.index.next(),
    };
    let m = Message {
        from: STRANGER,
        to: n(2),
        term: Term(term.0 + 1),
        body: MessageBody::AppendRequest(forged),
    };
    assert_eq!(
        c.deliver_now(m),
        Err(InputError::UnknownPeer { from: STRANGER })
    );
    assert_eq!(
        observe(&c, n(2)),
        before,
        "the stranger's append changed state"
    );
    let refusal = Message {
        from: n(2),
        to: STRANGER,
        term: Term(term.0 + 1),
        body: MessageBody::AppendResponse(AppendResponse::Reject {
            rejected: last.index,
            hint: RejectHint::refusal(last.index),
        }),
    };
    assert_eq!(c.network, vec![refusal]);
    c.drop_where(|m| m.to == STRANGER);
    let id = c.propose(n(1), "real").expect("leader accepts");
    c.stabilize();
    for node in c.nodes.values() {
        assert_eq!(node.applied.last().map(|e| e.id), Some(id));
        assert!(
            !node
                .applied
                .iter()
                .any(|e| e.payload == command(0, 0, "evil").payload),
            "the stranger's entry was applied"
        );
    }
}

/// Heartbeats, snapshot offers and TimeoutNow from a stranger are refused
/// too; none records a leader, adopts a term or starts a campaign.
#[test]
fn other_leader_messages_from_a_stranger_are_refused() {
    let mut c = led_by_1(5);
    c.defer_installs = true;
    let term = c.node(2).term();
    let ahead = Term(term.0 + 1);
    let bodies = [
        MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(1_000),
            round: 0,
        }),
        MessageBody::InstallSnapshot(SnapshotInfo {
            last_included: LogId::new(ahead.0, 1_000),
            membership: Membership::with_voters([n(1), n(2), n(3)]).into(),
        }),
        MessageBody::TimeoutNow,
    ];
    for body in bodies {
        let what = harness::kind(&body);
        let before = observe(&c, n(2));
        let m = Message {
            from: STRANGER,
            to: n(2),
            term: ahead,
            body,
        };
        assert_eq!(
            c.deliver_now(m),
            Err(InputError::UnknownPeer { from: STRANGER }),
            "{what}"
        );
        assert_eq!(observe(&c, n(2)), before, "{what}: state changed");
        assert!(c.pending_installs.is_empty(), "{what}: install started");
        assert!(
            c.network
                .iter()
                .all(|m| m.to == STRANGER && m.term == ahead),
            "{what}: {:?}",
            c.network
        );
        c.drop_where(|m| m.to == STRANGER);
    }
}

/// A response from a stranger at a later term neither deposes the leader
/// nor moves its term.
#[test]
fn a_strangers_response_does_not_depose_the_leader() {
    let mut c = led_by_1(6);
    let term = c.node(1).term();
    let bodies = [
        MessageBody::HeartbeatResponse { round: 0 },
        MessageBody::AppendResponse(AppendResponse::Success {
            match_index: LogIndex(1),
        }),
    ];
    for body in bodies {
        let before = observe(&c, n(1));
        let m = Message {
            from: STRANGER,
            to: n(1),
            term: Term(term.0 + 5),
            body,
        };
        assert_eq!(
            c.deliver_now(m),
            Err(InputError::UnknownPeer { from: STRANGER })
        );
        assert_eq!(observe(&c, n(1)), before);
    }
}
