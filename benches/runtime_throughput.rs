//! Throughput and latency of the real runtime (group tasks, log writer and
//! apply tasks, a state machine) for a 3-node group, with N closed-loop
//! clients each writing one 16-byte command at a time to the leader.
//!
//! Two setups, one table each:
//! - `memory`: in-process transport and in-memory storage (the shape of
//!   openraft's `benchmarks/minimal`);
//! - `tcp+disk`: loopback TCP with mutual TLS (as servers run by default)
//!   and the real segment log with fsync, in a temporary directory; then
//!   the physical floor measured in the same run (one 4 KiB write +
//!   `fdatasync` p50 plus one loopback round trip p50) against the
//!   single-client p50;
//! - `tcp+disk+insecure`: the same without authentication;
//! - `tcp+disk+client`: `tcp+disk` with the group keeping sessions and
//!   the clients outside the servers, each writing through its own
//!   `oar::client` session (one `Client`, its pipelined connections
//!   shared); not run by default;
//! - `tls-cost`: both of the above, interleaved row by row, with their ratio;
//! - `metrics-cost`: `memory` and `tcp+disk` with metrics on and off
//!   (`GroupOptions::metrics`), interleaved row by row in alternating
//!   order for `OAR_BENCH_ROUNDS` rounds (default 3), with the median ratio.
//!
//! Run: `cargo bench --bench runtime_throughput`. Environment:
//! `OAR_BENCH_MS` measuring time per row (default 3000),
//! `OAR_BENCH_SETUPS` (default `memory,tcp+disk`),
//! `OAR_BENCH_CLIENTS` per setup as a comma list, `OAR_BENCH_METRICS=off`
//! to run the plain setups with metrics off.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oar::client::{Client, ClientOptions};
use oar::core::{NodeId, RaftOptions};
use oar::runtime::{
    DiskStorage, GroupId, GroupOptions, GroupStorage, LocalNetwork, MemStorage, Node, NodeManager,
    Security, SessionOptions,
};
use oar::storage::{LogOptions, StdFileSystem};

mod common;
#[path = "runtime_throughput/floor.rs"]
mod floor;
#[path = "../tests/runtime/pki.rs"]
mod pki;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    Memory,
    /// `client`: writers go through `oar::client` sessions, not the
    /// leader's `Node` handle.
    TcpDisk {
        tls: bool,
        client: bool,
    },
}

async fn cluster(setup: Setup, metrics: bool, dir: &std::path::Path) -> (Vec<NodeManager>, Node) {
    let network = LocalNetwork::new();
    let mut servers = Vec::new();
    for i in 1..=3 {
        servers.push(match setup {
            Setup::Memory => {
                NodeManager::local(&network, format!("10.0.0.{i}:5000").parse().unwrap())
            }
            Setup::TcpDisk { tls, .. } => {
                let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
                let security = match tls {
                    true => pki::shared().security(addr.ip()),
                    false => Security::insecure(pki::CLUSTER),
                };
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
        options.metrics = metrics;
        if setup
            == (Setup::TcpDisk {
                tls: true,
                client: true,
            })
        {
            options.sessions = Some(SessionOptions::default());
        }
        // openraft's defaults: a snapshot every 5,000 entries, 1,000 kept.
        options.snapshot_interval = Some(5000);
        options.raft = RaftOptions {
            id,
            compaction_margin: 1000,
            // Node 1 times out first, so it leads and gets the clients.
            election_timeout_min: Duration::from_millis(100 + 200 * i as u64),
            election_timeout_max: Duration::from_millis(150 + 200 * i as u64),
            heartbeat_interval: Duration::from_millis(50),
            ..options.raft
        };
        let storage: Box<dyn GroupStorage> = match setup {
            Setup::Memory => Box::new(MemStorage::new()),
            Setup::TcpDisk { .. } => Box::new(
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
                .add_group(options, storage, Box::new(common::Counter(0)))
                .expect("group"),
        );
    }
    while nodes[0].leader() != Some(NodeId(1)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (servers, nodes.swap_remove(0))
}

/// What one row measured.
struct Row {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time of the whole process (all three nodes and the clients) per
    /// write: unlike writes/s, barely moved by other processes' load.
    cpu_per_write: Duration,
}

/// Writes/s, the latency percentiles and CPU per write of `clients` clients.
async fn measure(setup: Setup, metrics: bool, clients: usize, duration: Duration) -> Row {
    let dir = tempfile::tempdir().expect("temp dir");
    let (servers, leader) = cluster(setup, metrics, dir.path()).await;
    let client = (setup
        == Setup::TcpDisk {
            tls: true,
            client: true,
        })
    .then(|| {
        let dialer = pki::shared().client_dialer_with(pki::CLIENT_TOKEN);
        Client::new(
            vec![servers[2].local_addr()],
            dialer,
            ClientOptions::default(),
        )
    });
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (leader, client, measuring, stop, latencies) = (
            leader.clone(),
            client.clone(),
            measuring.clone(),
            stop.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let command = Bytes::from_static(b"0123456789abcdef");
            let mut mine = Vec::new();
            let session = match &client {
                Some(client) => Some(client.open_session(GroupId(1)).await.expect("session")),
                None => None,
            };
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                match &session {
                    Some(session) => drop(session.apply(command.clone()).await.expect("write")),
                    None => drop(leader.apply(command.clone()).await.expect("write")),
                }
                if measuring.load(Ordering::Relaxed) {
                    mine.push(start.elapsed());
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // warm up
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let cpu_start = common::cpu_time();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let cpu = common::cpu_time().saturating_sub(cpu_start);
    common::finish(&stop, tasks, &servers).await;
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
    };
    let per_second = latencies.len() as f64 / elapsed.as_secs_f64();
    Row {
        per_second,
        p50: at(0.50).copied().unwrap_or_default(),
        p99: at(0.99).copied().unwrap_or_default(),
        cpu_per_write: cpu / (latencies.len().max(1) as u32),
    }
}

fn main() {
    let millis = std::env::var("OAR_BENCH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let setups = std::env::var("OAR_BENCH_SETUPS").unwrap_or_else(|_| "memory,tcp+disk".into());
    let clients_override: Option<Vec<usize>> = std::env::var("OAR_BENCH_CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect());
    let metrics = std::env::var("OAR_BENCH_METRICS").map_or(true, |v| v != "off");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for name in setups.split(',') {
        let name = name.trim();
        let (setup, default_clients) = match name {
            "memory" => (Setup::Memory, vec![1, 64, 256, 1024]),
            "tcp+disk" => (
                Setup::TcpDisk {
                    tls: true,
                    client: false,
                },
                vec![1, 16, 256],
            ),
            "tcp+disk+insecure" => (
                Setup::TcpDisk {
                    tls: false,
                    client: false,
                },
                vec![1, 16, 256],
            ),
            "tcp+disk+client" => (
                Setup::TcpDisk {
                    tls: true,
                    client: true,
                },
                vec![1, 16, 256],
            ),
            "tls-cost" => {
                let clients = clients_override.clone().unwrap_or(vec![1, 16, 256]);
                tls_cost(&runtime, &clients, Duration::from_millis(millis));
                continue;
            }
            "metrics-cost" => {
                let clients = clients_override.clone().unwrap_or(vec![256]);
                metrics_cost(&runtime, &clients, Duration::from_millis(millis));
                continue;
            }
            other => panic!("unknown setup {other}"),
        };
        let clients = clients_override.clone().unwrap_or(default_clients);
        println!(
            "\noar runtime, {name}: 3 nodes in one process, 16-byte writes, closed-loop clients"
        );
        println!(
            "{:>8} | {:>10} | {:>8} | {:>10} | {:>10}",
            "clients", "writes/s", "ns/write", "p50", "p99"
        );
        println!(
            "{:-<8}-+-{:-<10}-+-{:-<8}-+-{:-<10}-+-{:-<10}",
            "", "", "", "", ""
        );
        let mut single_p50 = None;
        let mut cpu = Vec::new();
        for n in clients {
            let Row {
                per_second,
                p50,
                p99,
                cpu_per_write,
            } = runtime.block_on(measure(setup, metrics, n, Duration::from_millis(millis)));
            cpu.push((n, cpu_per_write));
            println!(
                "{n:>8} | {per_second:>10.0} | {:>8.0} | {:>10.1?} | {:>10.1?}",
                1e9 / per_second,
                p50,
                p99
            );
            if n == 1 {
                single_p50 = Some(p50);
            }
        }
        print_cpu(name, &cpu);
        if let (Setup::TcpDisk { .. }, Some(p50)) = (setup, single_p50) {
            print_floor(p50);
        }
    }
}

/// CPU time of the whole process per write, row by row: a table of its
/// own, so that the writes/s table keeps its heading (scripts/bench-compare
/// matches rows of older builds by it), and a figure that other processes'
/// load moves far less than writes/s.
fn print_cpu(name: &str, rows: &[(usize, Duration)]) {
    println!("\noar runtime, {name}: CPU time of the process per write");
    println!("{:>8} | {:>12}", "clients", "cpu ns/write");
    println!("{:-<8}-+-{:-<12}", "", "");
    for (n, cpu) in rows {
        println!("{n:>8} | {:>12}", cpu.as_nanos());
    }
}

/// The physical floor of one write (a 4 KiB `fdatasync` and a loopback
/// round trip, p50s), measured now, against the single-client p50.
fn print_floor(single_p50: Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sync = floor::fdatasync_p50(dir.path(), 500);
    let rtt = floor::loopback_rtt_p50(2000);
    // Beside the floor, not in it (column "growing"): what the log would
    // pay per batch without preallocated segments. The heading stays as it
    // was, so that scripts/bench-compare matches the rows of older builds.
    let growing = floor::growing_fdatasync_p50(dir.path(), 500);
    let sum = sync + rtt;
    println!("\nphysical floor: one 4 KiB write + fdatasync p50 and one loopback round trip p50");
    println!(
        "{:>8} | {:>10} | {:>10} | {:>10} | {:>10} | {:>10} | {:>10}",
        "clients", "fsync p50", "rtt p50", "floor", "p50", "p50/floor", "growing"
    );
    println!(
        "{:-<8}-+-{:-<10}-+-{:-<10}-+-{:-<10}-+-{:-<10}-+-{:-<10}-+-{:-<10}",
        "", "", "", "", "", "", ""
    );
    println!(
        "{:>8} | {sync:>10.1?} | {rtt:>10.1?} | {sum:>10.1?} | {single_p50:>10.1?} | {:>10.2} | {growing:>10.1?}",
        1,
        single_p50.as_secs_f64() / sum.as_secs_f64()
    );
}

/// tcp+disk with TLS against without, each row measured back to back so
/// that the machine's drift hits both alike.
fn tls_cost(runtime: &tokio::runtime::Runtime, clients: &[usize], time: Duration) {
    println!("\noar runtime, tcp+disk: mutual TLS against none, interleaved");
    println!(
        "{:>8} | {:>12} | {:>12} | {:>7} | {:>10} | {:>10} | {:>10}",
        "clients", "insecure w/s", "tls w/s", "tls/ins", "ins p50", "tls p50", "p50 cost"
    );
    println!(
        "{:-<8}-+-{:-<12}-+-{:-<12}-+-{:-<7}-+-{:-<10}-+-{:-<10}-+-{:-<10}",
        "", "", "", "", "", "", ""
    );
    for &n in clients {
        let plain = runtime.block_on(measure(
            Setup::TcpDisk {
                tls: false,
                client: false,
            },
            true,
            n,
            time,
        ));
        let tls = runtime.block_on(measure(
            Setup::TcpDisk {
                tls: true,
                client: false,
            },
            true,
            n,
            time,
        ));
        let (plain, plain_p50, tls, tls_p50) =
            (plain.per_second, plain.p50, tls.per_second, tls.p50);
        println!(
            "{n:>8} | {plain:>12.0} | {tls:>12.0} | {:>7.2} | {plain_p50:>10.1?} | {tls_p50:>10.1?} | {:>10.1?}",
            tls / plain,
            tls_p50.saturating_sub(plain_p50)
        );
    }
}

/// Metrics on against off, for the in-memory and the TLS+disk setups: each
/// round measures both back to back, the order alternating between rounds
/// so that neither always runs second; prints every round and the median
/// on/off ratios of writes/s and of CPU per write.
fn metrics_cost(runtime: &tokio::runtime::Runtime, clients: &[usize], time: Duration) {
    let rounds: usize = std::env::var("OAR_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!("\noar runtime: metrics on against off, interleaved, {rounds} rounds");
    println!(
        "{:>10} | {:>7} | {:>5} | {:>9} | {:>9} | {:>6} | {:>8} | {:>8} | {:>6} | {:>8} | {:>8}",
        "setup",
        "clients",
        "round",
        "off w/s",
        "on w/s",
        "on/off",
        "off cpu",
        "on cpu",
        "on/off",
        "off p50",
        "on p50"
    );
    for (name, setup) in [
        ("memory", Setup::Memory),
        (
            "tcp+disk",
            Setup::TcpDisk {
                tls: true,
                client: false,
            },
        ),
    ] {
        for &n in clients {
            let (mut writes, mut cpus) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let run = |metrics| runtime.block_on(measure(setup, metrics, n, time));
                let (on, off) = match round % 2 {
                    0 => {
                        let off = run(false);
                        (run(true), off)
                    }
                    _ => {
                        let on = run(true);
                        (on, run(false))
                    }
                };
                let write_ratio = on.per_second / off.per_second;
                let cpu_ratio = on.cpu_per_write.as_secs_f64() / off.cpu_per_write.as_secs_f64();
                writes.push(write_ratio);
                cpus.push(cpu_ratio);
                println!(
                    "{name:>10} | {n:>7} | {round:>5} | {:>9.0} | {:>9.0} | {write_ratio:>6.3} | {:>8.1?} | {:>8.1?} | {cpu_ratio:>6.3} | {:>8.1?} | {:>8.1?}",
                    off.per_second,
                    on.per_second,
                    off.cpu_per_write,
                    on.cpu_per_write,
                    off.p50,
                    on.p50
                );
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                (v[v.len() / 2], v[0], v[v.len() - 1])
            };
            let (w, w_lo, w_hi) = median(&mut writes);
            let (c, c_lo, c_hi) = median(&mut cpus);
            println!(
                "{name:>10} | {n:>7} | median on/off: writes/s {w:.3} ({w_lo:.3} to {w_hi:.3}), CPU per write {c:.3} ({c_lo:.3} to {c_hi:.3})"
            );
        }
    }
}
