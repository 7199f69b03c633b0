//! Reads/s, latency and CPU time per read of `Node::read_barrier` for a
//! 3-node group, per
//! policy (`Log`, `ReadIndex`, `Lease`), on the leader alone or spread over
//! all three members (follower reads), with N closed-loop readers, with and
//! without a concurrent write load (16 closed-loop writers at the leader).
//! A read is the barrier alone: the caller's own state read after it costs
//! the same for every policy.
//!
//! A second table (tcp+disk only) reads through `oar::client` over TLS:
//! `Client::read_with(policy)`, answered by the state machine's `on_query`
//! (at the leader, or spread over the members with `follower_reads`), and
//! `Log(cmd)`, a state machine without `on_query` whose reads go through the
//! log as commands (every client read before policies existed). Its rows run
//! `OAR_BENCH_ROUNDS` times (default 3), interleaved (the order reversed
//! every other round), and it prints each row's median and its ratio to
//! `Log(cmd)`'s.
//!
//! Run: `cargo bench --bench read_throughput`. Environment:
//! `OAR_BENCH_MS` measuring time per row (default 2000),
//! `OAR_BENCH_SETUPS` (default `memory,tcp+disk`),
//! `OAR_BENCH_CLIENTS` as a comma list (default 1,64,256),
//! `OAR_BENCH_TABLES` (default `barriers,client`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oar::client::{Client, ClientOptions};
use oar::core::{NodeId, RaftOptions};
use oar::runtime::{
    Committed, DiskStorage, GroupId, GroupOptions, GroupStorage, LocalNetwork, MemStorage, Node,
    NodeManager, QueryError, ReadPolicy, StateMachine,
};
use oar::storage::{LogOptions, StdFileSystem};

/// Applies nothing; answers with nothing, queries too (unless `queries`
/// is off: then a client read goes through the log as a command).
struct Sink {
    queries: bool,
}

impl StateMachine for Sink {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        vec![Bytes::new(); commands.len()]
    }

    fn on_query(&self, _: &[u8]) -> Result<Bytes, QueryError> {
        match self.queries {
            true => Ok(Bytes::new()),
            false => Err(QueryError::Unsupported),
        }
    }
}

mod common;
#[path = "../tests/runtime/pki.rs"]
mod pki;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    Memory,
    TcpDisk,
}

/// Three members, node 1 leading; returns the servers and the members.
async fn cluster(
    setup: Setup,
    dir: &std::path::Path,
    queries: bool,
) -> (Vec<NodeManager>, Vec<Node>) {
    let network = LocalNetwork::new();
    let mut servers = Vec::new();
    for i in 1..=3 {
        servers.push(match setup {
            Setup::Memory => {
                NodeManager::local(&network, format!("10.0.0.{i}:5000").parse().unwrap())
            }
            Setup::TcpDisk => {
                let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
                let security = pki::shared().security(addr.ip());
                NodeManager::bind(addr, security, Default::default())
                    .await
                    .expect("bind")
            }
        });
    }
    let peers = common::address_book(&servers);
    let mut nodes = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let mut options = GroupOptions::new(GroupId(1), id, peers.clone());
        options.snapshot_interval = None;
        options.raft = RaftOptions {
            id,
            // Node 1 times out first, so it leads.
            election_timeout_min: Duration::from_millis(500 + 200 * i as u64),
            election_timeout_max: Duration::from_millis(550 + 200 * i as u64),
            heartbeat_interval: Duration::from_millis(50),
            max_clock_drift: Duration::from_millis(50),
            ..options.raft
        };
        let storage: Box<dyn GroupStorage> = match setup {
            Setup::Memory => Box::new(MemStorage::new()),
            Setup::TcpDisk => Box::new(
                DiskStorage::open(
                    Arc::new(StdFileSystem),
                    &dir.join(format!("n{i}")),
                    LogOptions::default(),
                )
                .await
                .expect("storage"),
            ),
        };
        nodes.push(
            server
                .add_group(options, storage, Box::new(Sink { queries }))
                .expect("group"),
        );
    }
    while nodes.iter().any(|n| n.leader() != Some(NodeId(1))) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (servers, nodes)
}

/// One row: what is measured.
#[derive(Clone, Copy)]
struct Row {
    policy: ReadPolicy,
    spread: bool,
    clients: usize,
    writes: bool,
    /// Reads through `oar::client` (tcp+disk only), not barriers.
    via_client: bool,
    /// The state machine answers queries (else a client read is a command).
    queries: bool,
}

/// What one closed-loop reader calls.
#[derive(Clone)]
enum Reader {
    Barrier(Node),
    Client(Client),
}

impl Reader {
    async fn read(&self, policy: ReadPolicy) {
        match self {
            Reader::Barrier(node) => {
                node.read_barrier(policy).await.expect("read");
            }
            Reader::Client(client) => {
                let query = Bytes::from_static(b"q");
                client.read_with(GROUP, query, policy).await.expect("read");
            }
        }
    }
}

const GROUP: GroupId = GroupId(1);

/// What one row measured.
#[derive(Clone, Copy)]
struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// The process's CPU time (all three servers, the readers, any
    /// writers) per read: a cost that a loaded machine blurs far less
    /// than reads/s.
    cpu_per_read: Duration,
}

/// Reads/s, the latency percentiles and the CPU time per read of one row.
async fn measure(setup: Setup, row: Row, duration: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let (servers, nodes) = cluster(setup, dir.path(), row.queries).await;
    let client = row.via_client.then(|| {
        let options = ClientOptions {
            follower_reads: row.spread,
            ..ClientOptions::default()
        };
        let seeds = servers.iter().map(|s| s.local_addr()).collect();
        Client::new(
            seeds,
            pki::shared().client_dialer_with(pki::CLIENT_TOKEN),
            options,
        )
    });
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..row.clients {
        let reader = match &client {
            Some(client) => Reader::Client(client.clone()),
            None => Reader::Barrier(nodes[if row.spread { i % 3 } else { 0 }].clone()),
        };
        let (measuring, stop, latencies) = (measuring.clone(), stop.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                reader.read(row.policy).await;
                if measuring.load(Ordering::Relaxed) {
                    mine.push(start.elapsed());
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    for _ in 0..if row.writes { 16 } else { 0 } {
        let (leader, stop) = (nodes[0].clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let command = Bytes::from_static(b"0123456789abcdef");
            while !stop.load(Ordering::Relaxed) {
                leader.apply(command.clone()).await.expect("write");
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // warm up
    measuring.store(true, Ordering::Relaxed);
    let (start, cpu_start) = (Instant::now(), common::cpu_time());
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let (elapsed, cpu) = (
        start.elapsed(),
        common::cpu_time().saturating_sub(cpu_start),
    );
    common::finish(&stop, tasks, &servers).await;
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let per_second = latencies.len() as f64 / elapsed.as_secs_f64();
    Measured {
        per_second,
        p50: at(0.50),
        p99: at(0.99),
        cpu_per_read: cpu / latencies.len().max(1) as u32,
    }
}

fn main() {
    let millis = std::env::var("OAR_BENCH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let setups = std::env::var("OAR_BENCH_SETUPS").unwrap_or_else(|_| "memory,tcp+disk".into());
    let clients: Vec<usize> = std::env::var("OAR_BENCH_CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or(vec![1, 64, 256]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let placements = [
        (ReadPolicy::Log, false),
        (ReadPolicy::ReadIndex, false),
        (ReadPolicy::ReadIndex, true),
        (ReadPolicy::Lease, false),
        (ReadPolicy::Lease, true),
    ];
    let tables = std::env::var("OAR_BENCH_TABLES").unwrap_or_else(|_| "barriers,client".into());
    if tables.contains("client") {
        client_table(&runtime, &clients, Duration::from_millis(millis));
    }
    if !tables.contains("barriers") {
        return;
    }
    for name in setups.split(',') {
        let setup = match name.trim() {
            "memory" => Setup::Memory,
            "tcp+disk" => Setup::TcpDisk,
            other => panic!("unknown setup {other}"),
        };
        println!("\noar read barriers, {name}: 3 nodes in one process, closed-loop readers");
        println!(
            "{:>9} | {:>6} | {:>7} | {:>6} | {:>10} | {:>10} | {:>10} | {:>10}",
            "policy", "where", "clients", "writes", "reads/s", "p50", "p99", "cpu/read"
        );
        println!("{:-<93}", "");
        for writes in [false, true] {
            for &n in &clients {
                for (policy, spread) in placements {
                    let row = Row {
                        policy,
                        spread,
                        clients: n,
                        writes,
                        via_client: false,
                        queries: true,
                    };
                    let m = runtime.block_on(measure(setup, row, Duration::from_millis(millis)));
                    println!(
                        "{:>9} | {:>6} | {n:>7} | {:>6} | {:>10.0} | {:>10.1?} | {:>10.1?} | {:>10.2?}",
                        format!("{policy:?}"),
                        if spread { "spread" } else { "leader" },
                        if writes { "16" } else { "none" },
                        m.per_second,
                        m.p50,
                        m.p99,
                        m.cpu_per_read,
                    );
                }
            }
        }
    }
}

/// Client reads over tcp+disk, rows interleaved over rounds; medians, and
/// each row's ratio to `Log(cmd)` (a client read before queries existed).
fn client_table(runtime: &tokio::runtime::Runtime, clients: &[usize], duration: Duration) {
    let rounds: usize = std::env::var("OAR_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // (name, policy, spread, the state machine answers queries)
    let placements = [
        ("Log(cmd)", ReadPolicy::Log, false, false),
        ("Log", ReadPolicy::Log, false, true),
        ("ReadIndex", ReadPolicy::ReadIndex, false, true),
        ("ReadIndex", ReadPolicy::ReadIndex, true, true),
        ("Lease", ReadPolicy::Lease, false, true),
        ("Lease", ReadPolicy::Lease, true, true),
    ];
    println!(
        "\noar client reads, tcp+disk: Client::read_with over TLS, closed-loop readers, \
         median of {rounds} interleaved rounds"
    );
    println!(
        "{:>9} | {:>6} | {:>7} | {:>10} | {:>7} | {:>10} | {:>10}",
        "policy", "where", "clients", "reads/s", "x cmd", "p50", "p99"
    );
    println!("{:-<80}", "");
    for &n in clients {
        let mut results = vec![Vec::new(); placements.len()];
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..placements.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for at in order {
                let (_, policy, spread, queries) = placements[at];
                let row = Row {
                    policy,
                    spread,
                    clients: n,
                    writes: false,
                    via_client: true,
                    queries,
                };
                results[at].push(runtime.block_on(measure(Setup::TcpDisk, row, duration)));
            }
        }
        let median = |rows: &[Measured]| {
            let mut rows = rows.to_vec();
            rows.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
            rows[rows.len() / 2]
        };
        let base = median(&results[0]).per_second;
        for (at, (name, _, spread, _)) in placements.iter().enumerate() {
            let Measured {
                per_second,
                p50,
                p99,
                ..
            } = median(&results[at]);
            println!(
                "{name:>9} | {:>6} | {n:>7} | {per_second:>10.0} | {:>7.2} | {p50:>10.1?} | {p99:>10.1?}",
                if *spread { "spread" } else { "leader" },
                per_second / base,
            );
        }
    }
}
