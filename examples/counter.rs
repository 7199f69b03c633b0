//! An exactly-once counter: three servers on loopback run one Raft group
//! with client sessions; eight writers INCR through `oar::client` while the
//! leader is killed, and the count comes out exact.
//!
//! ```sh
//! cargo run --example counter
//! ```
//!
//! The servers run without authentication to stay short (the client and the
//! servers are one process); a real deployment gives both sides the cluster
//! CA and the client a client token (`Security::with_client_tokens`,
//! `Dialer::client`; see docs/security.md).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use oar::client::{Client, ClientOptions};
use oar::core::{LogId, NodeId};
use oar::runtime::{
    Committed, Dialer, GroupId, GroupOptions, Insecure, MemStorage, NodeManager, QueryError,
    Security, SessionOptions, SnapshotError, SnapshotReader, SnapshotView, StateMachine,
    snapshot_file,
};

const GROUP: GroupId = GroupId(1);
const CLUSTER: &str = "counter-example";

/// `incr` adds one and answers the new value; anything else reads it, and
/// a query (`get`) reads it without the log.
struct Counter(u64);

impl StateMachine for Counter {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        commands
            .iter()
            .map(|c| {
                if &c.data[..] == b"incr" {
                    self.0 += 1;
                }
                Bytes::from(self.0.to_string())
            })
            .collect()
    }

    fn on_query(&self, query: &[u8]) -> Result<Bytes, QueryError> {
        match query {
            b"get" => Ok(Bytes::from(self.0.to_string())),
            _ => Err(QueryError::Invalid("only `get`".into())),
        }
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        Ok(snapshot_file("count", self.0.to_string()))
    }

    fn on_snapshot_load(&mut self, _: LogId, files: &SnapshotReader) -> Result<(), SnapshotError> {
        let count = files.read_file("count")?;
        self.0 = std::str::from_utf8(&count)
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or(SnapshotError::Invalid("no count".into()))?;
        Ok(())
    }
}

// `pub(crate)`: `tests/counter_example.rs` runs this very `main`, so a
// broken example fails the tests, not only the build.
#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Three servers, each running member i of the group, with sessions on.
    let mut servers = Vec::new();
    for _ in 0..3 {
        let security = Security::insecure(CLUSTER);
        let addr: SocketAddr = "127.0.0.1:0".parse()?;
        servers.push(NodeManager::bind(addr, security, Default::default()).await?);
    }
    let peers: BTreeMap<NodeId, SocketAddr> = (0..3)
        .map(|i| (NodeId(i as u64 + 1), servers[i].local_addr()))
        .collect();
    for (i, server) in servers.iter().enumerate() {
        let options = GroupOptions {
            sessions: Some(SessionOptions::default()),
            ..GroupOptions::new(GROUP, NodeId(i as u64 + 1), peers.clone())
        };
        let storage = Box::new(MemStorage::default());
        server.add_group(options, storage, Box::new(Counter(0)))?;
    }

    // The client knows one server; it finds the leader itself.
    let dialer = Dialer::client(
        Arc::new(Insecure),
        CLUSTER,
        Vec::new(),
        Duration::from_secs(2),
    );
    let client = Client::new(
        vec![servers[2].local_addr()],
        dialer,
        ClientOptions::default(),
    );
    let (leader, at) = client.leader(GROUP).await?;
    println!("leader {leader} at {at}");
    let session = Arc::new(client.open_session(GROUP).await?);

    let writers = 8;
    let each = 50;
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (session, done) = (session.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..each {
                // Retried across the leader's death; applied once.
                session.apply(Bytes::from_static(b"incr")).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, oar::client::ClientError>(())
        }));
    }
    while done.load(Ordering::Relaxed) < writers * each / 4 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let victim = servers
        .iter()
        .position(|s| s.local_addr() == at)
        .expect("a server");
    println!(
        "killing the leader after {} increments",
        done.load(Ordering::Relaxed)
    );
    servers[victim].shutdown().await;
    for task in tasks {
        task.await??;
    }
    let (leader, at) = client.leader(GROUP).await?;
    let count = client.read(GROUP, Bytes::from_static(b"get")).await?;
    println!(
        "new leader {leader} at {at}; count {} (expected {})",
        String::from_utf8_lossy(&count),
        writers * each
    );
    assert_eq!(count, (writers * each).to_string(), "exactly once");
    for server in &servers {
        server.shutdown().await;
    }
    Ok(())
}
