//! Snapshot catch-up over loopback TCP: how long a lagging follower takes
//! to catch up through a large snapshot (real `DiskStorage` in a temporary
//! directory), with and without the server-wide snapshot throttle, and what
//! that costs the leader's write throughput.
//!
//! Each row binds three fresh servers (the throttle is a bind-time option)
//! running one group whose state machine is a blob store: `fill N` appends
//! 1 MiB of ChaCha8 bytes seeded by N, so N commands make N MiB of state
//! without N MiB of log; `set KEY VALUE` is the small write of the clients.
//! Steps: elect, fill; start closed-loop clients on the leader and measure a
//! baseline window; stop one follower's group (its directory stays); let
//! the clients write 1000 more entries; snapshot the leader and the other
//! follower, which compacts their logs past the stopped one; restart it on
//! its server from its directory and time until it has loaded the leader's
//! snapshot and applied up to the leader's applied index as of that load,
//! counting the leader's writes meanwhile. Last, with the clients stopped,
//! the follower's state must equal the leader's.
//!
//! Columns: `catch-up s` runs from the restart to caught up, and `MB/s` is
//! the snapshot size over it; `copy MB/s` is the rate at which the
//! leader's server served the snapshot's bytes (the part the throttle
//! limits), between the first poll that saw bytes served and the one that
//! saw all of them. MB means MiB, in throttle rates too. The baseline
//! window lasts as long as a throttled copy is expected to (snapshot size
//! over rate), at least 2 s; the catch-up cannot be known in advance, so
//! the two windows are of equal length only roughly.
//!
//! Then one row with a state of files rather than memory, each member in a
//! process of its own, with the members' peak RSS, the copy against a raw
//! loopback copy, and the writes during the leader's save (see
//! `file_state_row`).
//!
//! Run: `cargo bench --bench snapshot_catchup`. Environment:
//! `OAR_BENCH_SNAPSHOT_MB` in-memory state size in MiB (default 100),
//! `OAR_BENCH_THROTTLES` in-memory rows as a comma list of MB/s or `none`
//! (default `none,50,20`; empty: none), `OAR_BENCH_FILE_STATE_MB` the file
//! state's size in MiB (default 256; 0: no such row; the 4 GiB row is
//! 4096), `OAR_BENCH_CLIENTS` (default 16), `OAR_BENCH_PERF_DIR` (a
//! directory: `perf record` the file-state row's catch-up and streamed save
//! into it), `OAR_BENCH_SAVE_MBPS` the members' snapshot save rate limit
//! in MB/s (`TransportOptions::snapshot_save_bytes_per_sec`; default
//! unlimited).

#[path = "../tests/runtime/pki.rs"]
mod pki;

/// A snapshot's `manifest` file: `count digest`, the blobs and their
/// checksum, as both state machines here write it.
fn read_manifest(snapshot: &SnapshotReader) -> Result<(usize, u32), SnapshotError> {
    let manifest = snapshot.read_file("manifest")?;
    std::str::from_utf8(&manifest)
        .ok()
        .and_then(|m| m.split_once(' '))
        .and_then(|(c, d)| Some((c.parse::<usize>().ok()?, d.parse::<u32>().ok()?)))
        .ok_or_else(|| SnapshotError::Invalid("unreadable manifest".to_string()))
}

#[path = "snapshot_catchup/file_blobs.rs"]
mod file_blobs;
#[path = "snapshot_catchup/file_state_row.rs"]
mod file_state_row;
#[path = "snapshot_catchup/member_process.rs"]
mod member_process;
#[path = "snapshot_catchup/raw_copy.rs"]
mod raw_copy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use oar::core::{LogId, LogIndex, NodeId, RaftOptions};
use oar::runtime::{
    Committed, DiskStorage, GroupId, GroupOptions, Node, NodeManager, SnapshotError,
    SnapshotReader, SnapshotView, SnapshotWriter, StateMachine, TransportOptions,
};
use oar::storage::{LogOptions, StdFileSystem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinHandle;

const MIB: usize = 1 << 20;
/// Fill chunks per snapshot file: 16 MiB files.
const CHUNKS_PER_FILE: usize = 16;
const GROUP: GroupId = GroupId(1);
/// Entries the clients write while the follower is down, before the
/// snapshots; far more than the compaction margin.
const WRITES_WHILE_DOWN: u64 = 1000;
/// Keys each client cycles through, so that the key-value part stays small
/// next to the blobs.
const KEYS_PER_CLIENT: u64 = 256;

/// A blob store's state.
#[derive(Default)]
struct Blobs {
    /// Fill chunks in apply order, 1 MiB each.
    chunks: Vec<Bytes>,
    /// The small writes.
    kv: BTreeMap<Bytes, Bytes>,
}

impl Blobs {
    fn apply(&mut self, command: &[u8]) {
        let text = std::str::from_utf8(command).expect("commands are text");
        match text.split_once(' ') {
            Some(("fill", seed)) => self
                .chunks
                .push(fill_chunk(seed.parse().expect("fill seed"))),
            Some(("set", rest)) => {
                let (key, value) = rest.split_once(' ').expect("set KEY VALUE");
                self.kv.insert(
                    Bytes::copy_from_slice(key.as_bytes()),
                    Bytes::copy_from_slice(value.as_bytes()),
                );
            }
            _ => panic!("unknown command {text:?}"),
        }
    }

    /// The key-value part as `len u32 | key | len u32 | value` records.
    fn encode_kv(&self) -> Bytes {
        let mut out = BytesMut::new();
        for (key, value) in &self.kv {
            out.put_u32(key.len() as u32);
            out.put_slice(key);
            out.put_u32(value.len() as u32);
            out.put_slice(value);
        }
        out.freeze()
    }

    fn decode_kv(mut data: Bytes) -> Result<BTreeMap<Bytes, Bytes>, SnapshotError> {
        let field = |data: &mut Bytes| {
            if data.remaining() < 4 {
                return None;
            }
            let len = data.get_u32() as usize;
            (data.remaining() >= len).then(|| data.split_to(len))
        };
        let mut kv = BTreeMap::new();
        while data.has_remaining() {
            let key = field(&mut data);
            let value = field(&mut data);
            let (Some(key), Some(value)) = (key, value) else {
                return Err(SnapshotError::Invalid("truncated kv file".into()));
            };
            kv.insert(key, value);
        }
        Ok(kv)
    }

    /// CRC32C of the chunks, then of the encoded key-value part: equal
    /// states have equal digests.
    fn digest(&self) -> u32 {
        let crc = self
            .chunks
            .iter()
            .fold(0, |crc, chunk| crc32c::crc32c_append(crc, chunk));
        crc32c::crc32c_append(crc, &self.encode_kv())
    }
}

/// The chunk `fill seed` appends; the same on every replica.
fn fill_chunk(seed: u64) -> Bytes {
    let mut chunk = vec![0; MIB];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut chunk);
    Bytes::from(chunk)
}

/// What the bench sees of a member's state machine.
#[derive(Default)]
struct Shared {
    blobs: Mutex<Blobs>,
    /// When a snapshot was last loaded, and through which entry.
    loaded: Mutex<Option<(Instant, LogId)>>,
    /// The size of the last snapshot saved, all files together.
    saved_bytes: AtomicU64,
}

/// The replicated blob store; its state lives in [`Shared`] so that the
/// bench can compare replicas.
struct BlobStore(Arc<Shared>);

impl StateMachine for BlobStore {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut blobs = self.0.blobs.lock().expect("blobs lock");
        for command in commands {
            blobs.apply(&command.data);
        }
        vec![Bytes::new(); commands.len()]
    }

    /// Files `blob-NNNN` of 16 chunks each, `kv`, and a `manifest` with the
    /// chunk count and the state's digest. The view is a fork: the chunks
    /// are shared immutable buffers, so taking it copies only their
    /// handles, and each blob file is streamed chunk by chunk.
    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        let blobs = self.0.blobs.lock().expect("blobs lock");
        let chunks = blobs.chunks.clone();
        let kv = blobs.encode_kv();
        let manifest = format!("{} {}", blobs.chunks.len(), blobs.digest());
        drop(blobs);
        let shared = Arc::clone(&self.0);
        Ok(Box::new(move |writer: &mut SnapshotWriter| {
            let mut bytes = 0;
            for (i, run) in chunks.chunks(CHUNKS_PER_FILE).enumerate() {
                let mut file = writer.create_file(&format!("blob-{i:04}"))?;
                for chunk in run {
                    file.write_at_end(chunk)?;
                }
                bytes += file.len();
                file.finish()?;
            }
            writer.write_file("kv", &kv)?;
            writer.write_file("manifest", manifest.as_bytes())?;
            bytes += (kv.len() + manifest.len()) as u64;
            shared.saved_bytes.store(bytes, Ordering::Relaxed);
            Ok(())
        }))
    }

    fn on_snapshot_load(
        &mut self,
        last: LogId,
        snapshot: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        let invalid = |why: &str| SnapshotError::Invalid(why.to_string());
        let (count, digest) = read_manifest(snapshot)?;
        let mut loaded = Blobs::default();
        // `blob-NNNN` names sort in file order.
        for f in &snapshot.meta().files {
            if !f.name.starts_with("blob-") {
                continue;
            }
            let mut file = snapshot.open_file(&f.name)?;
            while loaded.chunks.len() < count && !file.is_empty() {
                let mut chunk = vec![0; MIB];
                match std::io::Read::read_exact(&mut file, &mut chunk) {
                    Ok(()) => loaded.chunks.push(Bytes::from(chunk)),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if loaded.chunks.len() != count {
            return Err(invalid("blob files do not match the manifest"));
        }
        loaded.kv = Blobs::decode_kv(Bytes::from(snapshot.read_file("kv")?))?;
        if loaded.digest() != digest {
            return Err(invalid("digest mismatch"));
        }
        *self.0.blobs.lock().expect("blobs lock") = loaded;
        *self.0.loaded.lock().expect("loaded lock") = Some((Instant::now(), last));
        Ok(())
    }
}

/// A group member: its handle and its state machine's shared state.
struct Member {
    node: Node,
    shared: Arc<Shared>,
}

/// The group's options for member `id`: snapshots only on request.
fn group_options(id: NodeId, peers: &BTreeMap<NodeId, SocketAddr>) -> GroupOptions {
    let mut options = GroupOptions::new(GROUP, id, peers.clone());
    options.raft = RaftOptions {
        id,
        election_timeout_min: Duration::from_millis(150),
        election_timeout_max: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(30),
        // Few entries behind a snapshot, so that the stopped follower
        // falls behind the log and needs the snapshot.
        compaction_margin: 10,
        ..options.raft
    };
    options.snapshot_interval = None;
    options.snapshot_log_bytes = None;
    options.snapshot_period = None;
    options
}

/// Opens member `id`'s log storage in `dir`.
fn open_storage(id: NodeId, dir: &Path) -> DiskStorage {
    DiskStorage::open_blocking(
        Arc::new(StdFileSystem),
        &dir.join(format!("n{}", id.0)),
        LogOptions::default(),
    )
    .expect("storage")
}

/// Starts (or restarts, from what `dir` holds) member `id` on `server`.
fn start_member(
    server: &NodeManager,
    id: NodeId,
    peers: &BTreeMap<NodeId, SocketAddr>,
    dir: &Path,
) -> Member {
    let options = group_options(id, peers);
    let storage = open_storage(id, dir);
    let shared = Arc::new(Shared::default());
    let node = server
        .add_group(
            options,
            Box::new(storage),
            Box::new(BlobStore(shared.clone())),
        )
        .expect("group");
    Member { node, shared }
}

/// Three servers on loopback ports the OS picks, with this snapshot
/// throttle (MiB/s).
async fn bind_servers(throttle_mib: Option<u64>) -> Vec<NodeManager> {
    let options = TransportOptions {
        snapshot_bytes_per_sec: throttle_mib.map(|mib| mib << 20),
        ..TransportOptions::default()
    };
    let mut servers = Vec::new();
    for _ in 0..3 {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        servers.push(
            NodeManager::bind(addr, pki::shared().security(addr.ip()), options.clone())
                .await
                .expect("bind"),
        );
    }
    servers
}

/// Waits until every member agrees on a leader; returns its position.
async fn wait_for_leader(members: &[Member]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let first = members[0].node.leader();
        if let Some(leader) = first.filter(|_| members.iter().all(|m| m.node.leader() == first)) {
            return members
                .iter()
                .position(|m| m.node.id() == leader)
                .expect("the leader is a member");
        }
        assert!(Instant::now() < deadline, "no leader agreed on within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every node has applied `index`.
async fn wait_applied(nodes: &[&Node], index: LogIndex) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.iter().any(|n| n.applied_index() < index) {
        let applied: Vec<LogIndex> = nodes.iter().map(|n| n.applied_index()).collect();
        assert!(
            Instant::now() < deadline,
            "applied {applied:?}, not {index} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Closed-loop writers of small commands on the leader.
struct Clients {
    stop: Arc<AtomicBool>,
    /// Writes completed.
    writes: Arc<AtomicU64>,
    /// Writes refused or failed (a leadership change shows here).
    errors: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Clients {
    fn start(leader: &Node, count: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let tasks = (0..count)
            .map(|client| {
                let (leader, stop, writes, errors) =
                    (leader.clone(), stop.clone(), writes.clone(), errors.clone());
                tokio::spawn(async move {
                    for n in 0u64.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let key = n % KEYS_PER_CLIENT;
                        let command = format!("set c{client}-k{key} {n:016}");
                        match leader.apply(Bytes::from(command)).await {
                            Ok(_) => writes.fetch_add(1, Ordering::Relaxed),
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                errors.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Clients {
            stop,
            writes,
            errors,
            tasks,
        }
    }

    /// The start of a measuring window.
    fn mark(&self) -> (Instant, u64) {
        (Instant::now(), self.writes.load(Ordering::Relaxed))
    }

    /// Writes/s since `mark`.
    fn rate_since(&self, (start, writes): (Instant, u64)) -> f64 {
        let done = self.writes.load(Ordering::Relaxed) - writes;
        done as f64 / start.elapsed().as_secs_f64()
    }

    /// Stops the clients once their writes in flight end; returns the
    /// error count.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("client task");
        }
        self.errors.load(Ordering::Relaxed)
    }
}

/// Bytes the leader's server has served to snapshot copies so far.
fn served(server: &NodeManager) -> u64 {
    server.stats().snapshot_bytes_served.load(Ordering::Relaxed)
}

/// What the catch-up took.
struct CatchUp {
    /// From the restart to caught up.
    elapsed: Duration,
    /// Bytes/s the leader's server served the snapshot at, between the
    /// first poll that saw bytes served and the one that saw all of them;
    /// `None` if the polls did not see both.
    copy_bytes_per_sec: Option<f64>,
}

/// Waits until the restarted follower has loaded a snapshot and applied
/// what the leader had applied when that load was seen. `served_before` is
/// the leader's server's count from before the restart (the copy may start
/// before this runs).
async fn wait_caught_up(
    leader_server: &NodeManager,
    leader: &Node,
    lagging: &Member,
    (snapshot_bytes, served_before): (u64, u64),
    start: Instant,
    limit: Duration,
) -> CatchUp {
    let (mut first, mut last, mut target) = (None, None, None);
    loop {
        let now = Instant::now();
        let sent = served(leader_server) - served_before;
        if sent > 0 && first.is_none() {
            first = Some((now, sent));
        }
        if sent >= snapshot_bytes && last.is_none() {
            last = Some(now);
        }
        let loaded = *lagging.shared.loaded.lock().expect("loaded lock");
        if loaded.is_some() && target.is_none() {
            target = Some(leader.applied_index());
        }
        if target.is_some_and(|t| lagging.node.applied_index() >= t) {
            let copy_bytes_per_sec = first
                .zip(last)
                .filter(|((at, _), end)| end > at)
                .map(|((at, sent), end)| (snapshot_bytes - sent) as f64 / (end - at).as_secs_f64());
            return CatchUp {
                elapsed: now - start,
                copy_bytes_per_sec,
            };
        }
        if now - start > limit {
            let status = lagging.node.status().await;
            panic!(
                "no catch-up within {limit:?}: {sent} of {snapshot_bytes} snapshot bytes served, \
                 loaded {loaded:?}, follower applied {} vs leader {}, follower status {status:?}",
                lagging.node.applied_index(),
                leader.applied_index()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// With the clients stopped: the follower reaches the leader's applied
/// index with the same state, through the snapshot it loaded.
async fn check_same_state(leader: &Member, follower: &Member, stopped_at: LogIndex) {
    wait_applied(&[&follower.node], leader.node.applied_index()).await;
    let (_, last) = follower.shared.loaded.lock().unwrap().expect("loaded");
    assert!(
        last.index > stopped_at,
        "the snapshot loaded ({last}) does not cover the entries written while the follower was down"
    );
    let leader_digest = leader.shared.blobs.lock().unwrap().digest();
    let follower_digest = follower.shared.blobs.lock().unwrap().digest();
    assert_eq!(leader_digest, follower_digest, "follower state differs");
}

/// One row of the table.
struct Row {
    throttle_mib: Option<u64>,
    snapshot_bytes: u64,
    catch_up: CatchUp,
    writes_during: f64,
    writes_baseline: f64,
    baseline: Duration,
    client_errors: u64,
}

/// The baseline window: as long as a throttled copy should take, at
/// least 2 s.
fn baseline_window(throttle_mib: Option<u64>, fill_mib: u64) -> Duration {
    let expected = throttle_mib.map_or(0.0, |rate| fill_mib as f64 / rate as f64);
    Duration::from_secs_f64(expected.max(2.0))
}

/// One row on fresh servers throttled at `throttle_mib` MiB/s: the steps
/// of the module doc.
async fn run_row(throttle_mib: Option<u64>, fill_mib: u64, clients: usize) -> Row {
    let dir = tempfile::tempdir().expect("temp dir");
    let servers = bind_servers(throttle_mib).await;
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=3)
        .map(|i| (NodeId(i), servers[i as usize - 1].local_addr()))
        .collect();
    let mut members: Vec<Member> = (0..3)
        .map(|i| start_member(&servers[i], NodeId(i as u64 + 1), &peers, dir.path()))
        .collect();
    let l = wait_for_leader(&members).await;
    let (lag, other) = ((l + 1) % 3, (l + 2) % 3);
    for seed in 0..fill_mib {
        let command = Bytes::from(format!("fill {seed}"));
        members[l].node.apply(command).await.expect("fill");
    }
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    wait_applied(&nodes, members[l].node.applied_index()).await;

    let writers = Clients::start(&members[l].node, clients);
    // The window starts with every client's pipeline full.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = baseline_window(throttle_mib, fill_mib);
    let mark = writers.mark();
    tokio::time::sleep(baseline).await;
    let writes_baseline = writers.rate_since(mark);

    // The follower stops; its directory keeps its log.
    members[lag].node.shutdown().await;
    let stopped_at = members[l].node.applied_index();
    let past = LogIndex(stopped_at.0 + WRITES_WHILE_DOWN);
    wait_applied(&[&members[l].node], past).await;
    members[l].node.snapshot().await.expect("leader snapshot");
    members[other]
        .node
        .snapshot()
        .await
        .expect("follower snapshot");
    let snapshot_bytes = members[l].shared.saved_bytes.load(Ordering::Relaxed);

    let limit = Duration::from_secs(60) + baseline * 3;
    let served_before = served(&servers[l]);
    let mark = writers.mark();
    let start = Instant::now();
    members[lag] = start_member(&servers[lag], NodeId(lag as u64 + 1), &peers, dir.path());
    let catch_up = wait_caught_up(
        &servers[l],
        &members[l].node,
        &members[lag],
        (snapshot_bytes, served_before),
        start,
        limit,
    )
    .await;
    let writes_during = writers.rate_since(mark);
    let client_errors = writers.stop().await;
    check_same_state(&members[l], &members[lag], stopped_at).await;
    for server in &servers {
        server.shutdown().await;
    }
    Row {
        throttle_mib,
        snapshot_bytes,
        catch_up,
        writes_during,
        writes_baseline,
        baseline,
        client_errors,
    }
}

/// Prints `row` as a markdown table line.
fn print_row(row: &Row) {
    let mib = row.snapshot_bytes as f64 / MIB as f64;
    let throttle = row
        .throttle_mib
        .map_or_else(|| "none".to_string(), |r| format!("{r} MB/s"));
    let copy = row.catch_up.copy_bytes_per_sec.map_or_else(
        || "-".to_string(),
        |rate| format!("{:.1}", rate / MIB as f64),
    );
    println!(
        "| {throttle} | {mib:.1} | {:.2} | {:.1} | {copy} | {:.0} | {:.0} ({:.1} s) |",
        row.catch_up.elapsed.as_secs_f64(),
        mib / row.catch_up.elapsed.as_secs_f64(),
        row.writes_during,
        row.writes_baseline,
        row.baseline.as_secs_f64(),
    );
}

/// The environment variable `name` parsed, or `default`.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Ok(id) = std::env::var(member_process::MEMBER_ID_ENV) {
        member_process::run(id.parse().expect("a member id"));
        return;
    }
    let fill_mib: u64 = env_or("OAR_BENCH_SNAPSHOT_MB", 100);
    let file_state_mib: u64 = env_or("OAR_BENCH_FILE_STATE_MB", 256);
    let clients: usize = env_or("OAR_BENCH_CLIENTS", 16);
    let throttles: Vec<Option<u64>> = std::env::var("OAR_BENCH_THROTTLES")
        .unwrap_or_else(|_| "none,50,20".into())
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| match t.trim() {
            "none" => None,
            rate => Some(rate.parse().expect("a throttle is `none` or MB/s")),
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "\noar snapshot catch-up: 3 nodes on loopback TCP with DiskStorage, {fill_mib} MiB of \
         state, {clients} closed-loop clients writing small commands to the leader\n"
    );
    println!(
        "| throttle | snapshot MB | catch-up s | MB/s | copy MB/s | leader writes/s during \
         | leader writes/s baseline (window) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for throttle in throttles {
        let row = runtime.block_on(run_row(throttle, fill_mib, clients));
        print_row(&row);
        if row.client_errors > 0 {
            notes.push(format!(
                "throttle {throttle:?}: {} client writes failed (leadership changed?)",
                row.client_errors
            ));
        }
    }
    for note in notes {
        println!("\nnote: {note}");
    }
    if file_state_mib > 0 {
        let row = file_state_row::run(file_state_mib, clients);
        file_state_row::print(&row, clients);
    }
}
