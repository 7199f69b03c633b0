//! The body of one simulated server, run at each (re)start of its madsim
//! node: bind its one `NodeManager` (one listener, as in production), then
//! open and start its member of every group over its simulated disk.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oar::core::{NodeId, RaftOptions};
use oar::runtime::{
    ClusterKeyAuthenticator, DiskStorage, GroupOptions, GroupStorage, NodeManager, Security,
    SessionOptions, SharedLog,
};
use oar::storage::{FileSystem, LogOptions, MemFileSystem, ServerLogOptions, StorageError};
use serde_json::json;

use crate::blackhole::{BlackholeAuthenticator, Blackholes};
use crate::cluster::{SimCluster, transport_options};
use crate::durability::{Promises, RecoveredState};
use crate::groups::{SimGroup, group_dir, group_salt};
use crate::kv_machine::{KvMachine, MachineDisk};
use crate::observe::Observations;
use crate::reads::DriftClock;
use crate::trace::Trace;

/// Small segments, so that runs rotate and recover many of them.
pub(crate) fn log_options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 64 << 10,
        segment_bytes_first: 64 << 10,
        preallocate: true,
        direct_io: true,
    }
}

/// Where a server keeps its one log and its groups' snapshots with
/// `--shared-log`.
pub(crate) fn server_dir() -> PathBuf {
    PathBuf::from("/data/server")
}

/// The shared log's options: small segments, so that runs rotate, reclaim
/// and rewrite forward.
pub(crate) fn server_log_options() -> ServerLogOptions {
    ServerLogOptions {
        segment_bytes_max: 32 << 10,
        preallocate: true,
        closed_segments_max: 1,
    }
}

/// What a simulated server needs at each (re)start; it outlives crashes.
#[derive(Clone)]
pub(crate) struct ServerContext {
    pub(crate) id: NodeId,
    /// Its index among the servers.
    pub(crate) index: usize,
    pub(crate) seed: u64,
    pub(crate) raft: RaftOptions,
    /// Servers `1..=voters` start as each group's voters.
    pub(crate) voters: usize,
    /// The groups' client sessions, if they keep them.
    pub(crate) sessions: Option<SessionOptions>,
    /// Each group's state machine store, kept across restarts, if the
    /// machines have one (by group index).
    pub(crate) machine_disks: Option<Vec<MachineDisk>>,
    pub(crate) fs: MemFileSystem,
    pub(crate) peers: BTreeMap<NodeId, SocketAddr>,
    /// The groups it hosts a member of.
    pub(crate) groups: Vec<SimGroup>,
    /// The group (by index) whose member on this server misreports what it
    /// applies: a planted divergence, for tests.
    pub(crate) planted_divergence: Option<usize>,
    /// One log for all its groups (`SharedLog`) instead of one per member.
    pub(crate) shared_log: bool,
    pub(crate) server: Arc<Mutex<Option<NodeManager>>>,
    pub(crate) blackholes: Blackholes,
    pub(crate) promises: Promises,
    pub(crate) trace: Trace,
    /// Where the running server's clock is published for the nemesis.
    pub(crate) clocks: crate::reads::Clocks,
}

/// The simulated cluster's key and id: every server is authenticated, as
/// in production, with the challenge–response madsim can replay (TLS draws
/// on the OS's randomness and clock).
pub const CLUSTER_KEY: &[u8] = b"oar-sim cluster key";
/// The simulated cluster's id.
pub const CLUSTER_ID: &str = "oar-sim";

/// A server's security settings: its nonces drawn from the run's seed,
/// the node and the time of this start, so that every start differs and
/// every replay is the same; its streams exposed to the blackholes.
fn security(ctx: &ServerContext, ip: IpAddr) -> Security {
    let (seed, id) = (ctx.seed, ctx.id);
    let nonce_seed = seed ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ SimCluster::now_ns();
    let authenticator = Arc::new(ClusterKeyAuthenticator::new(CLUSTER_KEY, nonce_seed));
    let authenticator = BlackholeAuthenticator::new(authenticator, ip, ctx.blackholes.clone())
        .tapped(ctx.promises.clone())
        // One group's streams stay madsim's own (its seeds replay as they
        // always did); many groups' share connections past madsim's rate.
        .paced(ctx.groups.len() > 1);
    Security::new(Arc::new(authenticator), CLUSTER_ID, Vec::new())
}

/// The body of a simulated server: bind, start its member of each group,
/// serve.
pub(crate) async fn serve(ctx: ServerContext) {
    let addr = ctx.peers[&ctx.id];
    let transport = transport_options();
    let security = security(&ctx, addr.ip());
    let server = NodeManager::bind(addr, security, transport)
        .await
        .expect("bind in simulation");
    *ctx.server.lock().expect("server") = Some(server.clone());
    let shared_log = match ctx.shared_log {
        true => match open_shared_log(&ctx).await {
            Some(log) => Some(log),
            // Refused: every member on this server stays down.
            None => return std::future::pending::<()>().await,
        },
        false => None,
    };
    // One clock a server, drawn when its first member starts.
    let mut clock = None;
    for group in &ctx.groups {
        start_member(&ctx, &server, group, shared_log.as_ref(), &mut clock).await;
    }
    std::future::pending::<()>().await;
}

/// Opens this server's shared log; `None` if it refused to open (detected
/// corruption), every group's member then marked unrecoverable.
async fn open_shared_log(ctx: &ServerContext) -> Option<SharedLog> {
    let fs: Arc<dyn FileSystem> = Arc::new(ctx.fs.clone());
    match SharedLog::open(fs, &server_dir(), server_log_options()).await {
        Ok(log) => Some(log),
        Err(e @ StorageError::Locked { .. }) => panic!("{}: {e}", ctx.id),
        Err(e) => {
            ctx.trace.event(
                SimCluster::now_ns(),
                "storage_refused",
                json!({ "node": ctx.id.0, "error": e.to_string() }),
            );
            for group in &ctx.groups {
                *group.unrecoverable[ctx.index]
                    .lock()
                    .expect("unrecoverable") = true;
            }
            None
        }
    }
}

/// This server's storage of `group`: its member's view of the shared log
/// if there is one, its own log otherwise.
async fn open_storage(
    ctx: &ServerContext,
    group: &SimGroup,
    shared_log: Option<&SharedLog>,
) -> Result<Box<dyn GroupStorage>, StorageError> {
    match shared_log {
        Some(log) => Ok(Box::new(log.storage(group.id())?)),
        None => {
            let fs: Arc<dyn FileSystem> = Arc::new(ctx.fs.clone());
            let storage = DiskStorage::open(fs, &group_dir(group.index), log_options()).await?;
            Ok(Box::new(storage))
        }
    }
}

/// Opens this server's storage of `group` and starts its member; a storage
/// that refuses to open (detected corruption) leaves the member down and
/// marks it unrecoverable.
async fn start_member(
    ctx: &ServerContext,
    server: &NodeManager,
    group: &SimGroup,
    shared_log: Option<&SharedLog>,
    clock: &mut Option<Arc<DriftClock>>,
) {
    let (id, seed, salt) = (ctx.id, ctx.seed, group_salt(group.index));
    // The first group's events read as the single group's always did.
    let fields = |mut fields: serde_json::Value| {
        if group.index > 0 {
            fields["group"] = json!(group.id().0);
        }
        fields
    };
    let storage = match open_storage(ctx, group, shared_log).await {
        Ok(storage) => storage,
        // Every restart follows a kill, which ends the old process: its lock
        // still held would mean its storage outlived it.
        Err(e @ StorageError::Locked { .. }) => panic!("{id}: {e}"),
        Err(e) => {
            // Detected corruption (or an injected error at open): this
            // member cannot vouch for its log and stays down.
            ctx.trace.event(
                SimCluster::now_ns(),
                "storage_refused",
                fields(json!({ "node": id.0, "error": e.to_string() })),
            );
            *group.unrecoverable[ctx.index]
                .lock()
                .expect("unrecoverable") = true;
            return;
        }
    };
    let mut options = GroupOptions::new(group.id(), id, ctx.peers.clone());
    options.initial_voters = Some((1..=ctx.voters as u64).map(NodeId).collect());
    options.snapshot_interval = crate::options::swarm_snapshot_interval(seed);
    options.sessions = ctx.sessions.clone();
    options.raft = RaftOptions {
        id,
        rng_seed: seed ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt,
        ..ctx.raft.clone()
    };
    let clock = clock
        .get_or_insert_with(|| {
            let clock = crate::reads::node_clock(seed, id, &options.raft);
            ctx.clocks.lock().expect("clocks").insert(id, clock.clone());
            clock
        })
        .clone();
    options.clock = Some(clock);
    let mut machine = KvMachine::new(id, group.observations.clone())
        .with_trace(ctx.trace.clone(), SimCluster::now_ns);
    if let Some(disks) = &ctx.machine_disks {
        machine = machine.on_disk(disks[group.index].clone());
    }
    if ctx.groups.len() > 1 {
        machine = machine.in_group(group.id().0);
    }
    if ctx.planted_divergence == Some(group.index) && ctx.index == 0 {
        machine = machine.misreporting();
    }
    let map = machine.shared_map();
    let disk = {
        use rand::SeedableRng;
        // Each start draws its own latencies, still from the run's seed.
        let start = SimCluster::now_ns();
        SlowDisk {
            inner: storage,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ id.0 ^ start ^ salt),
            id,
            group: group.id(),
            promises: ctx.promises.clone(),
            observations: group.observations.clone(),
        }
    };
    let node = server
        .add_group(options, Box::new(disk), Box::new(machine))
        .expect("group starts");
    // Together, with no await between: readers see one incarnation.
    group.read_maps.lock().expect("read maps").insert(id, map);
    *group.members[ctx.index].lock().expect("member") = Some(node);
    ctx.trace.event(
        SimCluster::now_ns(),
        "started",
        fields(json!({ "node": id.0 })),
    );
}

/// The real storage with a simulated device latency: a batch becomes
/// durable only after a delay drawn from the seed, so that a crash can land
/// between a write being issued and it being durable.
struct SlowDisk {
    inner: Box<dyn GroupStorage>,
    rng: rand_chacha::ChaCha8Rng,
    /// Checks at recovery that the member kept what it promised.
    id: NodeId,
    group: oar::runtime::GroupId,
    promises: Promises,
    observations: Arc<Mutex<Observations>>,
}

impl oar::runtime::GroupStorage for SlowDisk {
    fn recover(&mut self) -> Result<oar::storage::Recovered, oar::runtime::StorageFailure> {
        let recovered = self.inner.recover()?;
        // A snapshot that does not load is the runtime's to report.
        let snapshot = self.inner.snapshots().latest().ok().flatten();
        let last_log = recovered
            .entries
            .last()
            .map_or(recovered.last_purged, |e| e.id);
        let state = RecoveredState {
            term: recovered.hard_state.term,
            voted_for: recovered.hard_state.voted_for,
            last_log,
            purged: recovered.last_purged.index,
            snapshot: snapshot.map(|s| s.last_included.index),
        };
        let lost = self.promises.check(self.group, self.id, state);
        let mut observations = self.observations.lock().expect("observations");
        for violation in lost {
            observations.violation(violation);
        }
        Ok(recovered)
    }

    fn persist(
        &mut self,
        ops: Vec<oar::storage::WriteOp>,
    ) -> Result<Vec<oar::storage::Durable>, oar::runtime::StorageFailure> {
        for op in &ops {
            if let oar::storage::WriteOp::Entries(entries) = op {
                self.promises.replacing(self.group, self.id, entries);
            }
        }
        self.inner.persist(ops)
    }

    fn device_latency(&mut self) -> Duration {
        use rand::RngExt;
        // Mostly fast, sometimes a slow fsync.
        let micros = if self.rng.random_range(0..10) == 0 {
            self.rng.random_range(2_000..20_000)
        } else {
            self.rng.random_range(50..2_000)
        };
        Duration::from_micros(micros)
    }

    fn snapshots(&self) -> std::sync::Arc<dyn oar::runtime::SnapshotStorage> {
        self.inner.snapshots()
    }

    fn reads_entries(&self) -> bool {
        self.inner.reads_entries()
    }

    fn read_entries(
        &mut self,
        load: &oar::core::EntriesLoad,
    ) -> Result<Vec<oar::core::Entry>, oar::runtime::StorageFailure> {
        self.inner.read_entries(load)
    }
}
