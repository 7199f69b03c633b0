//! A path that swallows data: writes succeed, nothing arrives, no error.
//! The kernel cannot see it here (a proxy acknowledges every byte, as a
//! middlebox or a half-dead path can), so only the transport's own probe
//! notices that a connection makes no progress and replaces it.

mod runtime;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oar::core::NodeId;
use oar::runtime::{GroupId, GroupOptions, Node, TransportOptions};
use runtime::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// A proxy to `target` that forwards until `swallow` is set; from then on
/// its connections read and drop everything, in both directions, for as
/// long as they live, and new ones are taken but never forwarded.
async fn swallowing_proxy(target: SocketAddr, swallow: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let swallow = swallow.clone();
            tokio::spawn(async move {
                if swallow.load(Ordering::SeqCst) {
                    return drain(client).await;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (from_client, to_client) = client.into_split();
                let (from_server, to_server) = server.into_split();
                let dead = Arc::new(AtomicBool::new(false));
                let up = tokio::spawn(forward(
                    from_client,
                    to_server,
                    swallow.clone(),
                    dead.clone(),
                ));
                forward(from_server, to_client, swallow, dead).await;
                let _ = up.await;
            });
        }
    });
    addr
}

/// Copies until `swallow` is set, then reads and drops for good, even
/// after the heal (keeping the writing half open, so that the other end
/// sees no error); `dead` is the connection's latch, shared by both
/// directions.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    swallow: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
) {
    use tokio::io::AsyncWriteExt;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if swallow.load(Ordering::SeqCst) {
            dead.store(true, Ordering::SeqCst);
        }
        if !dead.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn drain(mut stream: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

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
