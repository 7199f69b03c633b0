//! What exactly-once costs: write throughput of a 3-node group over
//! loopback TCP with mutual TLS and the real segment log (fsync), with N
//! closed-loop writers of one 16-byte command at a time, three ways,
//! measured back to back for each row so that the machine's drift hits all
//! alike:
//!
//! - `raw`: `Node::apply` on the leader's handle, a group without sessions;
//! - `session`: `Node::apply_in_session` on the leader's handle, a group
//!   with sessions (the session table's cost alone);
//! - `client-raw`: `oar::client`'s `Client::apply` from outside the
//!   server, a group without sessions (route lookup, pipelined TLS
//!   connections the writers share, the client frames);
//! - `client`: `oar::client` sessions from outside the server (all that,
//!   and the table).
//!
//! The goal "sessions cost <= 10 %" is about `session/raw` (the same
//! leader handle, with and without sessions) and `client/client-raw` (both
//! over TCP): the sessions' own cost. `client/raw` is what a remote writer
//! gets against an in-process one (the client, TLS and TCP share the
//! machine's cores with the three servers), not a cost of sessions.
//!
//! Run: `cargo bench --bench session_throughput`. Environment:
//! `OAR_BENCH_ROUNDS` rounds of the four modes, interleaved, printing
//! medians (default 1), `OAR_BENCH_MS` measuring time per cell (default 3000),
//! `OAR_BENCH_CLIENTS` as a comma list (default `1,64`), `OAR_BENCH_MODE`
//! to measure one mode alone (`raw`, `session`, `client-raw` or `client`,
//! for a profiler), `OAR_BENCH_CONNECTIONS` the client's connections per
//! server at most (`ClientOptions::connections_per_server_max`),
//! `OAR_BENCH_COMMAND=copied` to give every write a command of its own on
//! the heap, as a server's commands come off the network (by default one
//! static command: `raw`'s entries then cost no allocation and no reference
//! count anywhere in process, while `session` logs an envelope on the heap
//! either way). `OAR_BENCH_SLOW=N` multiplies the election timeouts and
//! heartbeat interval by N, for a run under valgrind (callgrind runs the
//! process ~50x slower: with the default timeouts elections never settle);
//! `OAR_BENCH_WRITES=N` measures N writes from the first (no warm-up)
//! instead of `OAR_BENCH_MS`, so that two runs' difference in instructions
//! counts the work of writes alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oar::client::{Client, ClientOptions};
use oar::core::{NodeId, RaftOptions};
use oar::runtime::{
    DiskStorage, GroupId, GroupOptions, Node, NodeManager, SessionOptions, TransportOptions,
};
use oar::storage::{LogOptions, StdFileSystem};

mod common;
#[path = "../tests/runtime/pki.rs"]
mod pki;

const GROUP: GroupId = GroupId(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Raw,
    Session,
    ClientRaw,
    Client,
}

async fn cluster(sessions: bool, dir: &std::path::Path) -> (Vec<NodeManager>, Node) {
    let options = TransportOptions {
        // Every writer of the client mode holds a connection from 127.0.0.1.
        connections_per_ip_max: 1024,
        ..TransportOptions::default()
    };
    let slow: u64 = std::env::var("OAR_BENCH_SLOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut servers = Vec::new();
    for _ in 0..3 {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let security = pki::shared().security(addr.ip());
        servers.push(
            NodeManager::bind(addr, security, options.clone())
                .await
                .expect("bind"),
        );
    }
    let peers = common::address_book(&servers);
    let mut nodes = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let mut options = GroupOptions::new(GROUP, id, peers.clone());
        options.snapshot_interval = Some(5000);
        options.sessions = sessions.then(SessionOptions::default);
        options.raft = RaftOptions {
            id,
            compaction_margin: 1000,
            // Node 1 times out first, so it leads.
            election_timeout_min: Duration::from_millis((100 + 200 * i as u64) * slow),
            election_timeout_max: Duration::from_millis((150 + 200 * i as u64) * slow),
            heartbeat_interval: Duration::from_millis(50 * slow),
            ..options.raft
        };
        let storage = DiskStorage::open(
            Arc::new(StdFileSystem),
            &dir.join(format!("n{i}")),
            LogOptions::default(),
        )
        .await
        .expect("storage");
        nodes.push(
            server
                .add_group(options, Box::new(storage), Box::new(common::Counter(0)))
                .expect("group"),
        );
    }
    while nodes[0].leader() != Some(NodeId(1)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (servers, nodes.swap_remove(0))
}

/// One writer's loop until `stop`; counts writes while `measuring`.
async fn write_loop(
    mode: Mode,
    leader: Node,
    client: Client,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) {
    const COMMAND: &[u8; 16] = b"0123456789abcdef";
    let copied = std::env::var("OAR_BENCH_COMMAND").is_ok_and(|v| v == "copied");
    let command = || match copied {
        true => Bytes::copy_from_slice(COMMAND),
        false => Bytes::from_static(COMMAND),
    };
    let (session, remote) = match mode {
        Mode::Raw | Mode::ClientRaw => (None, None),
        Mode::Session => (Some(leader.open_session().await.expect("session")), None),
        Mode::Client => (
            None,
            Some(client.open_session(GROUP).await.expect("session")),
        ),
    };
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        match (session, &remote) {
            _ if mode == Mode::ClientRaw => {
                client.apply(GROUP, command()).await.expect("write");
            }
            (Some(s), _) => {
                leader
                    .apply_in_session(s, seq, seq, command())
                    .await
                    .expect("write");
            }
            (_, Some(remote)) => {
                remote.apply(command()).await.expect("write");
            }
            _ => {
                leader.apply(command()).await.expect("write");
            }
        }
        if measuring.load(Ordering::Relaxed) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes/s of `writers` writers in `mode`, and the process's CPU time
/// per write (all three servers and the writers: less moved than writes/s
/// by other processes' load), and the writes counted.
async fn measure(mode: Mode, writers: usize, duration: Duration) -> (f64, Duration, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sessions = matches!(mode, Mode::Session | Mode::Client);
    let (servers, leader) = cluster(sessions, dir.path()).await;
    let dialer = pki::shared().client_dialer_with(pki::CLIENT_TOKEN);
    let seeds = vec![servers[2].local_addr()];
    let mut options = ClientOptions::default();
    if let Some(n) = std::env::var("OAR_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.connections_per_server_max = n;
    }
    let client = Client::new(seeds, dialer, options);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        tasks.push(tokio::spawn(write_loop(
            mode,
            leader.clone(),
            client.clone(),
            measuring.clone(),
            stop.clone(),
            count.clone(),
        )));
    }
    // A fixed count of writes (from the first, no warm-up) instead of a
    // time: under callgrind, the work of N writes, whatever the wall clock.
    let target: Option<u64> = std::env::var("OAR_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok());
    if target.is_none() {
        tokio::time::sleep(Duration::from_millis(500)).await; // warm up
    }
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let cpu_start = common::cpu_time();
    match target {
        Some(n) => {
            while count.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        None => tokio::time::sleep(duration).await,
    }
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let cpu = common::cpu_time().saturating_sub(cpu_start);
    common::finish(&stop, tasks, &servers).await;
    let count = count.load(Ordering::Relaxed);
    (
        count as f64 / elapsed.as_secs_f64(),
        cpu / count.max(1) as u32,
        count,
    )
}

fn main() {
    let millis = std::env::var("OAR_BENCH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let writers: Vec<usize> = std::env::var("OAR_BENCH_CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or(vec![1, 64]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let time = Duration::from_millis(millis);
    if let Ok(mode) = std::env::var("OAR_BENCH_MODE") {
        let mode = match mode.as_str() {
            "raw" => Mode::Raw,
            "session" => Mode::Session,
            "client-raw" => Mode::ClientRaw,
            "client" => Mode::Client,
            other => panic!("unknown mode {other}"),
        };
        for n in writers {
            let (rate, cpu, count) = runtime.block_on(measure(mode, n, time));
            println!("{mode:?} {n} writers: {rate:.0} writes/s, {cpu:?} CPU/write, {count} writes");
        }
        return;
    }
    let rounds: usize = std::env::var("OAR_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    println!(
        "\noar sessions, tcp+disk+TLS, 3 nodes in one process, 16-byte writes; \
         {rounds} round(s), the four modes interleaved (order reversed every other round); \
         medians, ratios taken within each round"
    );
    println!(
        "{:>7} | {:>9} | {:>11} | {:>14} | {:>10} | {:>15} | {:>11} | {:>21} | {:>17} | {:>10}",
        "writers",
        "raw w/s",
        "session w/s",
        "client-raw w/s",
        "client w/s",
        "session/raw w/s",
        "CPU s/raw",
        "client/client-raw w/s",
        "CPU client/c-raw",
        "client/raw"
    );
    for &n in &writers {
        let mut cells: [Vec<(f64, f64)>; 4] = Default::default();
        for round in 0..rounds {
            let mut order = [Mode::Raw, Mode::Session, Mode::ClientRaw, Mode::Client];
            if round % 2 == 1 {
                order.reverse();
            }
            for mode in order {
                let (rate, cpu, _) = runtime.block_on(measure(mode, n, time));
                cells[mode as usize].push((rate, cpu.as_secs_f64()));
            }
        }
        let [raw, session, client_raw, client] = &cells;
        let ratio = |a: &[(f64, f64)], b: &[(f64, f64)], cpu: bool| {
            median(a.iter().zip(b).map(|(a, b)| match cpu {
                true => a.1 / b.1.max(1e-12),
                false => a.0 / b.0.max(1e-12),
            }))
        };
        let rate = |c: &[(f64, f64)]| median(c.iter().map(|c| c.0));
        println!(
            "{n:>7} | {:>9.0} | {:>11.0} | {:>14.0} | {:>10.0} | {:>15.2} | {:>11.2} | {:>21.2} | {:>17.2} | {:>10.2}",
            rate(raw),
            rate(session),
            rate(client_raw),
            rate(client),
            ratio(session, raw, false),
            ratio(session, raw, true),
            ratio(client, client_raw, false),
            ratio(client, client_raw, true),
            ratio(client, raw, false),
        );
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
