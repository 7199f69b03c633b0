//! New entries leave the core in one shared batch: the leader's disk write
//! and its appends to every peer share one allocation, and a follower
//! writes and applies the very batch its leader sent.

mod harness;

use bytes::Bytes;
use harness::Cluster;
use oar::core::{Action, EntryBatch, MessageBody, NodeId, RaftNode};

/// Every action `raft` has pending.
fn drain(raft: &mut RaftNode) -> Vec<Action> {
    std::iter::from_fn(|| raft.poll_action()).collect()
}

fn persisted(actions: &[Action]) -> Vec<&EntryBatch> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PersistEntries { entries } => Some(entries),
            _ => None,
        })
        .collect()
}

fn applied(actions: &[Action]) -> Vec<&EntryBatch> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply { entries } => Some(entries),
            _ => None,
        })
        .collect()
}

fn appends(actions: &[Action]) -> Vec<(NodeId, &EntryBatch)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => match &m.body {
                MessageBody::AppendRequest(r) if !r.entries.is_empty() => Some((m.to, &r.entries)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn a_leaders_disk_write_and_appends_share_one_batch() {
    let mut c = Cluster::new(3, 7);
    let leader = c.elect();
    c.stabilize();
    let now = c.now;
    let raft = &mut c.nodes.get_mut(&leader).unwrap().raft;
    for command in ["a", "b", "c"] {
        raft.propose(now, Bytes::from(command)).expect("leader");
    }
    let actions = drain(raft);
    let disk = persisted(&actions);
    assert_eq!(disk.len(), 1, "one write: {actions:?}");
    assert_eq!(disk[0].len(), 3);
    let sent = appends(&actions);
    assert_eq!(sent.len(), 2, "one append to each peer: {actions:?}");
    for (peer, entries) in sent {
        assert_eq!(*entries, *disk[0], "to {peer}");
        assert!(
            entries.shares_with(disk[0]),
            "the append to {peer} copied the entries"
        );
    }
}

#[test]
fn a_follower_writes_and_applies_the_batch_its_leader_sent() {
    let mut c = Cluster::new(3, 7);
    let leader = c.elect();
    c.stabilize();
    let now = c.now;
    let raft = &mut c.nodes.get_mut(&leader).unwrap().raft;
    raft.propose(now, Bytes::from("x")).expect("leader");
    raft.propose(now, Bytes::from("y")).expect("leader");
    let actions = drain(raft);
    let (follower, sent) = appends(&actions)[0];
    let sent = sent.clone();
    let message = actions
        .iter()
        .find_map(|a| match a {
            Action::Send(m) if m.to == follower => Some(m.clone()),
            _ => None,
        })
        .expect("an append");
    let raft = &mut c.nodes.get_mut(&follower).unwrap().raft;
    raft.handle_message(now, message).expect("in order");
    let actions = drain(raft);
    let disk = persisted(&actions);
    assert_eq!(disk.len(), 1, "{actions:?}");
    assert!(disk[0].shares_with(&sent), "the follower copied the batch");
    let last = disk[0].last().expect("entries").id;
    raft.handle_entries_persisted(now, last).expect("durable");
    drain(raft);
    // The leader's commit arrives (a heartbeat carries it as an empty
    // append would); the apply shares the batch too.
    let commit = oar::core::Message {
        from: leader,
        to: follower,
        term: c.nodes[&leader].raft.term(),
        body: MessageBody::Heartbeat(oar::core::Heartbeat {
            leader_commit: last.index,
            round: 0,
        }),
    };
    let raft = &mut c.nodes.get_mut(&follower).unwrap().raft;
    raft.handle_message(now, commit).expect("in order");
    let actions = drain(raft);
    let apply = applied(&actions);
    assert_eq!(apply.len(), 1, "{actions:?}");
    assert_eq!(apply[0].len(), 2);
    assert!(apply[0].shares_with(&sent), "the follower's apply copied");
}
