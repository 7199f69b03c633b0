//! Membership changes and leadership transfer through the node handle, over
//! real loopback TCP, while a client keeps writing: grow from 1 to 5 voters,
//! shrink to 3 (removing the leader), hand leadership over.

mod runtime;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use oar::core::{NodeId, Role};
use oar::runtime::{Error, GroupId, Node};
use runtime::*;

/// The member that currently leads, by asking each.
async fn current_leader(nodes: &[Node]) -> Node {
    for _ in 0..400 {
        for node in nodes {
            if let Ok(status) = node.status().await
                && status.role == Role::Leader
            {
                return node.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_shrink_to_three_and_transfer_while_writing() {
    let servers = servers(5).await;
    let peers = peers_of(&servers);
    let first: BTreeSet<NodeId> = [NodeId(1)].into();
    let members = start_group_with_voters(&servers, GroupId(3), &first);
    let nodes: Vec<Node> = members.iter().map(|m| m.node.clone()).collect();

    // A client writes all along, following the leader.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (nodes, stop, written) = (nodes.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let refs: Vec<&Node> = nodes.iter().collect();
                apply_anywhere(&refs, Bytes::from(format!("set w{k} {k}"))).await;
                written.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
        })
    };

    let leader = current_leader(&nodes).await;
    assert_eq!(leader.id(), NodeId(1), "the only voter leads");
    for id in 2..=5 {
        leader
            .add_peer(NodeId(id), peers[&NodeId(id)], Duration::from_secs(10))
            .await
            .expect("voter added");
    }
    let status = leader.status().await.unwrap();
    assert_eq!(status.membership.voters, (1..=5).map(NodeId).collect());
    assert!(!status.membership.is_joint());

    // A second change while one is in flight is refused, not queued.
    let (a, b) = tokio::join!(leader.remove_peer(NodeId(5)), leader.remove_peer(NodeId(5)));
    let refused = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(Error::ConfChange(_))))
        .count();
    assert_eq!(
        refused, 1,
        "exactly one of two concurrent changes runs: {a:?} {b:?}"
    );
    // Remove the leader itself: it steps down once C(new) commits.
    leader.remove_peer(NodeId(1)).await.expect("leader removed");
    let remaining: Vec<Node> = nodes[1..4].to_vec();
    let new_leader = current_leader(&remaining).await;
    let status = new_leader.status().await.unwrap();
    assert_eq!(
        status.membership.voters,
        [NodeId(2), NodeId(3), NodeId(4)].into()
    );
    assert_ne!(nodes[0].status().await.unwrap().role, Role::Leader);

    // Hand leadership to another voter. A new leader may refuse while its
    // first entry or the last change is still committing: ask again.
    let mut new_leader = new_leader;
    let mut target = NodeId(0);
    for attempt in 0.. {
        new_leader = current_leader(&remaining).await;
        target = if new_leader.id() == NodeId(2) {
            NodeId(3)
        } else {
            NodeId(2)
        };
        match new_leader.transfer_leadership(target).await {
            Ok(()) => break,
            Err(e) if attempt < 40 => {
                tracing::info!("transfer refused, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("transfer never started: {e}"),
        }
    }
    let mut moved = new_leader.id();
    for _ in 0..200 {
        moved = current_leader(&remaining).await.id();
        if moved != new_leader.id() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(moved, target, "leadership moved to the target");

    let before = written.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        written.load(Ordering::Relaxed) > before,
        "writes continued after every change"
    );

    // The remaining voters applied the same commands in the same order.
    let total = written.load(Ordering::Relaxed) as usize;
    let records: Vec<_> = members[1..4].iter().map(|m| m.record.clone()).collect();
    wait_applied(&records, total).await;
    let log = records[0].lock().unwrap().log.clone();
    for record in &records[1..] {
        assert_eq!(record.lock().unwrap().log, log);
    }
    for server in &servers {
        server.shutdown().await;
    }
}
