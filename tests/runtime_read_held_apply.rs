//! A read barrier waits for its member's apply, not only for the core's
//! confirmation: with every state machine held inside a committed write
//! (a gated `on_apply`, `may_block`), barriers asked meanwhile on the
//! leader (every policy) and on the followers (ReadIndex, Lease) resolve
//! only once the write is applied there, and each then sees it. The core
//! confirms those reads long before the gate opens (their index is
//! committed and handed out to the apply task), so a runtime that answered
//! a barrier on the core's word alone fails here every time.

mod runtime;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oar::core::NodeId;
use oar::runtime::{GroupId, GroupOptions, Node, ReadPolicy};
use runtime::held::{Gate, Held};
use runtime::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_resolves_only_once_its_member_applied_the_write() {
    let servers = servers(3).await;
    let peers = peers_of(&servers);
    let gate: Gate = Arc::new((Mutex::new(true), Condvar::new()));
    let mut nodes = Vec::new();
    let mut records = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let mut options = GroupOptions::new(GroupId(1), id, peers.clone());
        options.raft = fast_raft(id, GroupId(1));
        let record = Arc::new(Mutex::new(Record::default()));
        let machine = Held {
            inner: Recorder(record.clone()),
            gate: gate.clone(),
        };
        let storage = Box::new(oar::runtime::MemStorage::new());
        nodes.push(
            server
                .add_group(options, storage, Box::new(machine))
                .unwrap(),
        );
        records.push(record);
    }
    let members: Vec<&Node> = nodes.iter().collect();
    let leader = wait_for_leader(&members).await;

    // The write commits everywhere; no member can apply it yet.
    let before = nodes[leader].status().await.unwrap().committed;
    let write = tokio::spawn({
        let leader = nodes[leader].clone();
        async move { leader.apply(Bytes::from_static(b"set held 1")).await }
    });
    for node in &nodes {
        let node = node.clone();
        let mut committed = before;
        for _ in 0..500 {
            committed = node.status().await.unwrap().committed;
            if committed > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            committed > before,
            "member {} learned the commit",
            node.id()
        );
    }

    let mut barriers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for policy in [ReadPolicy::ReadIndex, ReadPolicy::Lease, ReadPolicy::Log] {
            if i != leader && policy == ReadPolicy::Log {
                continue;
            }
            let (node, record) = (node.clone(), records[i].clone());
            barriers.push(tokio::spawn(async move {
                node.read_barrier(policy).await.expect("barrier");
                let seen = record.lock().unwrap().map.get("held").cloned();
                (i, policy, seen)
            }));
        }
    }
    // Room for a barrier answered too early to show itself; a correct
    // runtime passes however long or short this is.
    tokio::time::sleep(Duration::from_millis(300)).await;
    *gate.0.lock().unwrap() = false;
    gate.1.notify_all();

    for barrier in barriers {
        let (member, policy, seen) = barrier.await.unwrap();
        assert_eq!(
            seen.as_deref(),
            Some("1"),
            "{policy:?} barrier on member {member} (leader {leader}) resolved before its apply"
        );
    }
    write.await.unwrap().expect("the write completes");
    for server in &servers {
        server.shutdown().await;
    }
}
