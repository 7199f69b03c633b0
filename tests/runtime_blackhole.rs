//! A path that swallows data: writes succeed, nothing arrives, no error.
//! The kernel cannot see it here (a proxy acknowledges every byte, as a
//! middlebox or a half-dead path can), so only the transport's own probe
//! notices that a connection makes no progress and replaces it.

mod runtime;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oar::core::NodeId;
use oar::runtime::{GroupId, GroupOptions, Node, TransportOptions};
use runtime::proxy::swallowing_proxy;
use runtime::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swallowed_connection_is_replaced_after_the_heal() {
    let options = TransportOptions {
        probe_timeout: Duration::from_secs(1),
        ..TransportOptions::default()
    };
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(server_at("127.0.0.1:0".parse().unwrap(), options.clone()).await);
    }
    let direct = peers_of(&servers);
    let swallow = Arc::new(AtomicBool::new(false));
    let group = GroupId(1);
    // Each server reaches the other only through a proxy: two voters, so
    // nothing commits unless both directions work.
    let mut members = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let mut peers = direct.clone();
        for (&other, addr) in &direct {
            if other != id {
                peers.insert(other, swallowing_proxy(*addr, swallow.clone()).await);
            }
        }
        let mut group_options = GroupOptions::new(group, id, peers);
        group_options.raft = fast_raft(id, group);
        members.push(start_member_with_options(
            server,
            group_options,
            Store::Mem(Default::default()),
        ));
    }
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    apply_anywhere(&nodes, Bytes::from_static(b"set before 1")).await;

    swallow.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    swallow.store(false, Ordering::SeqCst);
    let healed = Instant::now();
    // The old connections died during the swallow (probe unanswered) and
    // the new ones hung; after the heal: a reconnect and an election.
    let write = tokio::time::timeout(
        Duration::from_secs(3),
        apply_anywhere(&nodes, Bytes::from_static(b"set after 1")),
    )
    .await;
    assert!(write.is_ok(), "no write committed within 3 s of the heal");
    eprintln!("first commit {:?} after the heal", healed.elapsed());
    for server in &servers {
        server.shutdown().await;
    }
}
