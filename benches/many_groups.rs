//! What many groups on the same servers cost (issue 15): 3 servers
//! (`NodeManager`s) in one process on loopback TCP with mutual TLS (as
//! servers run by default), each a member of every one of G groups, with
//! in-memory or on-disk storage: the per-group segment log (`disk`) or
//! one shared log per server (`shared`, `SharedLog`), fsync on.
//!
//! For each (storage, G) row it prints, from one run:
//! - `setup`: from the first `add_group` until every group's three members
//!   name the same leader;
//! - `idle CPU`: the process's CPU time (getrusage, user + system) over
//!   `OAR_BENCH_IDLE_S` seconds with no client, as % of one core;
//! - `B/member`: resident memory (`/proc/self/statm`) grown since before
//!   the first group, divided by the 3 × G members;
//! - `fds`: open file descriptors (`/proc/self/fd`) once set up;
//! - `writes/s` and `CPU/write`: `OAR_BENCH_CLIENTS` closed-loop clients
//!   spread over `OAR_BENCH_WRITE_GROUPS` groups (default: one group per
//!   client, at most G), each writing 16 bytes at a time to its group's
//!   leader for `OAR_BENCH_MS` milliseconds; CPU of the whole process;
//! - `awake`: members not quiet at the end of the idle window (each wakes
//!   on its own timers; with quiescence on, every one should be quiet);
//! - `dropped`: messages the servers dropped because a peer's send queue
//!   was full (`NodeManager::dropped_outbound_messages`), over the row;
//! - `elections idle` / `load`: term increases summed over the groups
//!   (the highest term among a group's members) during the idle window and
//!   during the load (pre-vote is on, so a term moves only when a leader
//!   is deposed or lost, not for a failed pre-vote).
//!
//! Run: `cargo bench --bench many_groups`. Environment: `OAR_BENCH_GROUPS`
//! (comma list, default `100,1000`), `OAR_BENCH_STORAGE` (`memory,disk`,
//! or any of `memory`, `disk`, `shared`;
//! disk rows run only for G ≤ 100 unless `OAR_BENCH_DISK_GROUPS_MAX` is
//! raised: each disk member zero-fills an 8 MiB segment, 24 GB at 1,000
//! groups), `OAR_BENCH_IDLE_S` (default 5), `OAR_BENCH_MS` (default 3000),
//! `OAR_BENCH_CLIENTS` (default 64), `OAR_BENCH_WRITE_GROUPS`,
//! `OAR_BENCH_SETUP_S` (give up waiting for leaders after this, default 600),
//! `OAR_BENCH_QUEUE_FRAMES` (`TransportOptions::queue_frames_max`, default
//! 4,096), `OAR_BENCH_QUIESCE_MS` (`RaftOptions::quiesce_after` in milliseconds,
//! `0` for never quiet; default: `GroupOptions::new`'s, 2 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oar::core::{NodeId, Term};
use oar::runtime::{
    DiskStorage, GroupId, GroupOptions, GroupStorage, MemStorage, Node, NodeManager, SharedLog,
};
use oar::storage::{LogOptions, ServerLogOptions, StdFileSystem};

mod common;
#[path = "../tests/runtime/pki.rs"]
mod pki;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Storage {
    Memory,
    Disk,
    /// One `SharedLog` per server.
    Shared,
}

/// What the bench was asked to run.
struct Config {
    idle: Duration,
    load: Duration,
    clients: usize,
    write_groups: Option<usize>,
    setup_max: Duration,
    quiesce_after: Option<Duration>,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// This process's CPU time so far (user + system).
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain integers, for which all-zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Resident memory in bytes (second field of `/proc/self/statm`, pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The three servers and, per group, its three members (`members[g][i]` is
/// node `i + 1` of group `g + 1`).
struct Cluster {
    servers: Vec<NodeManager>,
    members: Vec<[Node; 3]>,
    /// Each server's shared log (storage `shared` only).
    logs: Vec<SharedLog>,
}

impl Cluster {
    async fn start(
        storage: Storage,
        groups: usize,
        dir: &std::path::Path,
        quiesce_after: Option<Duration>,
    ) -> Cluster {
        let mut servers = Vec::new();
        for _ in 0..3 {
            let addr = "127.0.0.1:0".parse().unwrap();
            let security = pki::shared().security(std::net::IpAddr::from([127, 0, 0, 1]));
            let transport = oar::runtime::TransportOptions {
                queue_frames_max: env("OAR_BENCH_QUEUE_FRAMES", 4096),
                ..Default::default()
            };
            let server = NodeManager::bind(addr, security, transport)
                .await
                .expect("bind");
            servers.push(server);
        }
        let peers = common::address_book(&servers);
        let mut logs = Vec::new();
        if storage == Storage::Shared {
            for i in 0..3 {
                let dir = dir.join(format!("n{i}"));
                let fs = Arc::new(StdFileSystem);
                let log = SharedLog::open(fs, &dir, ServerLogOptions::default()).await;
                logs.push(log.expect("shared log"));
            }
        }
        let mut members = Vec::with_capacity(groups);
        for g in 0..groups {
            let group = GroupId(g as u64 + 1);
            let member = |i: usize| {
                let id = NodeId(i as u64 + 1);
                let mut options = GroupOptions::new(group, id, peers.clone());
                options.raft.id = id;
                options.raft.quiesce_after = quiesce_after;
                let storage: Box<dyn GroupStorage> = match storage {
                    Storage::Memory => Box::new(MemStorage::new()),
                    Storage::Disk => Box::new(
                        DiskStorage::open_blocking(
                            Arc::new(StdFileSystem),
                            &dir.join(format!("n{i}/g{}", group.0)),
                            LogOptions::default(),
                        )
                        .expect("storage"),
                    ),
                    Storage::Shared => Box::new(logs[i].storage(group).expect("storage")),
                };
                servers[i]
                    .add_group(options, storage, Box::new(common::Counter(0)))
                    .expect("group")
            };
            members.push([member(0), member(1), member(2)]);
            if g % 64 == 63 {
                // Let the groups already made run while more are added.
                tokio::task::yield_now().await;
            }
        }
        Cluster {
            servers,
            members,
            logs,
        }
    }

    /// The member of group `g` that leads it, when all three agree.
    fn leader(&self, g: usize) -> Option<&Node> {
        let group = &self.members[g];
        let leader = group[0].leader()?;
        if group.iter().all(|m| m.leader() == Some(leader)) {
            group.iter().find(|m| m.id() == leader)
        } else {
            None
        }
    }

    /// Waits until every group is led; false after `max`.
    async fn wait_all_led(&self, max: Duration) -> bool {
        let start = Instant::now();
        let mut from = 0;
        while from < self.members.len() {
            if self.leader(from).is_some() {
                from += 1;
                continue;
            }
            if start.elapsed() > max {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Members not quiet now.
    async fn awake(&self) -> usize {
        let mut awake = 0;
        for member in self.members.iter().flatten() {
            if let Ok(status) = member.status().await
                && !status.quiet
            {
                awake += 1;
            }
        }
        awake
    }

    /// Per group, the highest term among its members.
    fn terms(&self) -> Vec<Term> {
        self.members
            .iter()
            .map(|m| m.iter().map(|n| n.watch().borrow().term).max().unwrap())
            .collect()
    }
}

fn elections(before: &[Term], after: &[Term]) -> u64 {
    before.iter().zip(after).map(|(b, a)| a.0 - b.0).sum()
}

/// One row's figures.
struct Row {
    setup: Option<Duration>,
    idle_cpu: f64,
    bytes_per_member: u64,
    fds: usize,
    writes_per_second: f64,
    cpu_per_write: Duration,
    elections_idle: u64,
    awake: usize,
    dropped: u64,
    elections_load: u64,
    write_errors: u64,
}

async fn measure(storage: Storage, groups: usize, config: &Config) -> Row {
    let dir = tempfile::tempdir().expect("temp dir");
    let rss_before = rss_bytes();
    let start = Instant::now();
    let cluster = Cluster::start(storage, groups, dir.path(), config.quiesce_after).await;
    let led = cluster.wait_all_led(config.setup_max).await;
    let setup = led.then(|| start.elapsed());
    // Let the first heartbeats and the groups' first entries settle (and
    // the groups go quiet, when they may).
    let settle =
        Duration::from_millis(500) + config.quiesce_after.map_or(Duration::ZERO, |q| q * 2);
    tokio::time::sleep(settle).await;
    let bytes_per_member = rss_bytes().saturating_sub(rss_before) / (3 * groups as u64);
    let fds = open_fds();

    let terms_before = cluster.terms();
    let (cpu_start, wall_start) = (cpu_time(), Instant::now());
    tokio::time::sleep(config.idle).await;
    let idle_cpu =
        cpu_time().saturating_sub(cpu_start).as_secs_f64() / wall_start.elapsed().as_secs_f64();
    let terms_idle = cluster.terms();
    let awake = cluster.awake().await;

    let flushed_before: Vec<_> = cluster.logs.iter().map(SharedLog::stats).collect();
    let (writes, cpu, errors) = load(&cluster, groups, config).await;
    for (i, (log, before)) in cluster.logs.iter().zip(flushed_before).enumerate() {
        let after = log.stats();
        let (flushes, batches) = (
            after.flushes - before.flushes,
            after.batches - before.batches,
        );
        eprintln!(
            "  server {i}'s shared log under load: {flushes} flushes, {batches} members' batches, {:.1} a flush",
            batches as f64 / flushes.max(1) as f64
        );
    }
    let terms_load = cluster.terms();
    let dropped = cluster
        .servers
        .iter()
        .map(NodeManager::dropped_outbound_messages)
        .sum();
    for server in &cluster.servers {
        server.shutdown().await;
    }
    Row {
        setup,
        idle_cpu,
        bytes_per_member,
        fds,
        writes_per_second: writes as f64 / config.load.as_secs_f64(),
        cpu_per_write: cpu / (writes.max(1) as u32),
        elections_idle: elections(&terms_before, &terms_idle),
        awake,
        dropped,
        elections_load: elections(&terms_idle, &terms_load),
        write_errors: errors,
    }
}

/// Runs the closed-loop clients; returns the writes done while measuring,
/// the CPU time then and the number of failed writes.
async fn load(cluster: &Cluster, groups: usize, config: &Config) -> (u64, Duration, u64) {
    let write_groups = config
        .write_groups
        .unwrap_or(config.clients)
        .clamp(1, groups);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for c in 0..config.clients {
        let g = c % write_groups;
        let members = cluster.members[g].clone();
        let (measuring, stop, done, errors) = (
            measuring.clone(),
            stop.clone(),
            done.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let command = Bytes::from_static(b"0123456789abcdef");
            while !stop.load(Ordering::Relaxed) {
                let leader = members[0].leader().unwrap_or(NodeId(1));
                let node = &members[(leader.0 as usize - 1).min(2)];
                match node.apply(command.clone()).await {
                    Ok(_) if measuring.load(Ordering::Relaxed) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // warm up
    measuring.store(true, Ordering::Relaxed);
    let cpu_start = cpu_time();
    tokio::time::sleep(config.load).await;
    measuring.store(false, Ordering::Relaxed);
    let cpu = cpu_time().saturating_sub(cpu_start);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    (
        done.load(Ordering::Relaxed),
        cpu,
        errors.load(Ordering::Relaxed),
    )
}

fn main() {
    let groups: Vec<usize> = std::env::var("OAR_BENCH_GROUPS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|g| g.trim().parse().ok())
        .collect();
    let storages = std::env::var("OAR_BENCH_STORAGE").unwrap_or_else(|_| "memory,disk".into());
    let disk_groups_max: usize = env("OAR_BENCH_DISK_GROUPS_MAX", 100);
    let config = Config {
        idle: Duration::from_secs(env("OAR_BENCH_IDLE_S", 5)),
        load: Duration::from_millis(env("OAR_BENCH_MS", 3000)),
        clients: env("OAR_BENCH_CLIENTS", 64),
        write_groups: std::env::var("OAR_BENCH_WRITE_GROUPS")
            .ok()
            .and_then(|v| v.parse().ok()),
        setup_max: Duration::from_secs(env("OAR_BENCH_SETUP_S", 600)),
        quiesce_after: match std::env::var("OAR_BENCH_QUIESCE_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            None => Some(oar::runtime::options::QUIESCE_AFTER),
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "\noar many groups: 3 servers in one process, loopback TCP + mutual TLS, every server \
         in every group; {} clients, 16-byte writes; idle over {:?}, load over {:?}; quiesce after {:?}",
        config.clients, config.idle, config.load, config.quiesce_after
    );
    println!(
        "{:>7} | {:>7} | {:>8} | {:>8} | {:>8} | {:>6} | {:>9} | {:>9} | {:>9} | {:>9} | {:>6} | {:>6} | {:>7}",
        "groups",
        "storage",
        "setup",
        "idle CPU",
        "B/member",
        "fds",
        "writes/s",
        "CPU/write",
        "elect idl",
        "elect ld",
        "errors",
        "awake",
        "dropped"
    );
    for storage in storages.split(',') {
        let storage = match storage.trim() {
            "memory" => Storage::Memory,
            "disk" => Storage::Disk,
            "shared" => Storage::Shared,
            other => panic!("unknown storage {other}"),
        };
        for &g in &groups {
            if storage == Storage::Disk && g > disk_groups_max {
                println!(
                    "{g:>7} | {:>7} | skipped (OAR_BENCH_DISK_GROUPS_MAX={disk_groups_max})",
                    "disk"
                );
                continue;
            }
            let row = runtime.block_on(measure(storage, g, &config));
            let setup = row
                .setup
                .map_or_else(|| "not led".to_string(), |s| format!("{:.1?}", s));
            println!(
                "{g:>7} | {:>7} | {setup:>8} | {:>7.1}% | {:>8} | {:>6} | {:>9.0} | {:>9.1?} | {:>9} | {:>9} | {:>6} | {:>6} | {:>7}",
                format!("{storage:?}").to_lowercase(),
                row.idle_cpu * 100.0,
                row.bytes_per_member,
                row.fds,
                row.writes_per_second,
                row.cpu_per_write,
                row.elections_idle,
                row.elections_load,
                row.write_errors,
                row.awake,
                row.dropped
            );
        }
    }
}
