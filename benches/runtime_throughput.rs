//! Throughput of the real runtime (group tasks, log writer and apply tasks,
//! a state machine) for a 3-node group over an in-process transport and
//! in-memory storage, with N closed-loop clients each writing one command
//! at a time to the leader. Prints writes/s and ns per write.
//!
//! Run: `cargo bench --bench runtime_throughput` (`OAR_BENCH_MS` sets the
//! measuring time per row, default 3000; `OAR_BENCH_CLIENTS` a comma list).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oar::core::{NodeId, RaftOptions};
use oar::runtime::{
    Committed, GroupId, GroupOptions, LocalNetwork, MemStorage, Node, NodeManager, StateMachine,
};

/// Counts writes; answers with nothing, like openraft's minimal store.
struct Counter(u64);

impl StateMachine for Counter {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        self.0 += commands.len() as u64;
        vec![Bytes::new(); commands.len()]
    }
}

async fn cluster() -> (Vec<NodeManager>, Node) {
    let network = LocalNetwork::new();
    let addrs: Vec<SocketAddr> = (1..=3)
        .map(|i| format!("10.0.0.{i}:5000").parse().unwrap())
        .collect();
    let peers: BTreeMap<NodeId, SocketAddr> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (NodeId(i as u64 + 1), *a))
        .collect();
    let mut servers = Vec::new();
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let server = NodeManager::local(&network, *addr);
        let id = NodeId(i as u64 + 1);
        let mut options = GroupOptions::new(GroupId(1), id, peers.clone());
        options.raft = RaftOptions {
            id,
            // Node 1 times out first, so it leads and gets the clients.
            election_timeout_min: Duration::from_millis(100 + 200 * i as u64),
            election_timeout_max: Duration::from_millis(150 + 200 * i as u64),
            heartbeat_interval: Duration::from_millis(50),
            ..options.raft
        };
        nodes.push(
            server
                .add_group(options, Box::new(MemStorage::new()), Box::new(Counter(0)))
                .unwrap(),
        );
        servers.push(server);
    }
    while nodes[0].leader() != Some(NodeId(1)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (servers, nodes.swap_remove(0))
}

async fn measure(clients: usize, duration: Duration) -> (f64, f64) {
    let (servers, leader) = cluster().await;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (leader, done, stop) = (leader.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let command = Bytes::from_static(b"0123456789abcdef");
            while !stop.load(Ordering::Relaxed) {
                leader.apply(command.clone()).await.expect("write");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (start, before) = (Instant::now(), done.load(Ordering::Relaxed));
    tokio::time::sleep(duration).await;
    let (elapsed, writes) = (start.elapsed(), done.load(Ordering::Relaxed) - before);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    for server in &servers {
        server.shutdown().await;
    }
    let per_second = writes as f64 / elapsed.as_secs_f64();
    (per_second, 1e9 / per_second)
}

fn main() {
    let millis = std::env::var("OAR_BENCH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let clients: Vec<usize> = std::env::var("OAR_BENCH_CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 64, 256, 1024]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "oar runtime throughput: 3 nodes in one process, in-process transport, in-memory storage, 16-byte writes"
    );
    println!("{:>8} | {:>12} | {:>10}", "clients", "writes/s", "ns/write");
    println!("{:-<8}-+-{:-<12}-+-{:-<10}", "", "", "");
    for n in clients {
        let (per_second, ns) = runtime.block_on(measure(n, Duration::from_millis(millis)));
        println!("{n:>8} | {per_second:>12.0} | {ns:>10.0}");
    }
}
