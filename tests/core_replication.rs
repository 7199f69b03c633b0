//! Replication: Figure 8, overwritten tails, fast backtracking, durable-only
//! acknowledgements, pipelining, batching and flow control.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use harness::{Cluster, MS};
use oar::core::{
    AppendResponse, Entry, EntryPayload, HardState, InitialState, LogId, LogIndex, Membership,
    MessageBody, NodeId, ProposalLost, RaftOptions, Role, Term,
};

fn entries(spec: &[(u64, u64)]) -> Vec<Entry> {
    // (term, count) runs, indexes from 1.
    let mut out = Vec::new();
    for &(term, count) in spec {
        for _ in 0..count {
            let index = out.len() as u64 + 1;
            let data = Bytes::from(format!("t{term}i{index}"));
            out.push(Entry {
                id: LogId::new(term, index),
                payload: EntryPayload::Command(data),
            });
        }
    }
    out
}

fn state(term: u64, voted_for: Option<u64>, log: Vec<Entry>, n: u64) -> InitialState {
    InitialState {
        hard_state: HardState {
            term: Term(term),
            voted_for: voted_for.map(NodeId),
        },
        membership: Membership::with_voters(harness::ids(n)),
        snapshot: None,
        last_purged: LogId::default(),
        entries: log,
        applied: None,
    }
}

fn campaign_alone(c: &mut Cluster, id: u64) {
    c.now = c.now + Duration::from_secs(1);
    c.tick_node(NodeId(id));
}

/// Raft Figure 8: a leader must not commit an entry of an earlier term by
/// counting replicas, or a later leader may overwrite a "committed" entry.
#[test]
fn figure_8_old_term_entry_on_a_majority_is_not_committed() {
    let n = 5;
    let mut states = BTreeMap::new();
    // S1 led term 2 and wrote (2,2); S5 led term 3 and wrote (3,2) alone.
    states.insert(NodeId(1), state(3, None, entries(&[(1, 1), (2, 1)]), n));
    for id in 2..=4 {
        states.insert(NodeId(id), state(3, Some(5), entries(&[(1, 1)]), n));
    }
    states.insert(NodeId(5), state(3, Some(5), entries(&[(1, 1), (3, 1)]), n));
    let mut c = Cluster::from_states(states, |id| RaftOptions {
        append_entries_max: 1,
        ..harness::options(id, 8)
    });
    // (c) S1 is elected in term 4 by S1..S4 and copies (2,2) to S2 and S3,
    // but its own no-op (4,3) reaches nobody.
    campaign_alone(&mut c, 1);
    loop {
        c.drain_all(); // completes disk writes
        c.drop_where(|m| {
            m.to == NodeId(4) && matches!(m.body, MessageBody::AppendRequest(_))
                || m.to == NodeId(5)
        });
        // The no-op (4,3) is lost on the way: appends arrive without it.
        for m in &mut c.network {
            if let MessageBody::AppendRequest(r) = &mut m.body {
                let kept = r.entries.iter().filter(|e| e.id.index != LogIndex(3));
                r.entries = kept.cloned().collect();
            }
        }
        if c.network.is_empty() {
            break;
        }
        let _ = c.deliver_at(0);
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), Term(4));
    for id in [2, 3] {
        assert!(
            c.node(id).log().matches(LogId::new(2, 2)),
            "S{id} holds (2,2)"
        );
    }
    // (2,2) is on S1, S2, S3 — a majority of five — but from term 2.
    assert_eq!(
        c.node(1).log().committed(),
        LogIndex(0),
        "old-term entry must not commit by counting"
    );
    // (d) S1 crashes; S5 wins term 5 with S2..S4 and overwrites (2,2).
    c.crash(NodeId(1));
    c.now = c.now + Duration::from_secs(1);
    for _ in 0..2 {
        campaign_alone(&mut c, 5);
        c.stabilize();
    }
    assert_eq!(c.node(5).role(), Role::Leader);
    c.restart(NodeId(1), Membership::with_voters(harness::ids(n)));
    c.run_until(5 * MS, Duration::from_secs(2), |_| false);
    for id in 1..=5 {
        assert!(
            c.node(id).log().matches(LogId::new(3, 2)),
            "S{id} holds S5's (3,2)"
        );
    }
    // The harness checked state-machine safety on every apply; (2,2) never applied.
    assert_eq!(c.applied_ids.get(&LogIndex(2)), Some(&LogId::new(3, 2)));
}

#[test]
fn a_deposed_leaders_uncommitted_tail_is_overwritten_and_its_proposals_fail() {
    let mut c = Cluster::new(3, 9);
    let old = c.elect();
    c.stabilize();
    c.isolate(old);
    let doomed: Vec<LogId> = (0..5)
        .map(|k| c.propose(old, &format!("doomed{k}")).unwrap())
        .collect();
    let ok = c.run_until(5 * MS, Duration::from_secs(3), |c| {
        c.leader().is_some_and(|l| l != old)
    });
    assert!(ok, "the majority elects a new leader");
    let new = c.leader().unwrap();
    let kept = c.propose(new, "kept").unwrap();
    c.stabilize();
    c.heal();
    c.run_until(5 * MS, Duration::from_secs(2), |_| false);
    assert_eq!(c.nodes[&old].raft.role(), Role::Follower);
    assert!(c.nodes[&old].raft.log().matches(kept));
    let failed: Vec<LogId> = c.nodes[&old]
        .failed_proposals
        .iter()
        .map(|e| match e {
            ProposalLost::Overwritten { proposal, .. } => *proposal,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        failed, doomed,
        "each overwritten proposal fails exactly once"
    );
    for node in c.nodes.values() {
        assert!(node.applied.iter().all(|e| !doomed.contains(&e.id)));
    }
}

/// A follower holding 500 entries of a dead leader's term: backtracking skips
/// the whole term per round trip instead of one entry.
#[test]
fn backtracking_over_a_long_divergent_log_takes_few_round_trips() {
    let n = 3;
    let mut states = BTreeMap::new();
    // Leader-to-be: got 10 entries of term 2, then led term 3 for 500.
    let leader_log = entries(&[(1, 10), (2, 10), (3, 500)]);
    states.insert(NodeId(1), state(3, Some(1), leader_log.clone(), n));
    states.insert(NodeId(2), state(3, Some(1), leader_log, n));
    // Node 3 got all 1000 entries of term 2's leader.
    states.insert(NodeId(3), state(2, None, entries(&[(1, 10), (2, 1000)]), n));
    let mut c = Cluster::from_states(states, |id| harness::options(id, 10));
    campaign_alone(&mut c, 1);
    c.stabilize_dropping(|m| m.to == NodeId(3));
    assert_eq!(c.node(1).role(), Role::Leader);
    let before = c.sent.get("append").copied().unwrap_or(0);
    let mut round_trips = 0;
    let noop = c.node(1).log().last_id();
    while !c.node(3).log().matches(noop) {
        round_trips += 1;
        assert!(round_trips < 10, "backtracking is not skipping terms");
        // One round trip: deliver what is in flight to node 3, then its answers.
        if c.network.iter().all(|m| m.to != NodeId(3)) {
            c.advance(30 * MS); // a heartbeat re-opens the probe
            c.drain_all();
        }
        while c.deliver_first(|m| m.to == NodeId(3)) {}
        while c.deliver_first(|m| m.from == NodeId(3)) {}
    }
    let appends = c.sent.get("append").copied().unwrap_or(0) - before;
    eprintln!("backtracking: {round_trips} round trips, {appends} appends");
    // Probe at 521 rejected (conflict term 2 from 11) → leader's last term-2
    // entry is 20 → append from 21 accepted.
    assert!(
        round_trips <= 3,
        "took {round_trips} round trips ({appends} appends)"
    );
    c.stabilize();
    assert_eq!(c.node(3).log().last_id(), noop);
}

#[test]
fn a_follower_acknowledges_only_what_its_disk_confirmed() {
    let mut c = Cluster::new(3, 11);
    let leader = c.elect();
    c.stabilize();
    let follower = c.nodes.keys().copied().find(|&id| id != leader).unwrap();
    c.auto_disk = false;
    let id = c.propose(leader, "x").unwrap();
    c.deliver_first(|m| m.to == follower && matches!(m.body, MessageBody::AppendRequest(_)));
    assert!(
        c.nodes[&follower].raft.log().matches(id),
        "in the follower's memory"
    );
    let acked = |c: &Cluster| {
        c.network.iter().any(|m| {
            m.from == follower
                && matches!(m.body, MessageBody::AppendResponse(AppendResponse::Success { match_index }) if match_index >= id.index)
        })
    };
    assert!(!acked(&c), "no ack before the disk confirms");
    c.complete_disk(follower, usize::MAX);
    assert!(acked(&c), "ack once durable");
}

#[test]
fn the_leader_counts_itself_only_once_its_own_write_is_durable() {
    let mut c = Cluster::new(3, 12);
    let leader = c.elect();
    c.stabilize();
    let followers: Vec<NodeId> = c.nodes.keys().copied().filter(|&id| id != leader).collect();
    c.auto_disk = false;
    let id = c.propose(leader, "x").unwrap();
    // One follower persists and acks; the leader's own disk lags.
    c.deliver_first(|m| m.to == followers[0]);
    c.complete_disk(followers[0], usize::MAX);
    c.deliver_first(|m| m.from == followers[0]);
    assert!(
        c.nodes[&leader].raft.log().committed() < id.index,
        "1 durable copy of 3 is no quorum"
    );
    c.complete_disk(leader, usize::MAX);
    assert_eq!(
        c.nodes[&leader].raft.log().committed(),
        id.index,
        "leader + follower durable"
    );
}

#[test]
fn many_proposals_share_one_append_per_peer_and_one_disk_write() {
    let mut c = Cluster::new(3, 13);
    let leader = c.elect();
    c.stabilize();
    let now = c.now;
    let raft = &mut c.nodes.get_mut(&leader).unwrap().raft;
    for k in 0..256 {
        raft.propose(now, Bytes::from(format!("{k}"))).unwrap();
    }
    let mut appends = Vec::new();
    let mut writes = 0;
    while let Some(action) = raft.poll_action() {
        match action {
            oar::core::Action::Send(m) => appends.push(m),
            oar::core::Action::PersistEntries { entries } => {
                writes += 1;
                assert_eq!(entries.len(), 256);
            }
            _ => {}
        }
    }
    assert_eq!(writes, 1);
    assert_eq!(appends.len(), 2, "one append per follower");
    for m in appends {
        let MessageBody::AppendRequest(req) = m.body else {
            panic!("{m:?}")
        };
        assert_eq!(req.entries.len(), 256);
    }
}

#[test]
fn pipelining_keeps_many_appends_in_flight_up_to_the_window() {
    let window = 8;
    let mut c = Cluster::with_options(3, |id| RaftOptions {
        inflight_msgs_max: window,
        ..harness::options(id, 14)
    });
    let leader = c.elect();
    c.stabilize();
    let follower = c.nodes.keys().copied().find(|&id| id != leader).unwrap();
    // Proposals polled one at a time: each may go out in its own append
    // without waiting for the previous answer, until the window is full.
    for k in 0..20 {
        c.propose(leader, &format!("p{k}")).unwrap();
    }
    let in_flight = c.in_flight(leader.0, follower.0, "append").len();
    assert_eq!(
        in_flight, window,
        "pipelined up to the window, and no further"
    );
    // Acknowledgements open the window again.
    c.stabilize();
    let last = c.nodes[&leader].raft.log().last_id();
    assert!(c.nodes[&follower].raft.log().matches(last));
}

#[test]
fn bytes_in_flight_are_bounded_too() {
    let mut c = Cluster::with_options(3, |id| RaftOptions {
        inflight_bytes_max: 4096,
        append_bytes_max: 1024,
        ..harness::options(id, 15)
    });
    let leader = c.elect();
    c.stabilize();
    let follower = c.nodes.keys().copied().find(|&id| id != leader).unwrap();
    let big = "x".repeat(1000);
    for _ in 0..40 {
        c.propose(leader, &big).unwrap();
    }
    let bytes: usize = c
        .in_flight(leader.0, follower.0, "append")
        .iter()
        .map(|m| match &m.body {
            MessageBody::AppendRequest(r) => r
                .entries
                .iter()
                .map(|e| e.size_bytes() as usize)
                .sum::<usize>(),
            _ => 0,
        })
        .sum();
    assert!(
        bytes <= 4096 + 1024,
        "bytes in flight {bytes} exceed the window"
    );
    assert!(bytes >= 3000, "the window is used: {bytes}");
}

#[test]
fn the_same_inputs_give_byte_identical_actions() {
    let run = || {
        let mut c = Cluster::new(5, 16);
        c.record_trace = true;
        let leader = c.elect();
        for k in 0..50 {
            c.propose(leader, &format!("cmd{k}")).unwrap();
            if k % 7 == 0 {
                c.advance(3 * MS);
            }
        }
        c.isolate(leader);
        c.run_until(5 * MS, Duration::from_secs(2), |_| false);
        c.heal();
        c.run_until(5 * MS, Duration::from_secs(1), |_| false);
        c.trace.join("\n")
    };
    let (a, b) = (run(), run());
    assert!(a.len() > 10_000, "a substantial trace");
    assert_eq!(a, b);
}
