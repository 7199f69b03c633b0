//! A peer server that restarted: what its earlier life left unsent must not
//! arrive after its new life connected (`src/runtime/peer_lives.rs`). Found
//! by the simulator: a vote request that a killed server had written into a
//! partition was delivered eight seconds later and deposed a healthy leader.

mod runtime;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use oar::runtime::auth::BoxedStream;
use oar::runtime::wire::frame::{encode_frame, read_frame};
use oar::runtime::wire::proto;
use oar::runtime::{Dialer, NodeManager};
use prost::Message as _;
use runtime::pki;
use runtime::*;
use tokio::io::AsyncWriteExt;

/// A peer server's address outside the cluster's address book; the test
/// PKI's certificate for its IP vouches for it.
fn peer_addr() -> SocketAddr {
    "127.0.0.9:1".parse().unwrap()
}

/// Connects to `target` as the peer at `peer_addr()` in its start
/// `incarnation`.
async fn connect(target: SocketAddr, incarnation: u64) -> BoxedStream {
    let security = pki::shared().security(peer_addr().ip());
    Dialer::server(&security, peer_addr(), Duration::from_secs(5))
        .with_incarnation(incarnation)
        .dial(target)
        .await
        .expect("an authenticated server may connect")
}

/// Sends a probe on `conn`; whether its answer came back.
async fn answers(conn: &mut BoxedStream) -> bool {
    let ping = proto::Frame {
        kind: Some(proto::frame::Kind::Ping(proto::Probe {
            sequence: 1,
            ..Default::default()
        })),
    };
    let mut out = BytesMut::new();
    encode_frame(&ping.encode_to_vec(), &mut out);
    if conn.write_all(&out).await.is_err() || conn.flush().await.is_err() {
        return false;
    }
    let read = tokio::time::timeout(Duration::from_secs(5), read_frame(conn, 1 << 20)).await;
    matches!(read, Ok(Ok(_)))
}

fn superseded(server: &NodeManager) -> u64 {
    server
        .stats()
        .superseded_connections
        .load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_start_of_a_peer_closes_its_earlier_connections() {
    let servers = servers(1).await;
    let target = servers[0].local_addr();

    let mut earlier = connect(target, 10).await;
    let mut earlier_too = connect(target, 10).await;
    assert!(answers(&mut earlier).await);
    assert!(answers(&mut earlier_too).await, "one life may hold several");

    // A connection that names an older start, or none, closes nothing.
    let mut stale = connect(target, 9).await;
    let mut unnamed = connect(target, 0).await;
    assert!(answers(&mut earlier).await);
    assert_eq!(superseded(&servers[0]), 0);

    let mut later = connect(target, 11).await;
    assert!(answers(&mut later).await);
    assert!(
        !answers(&mut earlier).await,
        "the earlier life's connection is closed"
    );
    assert!(!answers(&mut earlier_too).await);
    assert_eq!(superseded(&servers[0]), 2);
    // Untracked connections are served as before.
    assert!(answers(&mut stale).await);
    assert!(answers(&mut unnamed).await);
    assert!(answers(&mut later).await);
}
