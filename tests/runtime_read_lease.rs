//! Lease reads served without the group task (`runtime/read_lease.rs`)
//! never outlive the leadership they rest on: a leader that started a
//! transfer, or stepped down, serves no lease read from its published
//! lease, even well within the lease's time. Each test leaves the old
//! leader a lease of about two seconds and a state behind the new
//! leader's acknowledged write, so a lease left published is a stale read
//! every time, not by timing luck.

mod runtime;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oar::core::{NodeId, RaftOptions};
use oar::runtime::{GroupId, GroupOptions, MemStorage, Node, ReadPolicy};
use runtime::held::{Gate, Held};
use runtime::*;

/// A lease of about two seconds (election timeout 2 s, drift bound 50 ms),
/// refreshed every 30 ms: long enough for a transfer and a write to finish
/// well inside it.
fn long_lease(id: NodeId, group: GroupId) -> RaftOptions {
    RaftOptions {
        election_timeout_min: Duration::from_secs(2),
        election_timeout_max: Duration::from_secs(3),
        max_clock_drift: Duration::from_millis(50),
        ..fast_raft(id, group)
    }
}

/// Three members of `group` with long leases, each with its record and
/// the gate its state machine holds on (all open).
async fn start(group: GroupId) -> (Vec<oar::runtime::NodeManager>, Vec<Member>, Vec<Gate>) {
    let servers = servers(3).await;
    let peers = peers_of(&servers);
    let (mut members, mut gates) = (Vec::new(), Vec::new());
    for (i, server) in servers.iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let mut options = GroupOptions::new(group, id, peers.clone());
        options.raft = long_lease(id, group);
        let record = Arc::new(Mutex::new(Record::default()));
        let gate: Gate = Arc::new((Mutex::new(false), Condvar::new()));
        let machine = Held {
            inner: Recorder(record.clone()),
            gate: gate.clone(),
        };
        let store = Store::Mem(MemStorage::new());
        let node = server
            .add_group(options, store.open(), Box::new(machine))
            .unwrap();
        members.push(Member {
            server: server.clone(),
            node,
            store,
            record,
        });
        gates.push(gate);
    }
    (servers, members, gates)
}

/// The leader's position, once every member applied a first write and a
/// lease read on the leader succeeded (its lease is up).
async fn settle(members: &[Member]) -> usize {
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    nodes[leader]
        .apply(Bytes::from_static(b"set k 0"))
        .await
        .expect("first write");
    let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
    wait_applied(&records, 1).await;
    nodes[leader]
        .read_barrier(ReadPolicy::Lease)
        .await
        .expect("a lease read on a settled leader");
    leader
}

/// Waits until `node` knows `leader` leads.
async fn wait_led_by(node: &Node, leader: NodeId) {
    wait_until(|| node.leader() == Some(leader)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_started_a_transfer_serves_no_lease_read() {
    let (servers, members, _) = start(GroupId(1)).await;
    let old = settle(&members).await;
    let target = (old + 1) % 3;
    let old_node = &members[old].node;
    // From now on nothing reaches the old leader (its peers send its
    // messages nowhere): it never hears of the new term, and its lease
    // holds on its own clock for about two seconds more.
    let nowhere = "127.0.0.1:1".parse().unwrap();
    for (i, member) in members.iter().enumerate() {
        if i != old {
            member
                .node
                .set_peer_address(old_node.id(), nowhere)
                .await
                .unwrap();
        }
    }
    old_node
        .transfer_leadership(members[target].node.id())
        .await
        .expect("the transfer starts");
    let new_leader = members[target].node.id();
    for (i, member) in members.iter().enumerate() {
        if i != old {
            wait_led_by(&member.node, new_leader).await;
        }
    }
    members[target]
        .node
        .apply(Bytes::from_static(b"set k 1"))
        .await
        .expect("the new leader's write is acknowledged");

    let read = tokio::time::timeout(
        Duration::from_secs(10),
        old_node.read_barrier(ReadPolicy::Lease),
    )
    .await
    .expect("the read resolves");
    let seen = members[old].record.lock().unwrap().map.get("k").cloned();
    assert!(
        read.is_err() || seen.as_deref() == Some("1"),
        "a lease read on the old leader after its transfer started: {read:?}, saw k = {seen:?}"
    );
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stepped_down_serves_no_lease_read() {
    let (servers, members, gates) = start(GroupId(2)).await;
    let old = settle(&members).await;
    let target = (old + 1) % 3;
    let old_node = &members[old].node;
    let new_leader = members[target].node.id();
    // The old leader's state machine will not apply the next write until
    // the read below was asked; the others' apply it at once.
    *gates[old].0.lock().unwrap() = true;
    old_node
        .transfer_leadership(new_leader)
        .await
        .expect("the transfer starts");
    for member in &members {
        wait_led_by(&member.node, new_leader).await;
    }
    members[target]
        .node
        .apply(Bytes::from_static(b"set held 1"))
        .await
        .expect("the new leader's write is acknowledged");

    let read = tokio::spawn({
        let node = old_node.clone();
        let record = members[old].record.clone();
        async move {
            let read = node.read_barrier(ReadPolicy::Lease).await;
            let seen = record.lock().unwrap().map.get("held").cloned();
            (read, seen)
        }
    });
    // Room for a read served from a stale lease to show itself; a correct
    // runtime passes however long or short this is.
    tokio::time::sleep(Duration::from_millis(300)).await;
    *gates[old].0.lock().unwrap() = false;
    gates[old].1.notify_all();
    let (read, seen) = read.await.unwrap();
    assert!(
        read.is_err() || seen.as_deref() == Some("1"),
        "a lease read on the old leader after it stepped down: {read:?}, saw held = {seen:?}"
    );
    for server in &servers {
        server.shutdown().await;
    }
}

/// A write the old leader acknowledged, which the new leader committed but
/// has not applied: the new leader's lease read (served from its published
/// lease: it asks long after its lease is up) resolves only after that
/// apply, and sees the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_read_waits_for_the_apply_of_an_acknowledged_write() {
    let (servers, members, gates) = start(GroupId(3)).await;
    let old = settle(&members).await;
    let next = (old + 1) % 3;
    let next_node = &members[next].node;
    *gates[next].0.lock().unwrap() = true;
    let written = members[old]
        .node
        .apply(Bytes::from_static(b"set held 1"))
        .await
        .expect("the write is acknowledged");
    // The next leader has the write committed, and cannot apply it.
    for _ in 0..500 {
        if next_node.status().await.unwrap().committed >= written.index {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    members[old]
        .node
        .transfer_leadership(next_node.id())
        .await
        .expect("the transfer starts");
    wait_led_by(next_node, next_node.id()).await;
    // Its first commit, then rounds every 30 ms: its lease is up well
    // before this sleep ends (a correct runtime passes without it).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let read = tokio::spawn({
        let node = next_node.clone();
        let record = members[next].record.clone();
        async move {
            let read = node.read_barrier(ReadPolicy::Lease).await;
            let seen = record.lock().unwrap().map.get("held").cloned();
            (read, seen)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    *gates[next].0.lock().unwrap() = false;
    gates[next].1.notify_all();
    let (read, seen) = read.await.unwrap();
    assert!(read.is_ok(), "the new leader serves the read: {read:?}");
    assert_eq!(
        seen.as_deref(),
        Some("1"),
        "a lease read on the new leader resolved before it applied the acknowledged write"
    );
    for server in &servers {
        server.shutdown().await;
    }
}
