//! Bad input is an error value, never a panic, and changes nothing.

mod harness;

use bytes::Bytes;
use harness::Cluster;
use oar::core::{
    AppendRequest, AppendResponse, Entry, EntryPayload, HardState, InputError, LogId, LogIndex,
    Message, MessageBody, NodeId, Role, Term, VoteRequest,
};

fn leader_cluster() -> (Cluster, NodeId, NodeId) {
    let mut c = Cluster::new(3, 21);
    let leader = c.elect();
    c.stabilize();
    let follower = c.nodes.keys().copied().find(|&id| id != leader).unwrap();
    (c, leader, follower)
}

fn deliver(c: &mut Cluster, m: Message) -> Result<(), InputError> {
    c.network.push(m);
    let at = c.network.len() - 1;
    c.deliver_at(at)
}

fn noop(term: u64, index: u64) -> Entry {
    Entry {
        id: LogId::new(term, index),
        payload: EntryPayload::Noop,
    }
}

#[test]
fn a_message_from_an_unknown_peer_is_rejected() {
    let (mut c, leader, _) = leader_cluster();
    let term = c.nodes[&leader].raft.term();
    let vote = VoteRequest {
        pre_vote: false,
        last_log_id: LogId::new(99, 99),
        leadership_transfer: true,
    };
    let m = Message {
        from: NodeId(42),
        to: leader,
        term: Term(term.0 + 5),
        body: MessageBody::VoteRequest(vote),
    };
    assert_eq!(
        deliver(&mut c, m),
        Err(InputError::UnknownPeer { from: NodeId(42) })
    );
    assert_eq!(
        c.nodes[&leader].raft.term(),
        term,
        "the stranger's term was not adopted"
    );
    assert_eq!(c.nodes[&leader].raft.role(), Role::Leader);
}

#[test]
fn a_misaddressed_message_is_rejected() {
    let (mut c, leader, follower) = leader_cluster();
    let now = c.now;
    let raft = &mut c.nodes.get_mut(&follower).unwrap().raft;
    let term = raft.term();
    // Addressed to the leader, delivered to the follower.
    let m = Message {
        from: leader,
        to: leader,
        term,
        body: MessageBody::HeartbeatResponse { round: 0 },
    };
    assert!(matches!(
        raft.handle_message(now, m),
        Err(InputError::Misaddressed { .. })
    ));
    // Claiming to come from the recipient itself.
    let m = Message {
        from: follower,
        to: follower,
        term,
        body: MessageBody::HeartbeatResponse { round: 0 },
    };
    assert!(matches!(
        raft.handle_message(now, m),
        Err(InputError::Misaddressed { .. })
    ));
}

#[test]
fn a_message_from_an_old_term_is_rejected_and_answered_with_ours() {
    let (mut c, leader, follower) = leader_cluster();
    let term = c.nodes[&follower].raft.term();
    let stale = AppendRequest {
        prev_log_id: LogId::default(),
        entries: vec![].into(),
        leader_commit: LogIndex(0),
    };
    let other = c
        .nodes
        .keys()
        .copied()
        .find(|&id| id != leader && id != follower)
        .unwrap();
    let m = Message {
        from: other,
        to: follower,
        term: Term(0),
        body: MessageBody::AppendRequest(stale),
    };
    assert!(matches!(
        deliver(&mut c, m),
        Err(InputError::StaleTerm { .. })
    ));
    let answer = c.network.last().expect("stale sender told the term");
    assert_eq!((answer.to, answer.term), (other, term));
    assert_eq!(c.nodes[&follower].raft.leader(), Some(leader));
}

#[test]
fn an_acknowledgement_beyond_the_leaders_log_is_rejected() {
    let (mut c, leader, follower) = leader_cluster();
    let term = c.nodes[&leader].raft.term();
    let last = c.nodes[&leader].raft.log().last_index();
    let committed = c.nodes[&leader].raft.log().committed();
    let ack = AppendResponse::Success {
        match_index: LogIndex(1_000_000),
    };
    let m = Message {
        from: follower,
        to: leader,
        term,
        body: MessageBody::AppendResponse(ack),
    };
    let expected = InputError::IndexOutOfRange {
        index: LogIndex(1_000_000),
        last_index: last,
    };
    assert_eq!(deliver(&mut c, m), Err(expected));
    assert_eq!(c.nodes[&leader].raft.log().committed(), committed);
}

#[test]
fn malformed_append_requests_are_rejected() {
    let (mut c, leader, follower) = leader_cluster();
    let term = c.nodes[&leader].raft.term();
    let last = c.nodes[&follower].raft.log().last_id();
    let cases = [
        (vec![noop(term.0, last.index.0 + 2)], "gap after prev"),
        (
            vec![
                noop(term.0, last.index.0 + 1),
                noop(term.0, last.index.0 + 1),
            ],
            "repeated index",
        ),
        (
            vec![noop(term.0 + 1, last.index.0 + 1)],
            "entry from a later term",
        ),
        (
            vec![noop(term.0, last.index.0 + 1), noop(0, last.index.0 + 2)],
            "term goes back",
        ),
    ];
    for (entries, what) in cases {
        let req = AppendRequest {
            prev_log_id: last,
            entries: entries.into(),
            leader_commit: LogIndex(0),
        };
        let m = Message {
            from: leader,
            to: follower,
            term,
            body: MessageBody::AppendRequest(req),
        };
        assert!(
            matches!(deliver(&mut c, m), Err(InputError::MalformedAppend { .. })),
            "{what}"
        );
        assert_eq!(
            c.nodes[&follower].raft.log().last_id(),
            last,
            "{what}: log unchanged"
        );
    }
}

#[test]
fn a_disk_completion_for_truncated_or_unwritten_entries_is_rejected() {
    let (mut c, leader, _) = leader_cluster();
    let now = c.now;
    let raft = &mut c.nodes.get_mut(&leader).unwrap().raft;
    let persisted = raft.log().persisted();
    let future = LogId::new(raft.term().0, 1_000);
    assert_eq!(
        raft.handle_entries_persisted(now, future),
        Err(InputError::StaleDiskCompletion { up_to: future })
    );
    let wrong_term = LogId::new(77, 1);
    assert!(raft.handle_entries_persisted(now, wrong_term).is_err());
    // Proposed but not yet handed to the disk (no poll since): not durable.
    let id = raft.propose(now, Bytes::from_static(b"x")).unwrap();
    assert_eq!(
        raft.handle_entries_persisted(now, id),
        Err(InputError::StaleDiskCompletion { up_to: id })
    );
    assert_eq!(raft.log().persisted(), persisted);
    let future_hs = HardState {
        term: Term(1_000),
        voted_for: None,
    };
    assert_eq!(
        raft.handle_hard_state_persisted(now, future_hs),
        Err(InputError::FutureHardState { term: Term(1_000) })
    );
}

#[test]
fn a_proposal_to_a_follower_names_the_leader() {
    let (mut c, leader, follower) = leader_cluster();
    let err = c.propose(follower, "x").unwrap_err();
    assert_eq!(
        err,
        oar::core::ProposalRefused::NotLeader {
            leader_hint: Some(leader)
        }
    );
}

#[test]
fn a_second_leader_in_the_same_term_is_refused() {
    let (mut c, leader, follower) = leader_cluster();
    let term = c.nodes[&leader].raft.term();
    let last = c.nodes[&leader].raft.log().last_id();
    let req = AppendRequest {
        prev_log_id: last,
        entries: vec![].into(),
        leader_commit: LogIndex(0),
    };
    let m = Message {
        from: follower,
        to: leader,
        term,
        body: MessageBody::AppendRequest(req),
    };
    assert_eq!(
        deliver(&mut c, m),
        Err(InputError::DuplicateLeader {
            from: follower,
            term
        })
    );
    assert_eq!(c.nodes[&leader].raft.role(), Role::Leader);
}
