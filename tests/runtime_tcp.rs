//! The production runtime over real loopback TCP: elections, 10,000 writes,
//! leader failure and restart from storage, many groups on one server.

mod runtime;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use oar::core::NodeId;
use oar::runtime::{GroupId, Node};
use runtime::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_commit_ten_thousand_writes_and_agree() {
    let servers = servers(3).await;
    let group = GroupId(1);
    let dir = tempfile::tempdir().unwrap();
    let members = start_group(&servers, group, |i| {
        Store::Disk(dir.path().join(format!("n{i}")))
    });
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    // 100 concurrent clients, 100 writes each.
    let writes = (0..100).map(|client| {
        let node = nodes[leader].clone();
        async move {
            for k in 0..100 {
                let command = Bytes::from(format!("set c{client}k{k} v{k}"));
                node.apply(command).await.expect("write commits");
            }
        }
    });
    join_all(writes).await;
    let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
    wait_applied(&records, 10_000).await;
    let first = records[0].lock().unwrap().log.clone();
    assert_eq!(first.len(), 10_000);
    for record in &records[1..] {
        assert_eq!(
            record.lock().unwrap().log,
            first,
            "every replica applied the same commands in order"
        );
    }
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_catches_up_after_restart() {
    let servers = servers(3).await;
    let peers = peers_of(&servers);
    let group = GroupId(7);
    let dir = tempfile::tempdir().unwrap();
    let mut members = start_group(&servers, group, |i| {
        Store::Disk(dir.path().join(format!("n{i}")))
    });
    let nodes: Vec<Node> = members.iter().map(|m| m.node.clone()).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let old = wait_for_leader(&refs).await;
    for k in 0..100 {
        nodes[old]
            .apply(Bytes::from(format!("set a{k} {k}")))
            .await
            .unwrap();
    }
    // Kill the leader's group; the others elect a new leader and go on.
    members[old].node.shutdown().await;
    let survivors: Vec<&Node> = refs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != old)
        .map(|(_, n)| *n)
        .collect();
    let new = wait_for_leader(&survivors).await;
    assert_ne!(survivors[new].id(), nodes[old].id());
    for k in 0..100 {
        apply_anywhere(&survivors, Bytes::from(format!("set b{k} {k}"))).await;
    }
    // Restart the old leader from its storage: it catches up.
    // A fresh process would reopen the directory: so does this.
    let store = members[old].store.clone();
    let restarted = start_member(
        &servers[old],
        group,
        NodeId(old as u64 + 1),
        peers.clone(),
        store,
    );
    members[old] = restarted;
    let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
    wait_applied(&records, 200).await;
    let maps: Vec<_> = records
        .iter()
        .map(|r| r.lock().unwrap().map.clone())
        .collect();
    assert_eq!(maps[0].len(), 200);
    assert!(
        maps.iter().all(|m| *m == maps[0]),
        "the restarted node's state equals the others'"
    );
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_groups_on_three_servers_elect_and_commit_independently() {
    let servers = servers(3).await;
    let mut groups = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    for g in 1..=50 {
        // One directory per group and member, as a server would keep.
        let members = start_group(&servers, GroupId(g), |i| {
            Store::Disk(dir.path().join(format!("g{g}/n{i}")))
        });
        groups.push(members);
    }
    assert_eq!(servers[0].groups().len(), 50);
    let work = groups.iter().enumerate().map(|(g, members)| async move {
        let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
        for k in 0..20 {
            apply_anywhere(&nodes, Bytes::from(format!("set g{g}k{k} x"))).await;
        }
        let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
        wait_applied(&records, 20).await;
        for record in &records {
            let record = record.lock().unwrap();
            assert!(
                record.map.keys().all(|k| k.starts_with(&format!("g{g}k"))),
                "no cross-group leak"
            );
        }
    });
    join_all(work).await;
    for server in &servers {
        server.shutdown().await;
    }
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_dropped_for_a_full_peer_queue_are_counted_and_the_groups_recover() {
    // A one-frame queue per peer: fifty groups electing and writing at
    // once overflow it, and the protocol's retries must make up for it.
    let options = oar::runtime::TransportOptions {
        queue_frames_max: 1,
        ..Default::default()
    };
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(server_at("127.0.0.1:0".parse().unwrap(), options.clone()).await);
    }
    let groups: Vec<_> = (1..=50)
        .map(|g| start_group(&servers, GroupId(g), |_| Store::Mem(Default::default())))
        .collect();
    let work = groups.iter().enumerate().map(|(g, members)| async move {
        let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
        for k in 0..5 {
            apply_anywhere(&nodes, Bytes::from(format!("set g{g}k{k} x"))).await;
        }
    });
    join_all(work).await;
    let dropped: u64 = servers.iter().map(|s| s.dropped_outbound_messages()).sum();
    assert!(dropped > 0, "a one-frame queue dropped nothing");
    for server in &servers {
        server.shutdown().await;
    }
}
