//! Embedding oar: three members of one Raft group, each on its own server
//! with its own storage directory, on loopback in one process. Run it with
//! `cargo run --example embed`; CI runs it, and README shows this file.
//!
//! A service depends on `oar` and on
//! `tokio = { version = "1", features = ["macros", "rt-multi-thread"] }`;
//! everything else comes from `oar::prelude`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oar::prelude::*;

const GROUP: GroupId = GroupId(1);

/// The replicated state machine: a sum. A command is a number in decimal;
/// its response is the new sum. The group owns the state machine (it runs
/// on the group's apply task), so the service keeps a handle on the sum to
/// read it.
struct Sum {
    total: Arc<AtomicU64>,
}

impl StateMachine for Sum {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut responses = Vec::with_capacity(commands.len());
        for command in commands {
            // Every replica applies the same commands in the same order, so
            // a command that does not parse is ignored by all of them alike.
            let add = std::str::from_utf8(&command.data)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .unwrap_or(0);
            let total = self.total.fetch_add(add, Ordering::Release) + add;
            responses.push(Bytes::from(total.to_string()));
        }
        responses
    }
}

/// Applies `command` at the group's leader, waiting for one to exist, and
/// retrying where the command was certainly not applied.
async fn apply(nodes: &[Node], command: Bytes) -> Result<Applied, Box<dyn std::error::Error>> {
    loop {
        // Any member's status names the leader (`Node::watch` has it live).
        let (leader, _addr) = nodes[0].wait_for_leader(Duration::from_secs(10)).await?;
        let node = nodes
            .iter()
            .find(|n| n.id() == leader)
            .ok_or("no such member")?;
        match node.apply(command.clone()).await {
            // Not accepted, or replaced by a new leader's entry: never
            // applied, so safe to retry. (Other errors, e.g. `Shutdown`,
            // leave the outcome unknown: `oar::client` sessions retry those
            // exactly once.)
            Err(Error::NotLeader { .. } | Error::Overwritten(_)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            result => return Ok(result?),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = std::env::temp_dir().join(format!("oar-embed-{}", std::process::id()));

    // Three servers; port 0 picks a free one. `Security::insecure` keeps
    // this short: a deployment gives every server the cluster's TLS
    // certificates (`TlsAuthenticator`, docs/security.md).
    let mut servers = Vec::new();
    for _ in 0..3 {
        let security = Security::insecure("embed-example");
        let addr: SocketAddr = "127.0.0.1:0".parse()?;
        servers.push(NodeManager::bind(addr, security, TransportOptions::default()).await?);
    }
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=3)
        .map(NodeId)
        .zip(servers.iter().map(|server| server.local_addr()))
        .collect();

    // On each server, one member of the group: its options, its storage,
    // its state machine.
    let mut nodes = Vec::new();
    let mut totals = Vec::new();
    for (&id, server) in peers.keys().zip(&servers) {
        let dir = data.join(format!("member-{}", id.0));
        let storage =
            DiskStorage::open(Arc::new(StdFileSystem), &dir, LogOptions::default()).await?;
        let total = Arc::new(AtomicU64::new(0));
        let sum = Sum {
            total: Arc::clone(&total),
        };
        let options = GroupOptions::new(GROUP, id, peers.clone());
        nodes.push(server.add_group(options, storage, sum)?);
        totals.push(total);
    }

    // Writes: each resolves once committed and applied on the leader, with
    // the state machine's response.
    let mut last = None;
    for n in 1..=10u64 {
        last = Some(apply(&nodes, Bytes::from(n.to_string())).await?);
    }
    let last = last.ok_or("nothing applied")?;
    println!(
        "sum {} at index {}",
        String::from_utf8_lossy(&last.response),
        last.index
    );
    assert_eq!(last.response, "55");

    // Reads: a read barrier on any member (followers ask the leader for a
    // read index), then that member's own state, which then holds every
    // write completed before the barrier.
    for (node, total) in nodes.iter().zip(&totals) {
        node.read_barrier(ReadPolicy::ReadIndex).await?;
        let total = total.load(Ordering::Acquire);
        println!("member {}: sum {total}", node.id());
        assert_eq!(total, 55);
    }

    // Shutdown: each server stops its groups (the state machine gets
    // `on_shutdown`, queued disk writes finish) and its connections.
    // Afterwards nothing touches the storage directories.
    for server in &servers {
        server.shutdown().await;
    }
    std::fs::remove_dir_all(&data)?;
    Ok(())
}
