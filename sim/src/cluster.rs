//! A cluster of simulated servers, each a madsim node running the
//! production runtime (`NodeManager`, group task, log writer, apply loop)
//! over the simulated disk, with crash, restart, pause and partition
//! controls.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use oar::core::{NodeId, RaftOptions};

use oar::runtime::{
    ClusterKeyAuthenticator, DiskStorage, GroupId, GroupOptions, Node, NodeManager, Security,
    SessionOptions, TransportOptions,
};
use oar::storage::{FileSystem, LogOptions, LogWriter, MemFileSystem, StorageError};
use serde_json::json;

use crate::blackhole::{BlackholeAuthenticator, Blackholes};
use crate::durability::{Promises, RecoveredState};
use crate::final_checks::DurableLog;
use crate::kv_machine::{KvMachine, MachineDisk};
use crate::observe::Observations;
use crate::trace::Trace;

/// The Raft group every simulated server runs.
pub const GROUP: GroupId = GroupId(1);
const RAFT_PORT: u16 = 7000;

/// Where a node keeps its group's storage on its simulated disk.
pub fn data_dir() -> PathBuf {
    PathBuf::from("/data/group_1")
}

/// One simulated server.
pub struct SimNode {
    /// Its Raft id.
    pub id: NodeId,
    /// Its madsim node.
    pub madsim: NodeHandle,
    /// Its disk; outlives crashes.
    pub fs: MemFileSystem,
    /// The running member's handle, `None` while down.
    pub member: Arc<Mutex<Option<Node>>>,
    /// The running server, `None` while down: its refusal counters.
    pub server: Arc<Mutex<Option<NodeManager>>>,
    /// Killed and not restarted.
    pub down: bool,
    /// Paused (its tasks do not run).
    pub paused: bool,
    /// Its storage refused to open after a crash (detected corruption).
    pub unrecoverable: Arc<Mutex<bool>>,
    /// An I/O error was injected and no power loss cleared it since: its
    /// group may have stopped (fail-stop) and needs a power cycle.
    pub disk_error_injected: bool,
}

/// How each server's state machine is set up.
pub struct MachineSetup {
    /// The group's client sessions, if it keeps them.
    pub sessions: Option<SessionOptions>,
    /// Each state machine keeps a store of its own across restarts.
    pub on_disk: bool,
}

/// The simulated servers.
pub struct SimCluster {
    /// The servers, in id order.
    pub nodes: Vec<SimNode>,
    /// A node outside the cluster for admin tools (membership changes).
    admin: NodeHandle,
    /// A machine outside the cluster and its address book, for the
    /// nemesis' stranger.
    stranger: NodeHandle,
    /// Every server's Raft address.
    peers: BTreeMap<NodeId, SocketAddr>,
    /// Paths that swallow what is sent on them.
    blackholes: Blackholes,
    /// What every server told its peers was durable.
    promises: Promises,
    handle: Handle,
    trace: Trace,
    /// Each running state machine's map, for barrier reads.
    read_maps: crate::reads::ReadMaps,
    /// Each running server's clock, for the nemesis to aim.
    clocks: crate::reads::Clocks,
}

fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

/// The stranger's IP: on the cluster's network, in nobody's address book.
pub const STRANGER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1));

impl SimCluster {
    /// Starts `n` servers.
    pub fn start(
        n: usize,
        seed: u64,
        raft: RaftOptions,
        voters: usize,
        machine: MachineSetup,
        observations: Arc<Mutex<Observations>>,
        trace: Trace,
    ) -> SimCluster {
        let handle = Handle::current();
        let peers: BTreeMap<NodeId, SocketAddr> = (0..n)
            .map(|i| (NodeId(i as u64 + 1), SocketAddr::new(node_ip(i), RAFT_PORT)))
            .collect();
        let blackholes = Blackholes::default();
        let promises = Promises::default();
        let read_maps = crate::reads::ReadMaps::default();
        let clocks = crate::reads::Clocks::default();
        let nodes = (0..n)
            .map(|i| {
                let id = NodeId(i as u64 + 1);
                let fs = MemFileSystem::new(seed.wrapping_add(i as u64).wrapping_mul(31));
                let member = Arc::new(Mutex::new(None));
                let server = Arc::new(Mutex::new(None));
                let unrecoverable = Arc::new(Mutex::new(false));
                let context = ServerContext {
                    id,
                    seed,
                    raft: raft.clone(),
                    voters,
                    sessions: machine.sessions.clone(),
                    machine_disk: machine.on_disk.then(MachineDisk::default),
                    fs: fs.clone(),
                    peers: peers.clone(),
                    observations: observations.clone(),
                    member: member.clone(),
                    server: server.clone(),
                    unrecoverable: unrecoverable.clone(),
                    blackholes: blackholes.clone(),
                    promises: promises.clone(),
                    trace: trace.clone(),
                    read_maps: read_maps.clone(),
                    clocks: clocks.clone(),
                };
                // Runs at every (re)start of the madsim node.
                let init = move || serve(context.clone());
                let madsim = handle
                    .create_node()
                    .name(format!("n{}", id.0))
                    .ip(node_ip(i))
                    .init(init)
                    .build();
                SimNode {
                    id,
                    madsim,
                    fs,
                    member,
                    server,
                    down: false,
                    paused: false,
                    unrecoverable,
                    disk_error_injected: false,
                }
            })
            .collect();
        let admin = handle
            .create_node()
            .name("admin")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)))
            .build();
        let stranger = handle
            .create_node()
            .name("stranger")
            .ip(STRANGER_IP)
            .build();
        SimCluster {
            nodes,
            read_maps,
            clocks,
            admin,
            stranger,
            peers,
            blackholes,
            promises,
            handle,
            trace,
        }
    }

    /// Each running state machine's map, for barrier reads.
    pub fn read_maps(&self) -> crate::reads::ReadMaps {
        Arc::clone(&self.read_maps)
    }

    /// Each running server's clock.
    pub fn clocks(&self) -> crate::reads::Clocks {
        Arc::clone(&self.clocks)
    }

    /// Simulated nanoseconds since the run began.
    pub fn now_ns() -> u64 {
        madsim::time::TimeHandle::current().elapsed().as_nanos() as u64
    }

    /// The node admin tools run on.
    pub fn admin_node(&self) -> &NodeHandle {
        &self.admin
    }

    /// The machine the nemesis' stranger runs on.
    pub fn stranger_node(&self) -> &NodeHandle {
        &self.stranger
    }

    /// Server `i`'s Raft address.
    pub fn raft_addr(&self, i: usize) -> SocketAddr {
        self.peers[&self.nodes[i].id]
    }

    /// Crashes server `i` with a power loss: its tasks die and its disk
    /// loses unsynced writes.
    pub fn kill(&mut self, i: usize) {
        self.stop(i, true);
    }

    /// Kills server `i`'s process while the power stays on: its tasks die,
    /// and everything it wrote, synced or not, stays on its disk (for the
    /// next start to recover, and to make durable before relying on it).
    pub fn kill_process(&mut self, i: usize) {
        self.stop(i, false);
    }

    fn stop(&mut self, i: usize, power_loss: bool) {
        let node = &mut self.nodes[i];
        self.handle.kill(node.madsim.id());
        *node.member.lock().expect("member") = None;
        *node.server.lock().expect("server") = None;
        match power_loss {
            // A power loss clears the disk's injected errors too.
            true => {
                node.fs.crash();
                node.disk_error_injected = false;
            }
            // An injected error still armed outlives the process: the next
            // start may fail-stop on it, and must count as unwell.
            false => node.fs.process_died(),
        }
        node.down = true;
        node.paused = false;
        let event = if power_loss { "kill" } else { "kill_process" };
        let how = if power_loss {
            "power loss"
        } else {
            "process kill"
        };
        self.promises.crashed(node.id, how, Self::now_ns());
        self.trace
            .event(Self::now_ns(), event, json!({ "node": node.id.0 }));
    }

    /// A power cycle of a stopped server's disk: unsynced writes go, and
    /// so do injected errors still armed.
    pub fn cut_power(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        debug_assert!(node.down, "cut_power is for stopped servers");
        node.fs.crash();
        node.disk_error_injected = false;
        self.trace
            .event(Self::now_ns(), "cut_power", json!({ "node": node.id.0 }));
    }

    /// Restarts a killed server from its disk.
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        self.handle.restart(node.madsim.id());
        node.down = false;
        self.trace
            .event(Self::now_ns(), "restart", json!({ "node": node.id.0 }));
    }

    /// Stops scheduling server `i`'s tasks (a stalled process).
    pub fn pause(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        self.handle.pause(node.madsim.id());
        node.paused = true;
        self.trace
            .event(Self::now_ns(), "pause", json!({ "node": node.id.0 }));
    }

    /// Lets a paused server run again.
    pub fn resume(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        self.handle.resume(node.madsim.id());
        node.paused = false;
        self.trace
            .event(Self::now_ns(), "resume", json!({ "node": node.id.0 }));
    }

    /// Cuts the one-way link from server `from` to server `to`.
    pub fn clog_link(&self, from: usize, to: usize) {
        NetSim::current().clog_link(self.nodes[from].madsim.id(), self.nodes[to].madsim.id());
        let (a, b) = (self.nodes[from].id.0, self.nodes[to].id.0);
        self.trace
            .event(Self::now_ns(), "clog_link", json!({ "from": a, "to": b }));
    }

    /// Splits the servers into two sides that cannot reach each other.
    pub fn partition(&self, side: &[usize]) {
        let net = NetSim::current();
        for &a in side {
            for b in (0..self.nodes.len()).filter(|b| !side.contains(b)) {
                net.clog_link(self.nodes[a].madsim.id(), self.nodes[b].madsim.id());
                net.clog_link(self.nodes[b].madsim.id(), self.nodes[a].madsim.id());
            }
        }
        let ids: Vec<u64> = side.iter().map(|&i| self.nodes[i].id.0).collect();
        self.trace
            .event(Self::now_ns(), "partition", json!({ "side": ids }));
    }

    /// Cuts every link between `left` and `right`; `bridge` still reaches both.
    pub fn bridge(&self, bridge: usize, left: &[usize], right: &[usize]) {
        let net = NetSim::current();
        for &a in left {
            for &b in right {
                net.clog_link(self.nodes[a].madsim.id(), self.nodes[b].madsim.id());
                net.clog_link(self.nodes[b].madsim.id(), self.nodes[a].madsim.id());
            }
        }
        let ids = |side: &[usize]| side.iter().map(|&i| self.nodes[i].id.0).collect::<Vec<_>>();
        let fields =
            json!({ "bridge": self.nodes[bridge].id.0, "left": ids(left), "right": ids(right) });
        self.trace.event(Self::now_ns(), "bridge", fields);
    }

    /// Blackholes the paths from `side` to everyone else (and back,
    /// unless `one_way`): connections on them swallow every write from now
    /// on, and new ones hang, until the network heals (the swallowing
    /// connections stay dead until replaced).
    pub fn blackhole(&self, side: &[usize], one_way: bool) {
        for &a in side {
            for b in (0..self.nodes.len()).filter(|b| !side.contains(b)) {
                self.blackholes.cut(node_ip(a), node_ip(b));
                if !one_way {
                    self.blackholes.cut(node_ip(b), node_ip(a));
                }
            }
        }
        let ids: Vec<u64> = side.iter().map(|&i| self.nodes[i].id.0).collect();
        self.trace.event(
            Self::now_ns(),
            "blackhole",
            json!({ "side": ids, "one_way": one_way }),
        );
    }

    /// Restores every link and normal latency; connections a blackhole
    /// swallowed stay dead.
    pub fn heal_network(&self) {
        self.blackholes.heal();
        let net = NetSim::current();
        for a in &self.nodes {
            for b in &self.nodes {
                net.unclog_link(a.madsim.id(), b.madsim.id());
            }
        }
        net.update_config(|c| c.send_latency = Duration::from_millis(1)..Duration::from_millis(10));
        self.trace.event(Self::now_ns(), "heal_network", json!({}));
    }

    /// Makes every message fast (0.5–1.5 ms) until the next heal or slow
    /// link: elections and commits then fit in a lease's drift margin.
    pub fn fast_network(&self) {
        let fast = Duration::from_micros(500)..Duration::from_micros(1500);
        NetSim::current().update_config(|c| c.send_latency = fast);
        self.trace.event(Self::now_ns(), "fast_network", json!({}));
    }

    /// Makes every message slow for a while.
    pub fn slow_network(&self, max: Duration) {
        NetSim::current().update_config(|c| c.send_latency = Duration::from_millis(1)..max);
        self.trace.event(
            Self::now_ns(),
            "slow_network",
            json!({ "max_ms": max.as_millis() as u64 }),
        );
    }

    /// What every server told its peers was durable.
    pub fn promises(&self) -> &Promises {
        &self.promises
    }

    /// The handle of server `i`'s member, if it runs.
    pub fn member(&self, i: usize) -> Option<Node> {
        self.member_of(&self.nodes[i])
    }

    fn member_of(&self, node: &SimNode) -> Option<Node> {
        if node.down || node.paused {
            return None;
        }
        node.member.lock().expect("member").clone()
    }

    /// The server the running members name as leader most often, if any.
    pub fn leader_index(&self) -> Option<usize> {
        let mut votes = BTreeMap::new();
        for i in 0..self.nodes.len() {
            if let Some(leader) = self.member(i).and_then(|m| m.leader()) {
                *votes.entry(leader).or_insert(0) += 1;
            }
        }
        let (&leader, _) = votes
            .iter()
            .max_by_key(|&(id, count)| (*count, std::cmp::Reverse(*id)))?;
        self.nodes.iter().position(|n| n.id == leader)
    }

    /// Every member handle (running or not), shared with the clients.
    pub fn member_slots(&self) -> Vec<Arc<Mutex<Option<Node>>>> {
        self.nodes.iter().map(|n| n.member.clone()).collect()
    }

    /// Servers whose storage refused to open (corruption was detected).
    pub fn unrecoverable(&self, i: usize) -> bool {
        *self.nodes[i].unrecoverable.lock().expect("unrecoverable")
    }

    /// Stops every server and reads each durable log back from its disk.
    pub fn durable_logs(&mut self) -> BTreeMap<NodeId, DurableLog> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].down {
                self.handle.kill(self.nodes[i].madsim.id());
                // The process is gone (not the power): what it wrote stays.
                self.nodes[i].fs.process_died();
                self.nodes[i].down = true;
                *self.nodes[i].server.lock().expect("server") = None;
            }
        }
        self.nodes
            .iter()
            .filter_map(|node| {
                let fs: Arc<dyn FileSystem> = Arc::new(node.fs.clone());
                let (_, recovered) = match LogWriter::open(fs, &data_dir(), log_options()) {
                    Ok(opened) => opened,
                    // A killed server's tasks are gone with it: a held lock
                    // would mean its storage outlived it.
                    Err(e @ StorageError::Locked { .. }) => panic!("{}: {e}", node.id),
                    // Detected corruption: the node is unrecoverable.
                    Err(_) => return None,
                };
                let log = DurableLog {
                    start: recovered.last_purged,
                    entries: recovered.entries,
                };
                Some((node.id, log))
            })
            .collect()
    }
}

/// The servers' transport: no kernel watches a simulated stream, so the
/// transport's own probe is what finds a blackholed connection; a tighter
/// deadline than production's, as simulated latencies stay under 200 ms
/// and no queue runs deep.
pub fn transport_options() -> TransportOptions {
    TransportOptions {
        write_timeout: Duration::from_millis(500),
        probe_timeout: Duration::from_secs(1),
        ..TransportOptions::default()
    }
}

/// Small segments, so that runs rotate and recover many of them.
fn log_options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 64 << 10,
        segment_bytes_first: 64 << 10,
        preallocate: true,
        direct_io: true,
    }
}

/// What a simulated server needs at each (re)start; it outlives crashes.
#[derive(Clone)]
struct ServerContext {
    id: NodeId,
    seed: u64,
    raft: RaftOptions,
    /// Servers `1..=voters` start as the group's voters.
    voters: usize,
    /// The group's client sessions, if it keeps them.
    sessions: Option<SessionOptions>,
    /// The state machine's own store, kept across restarts, if it has one.
    machine_disk: Option<MachineDisk>,
    fs: MemFileSystem,
    peers: BTreeMap<NodeId, SocketAddr>,
    observations: Arc<Mutex<Observations>>,
    member: Arc<Mutex<Option<Node>>>,
    server: Arc<Mutex<Option<NodeManager>>>,
    unrecoverable: Arc<Mutex<bool>>,
    blackholes: Blackholes,
    promises: Promises,
    trace: Trace,
    /// Where the running state machine's map is published for readers.
    read_maps: crate::reads::ReadMaps,
    /// Where the running server's clock is published for the nemesis.
    clocks: crate::reads::Clocks,
}

/// The simulated cluster's key and id: every server is authenticated, as
/// in production, with the challenge–response madsim can replay (TLS draws
/// on the OS's randomness and clock).
pub const CLUSTER_KEY: &[u8] = b"oar-sim cluster key";
/// The simulated cluster's id.
pub const CLUSTER_ID: &str = "oar-sim";

/// A server's security settings: its nonces drawn from the run's seed,
/// the node and the time of this start, so that every start differs and
/// every replay is the same; its streams exposed to `blackholes`.
fn security(
    seed: u64,
    id: NodeId,
    ip: IpAddr,
    blackholes: Blackholes,
    promises: Promises,
) -> Security {
    let nonce_seed = seed ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ SimCluster::now_ns();
    let authenticator = Arc::new(ClusterKeyAuthenticator::new(CLUSTER_KEY, nonce_seed));
    let authenticator = BlackholeAuthenticator::new(authenticator, ip, blackholes).tapped(promises);
    Security::new(Arc::new(authenticator), CLUSTER_ID, Vec::new())
}

/// The body of a simulated server: open storage, start the member, serve.
async fn serve(ctx: ServerContext) {
    let ServerContext {
        id,
        seed,
        raft,
        voters,
        sessions,
        machine_disk,
        fs,
        peers,
        observations,
        member,
        server: server_slot,
        unrecoverable,
        blackholes,
        promises,
        trace,
        read_maps,
        clocks,
    } = ctx;
    let addr = peers[&id];
    let transport = transport_options();
    let security = security(seed, id, addr.ip(), blackholes, promises.clone());
    let server = NodeManager::bind(addr, security, transport)
        .await
        .expect("bind in simulation");
    *server_slot.lock().expect("server") = Some(server.clone());
    let fs: Arc<dyn FileSystem> = Arc::new(fs);
    let storage = match DiskStorage::open(fs, Path::new(&data_dir()), log_options()).await {
        Ok(storage) => storage,
        // Every restart follows a kill, which ends the old process: its lock
        // still held would mean its storage outlived it.
        Err(e @ StorageError::Locked { .. }) => panic!("{id}: {e}"),
        Err(e) => {
            // Detected corruption (or an injected error at open): this node
            // cannot vouch for its log and stays down.
            trace.event(
                SimCluster::now_ns(),
                "storage_refused",
                json!({ "node": id.0, "error": e.to_string() }),
            );
            *unrecoverable.lock().expect("unrecoverable") = true;
            return std::future::pending().await;
        }
    };
    let mut options = GroupOptions::new(GROUP, id, peers);
    options.initial_voters = Some((1..=voters as u64).map(NodeId).collect());
    options.snapshot_interval = crate::options::swarm_snapshot_interval(seed);
    options.sessions = sessions;
    options.raft = RaftOptions {
        id,
        rng_seed: seed ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ..raft
    };
    let clock = crate::reads::node_clock(seed, id, &options.raft);
    clocks.lock().expect("clocks").insert(id, clock.clone());
    options.clock = Some(clock);
    let mut machine =
        KvMachine::new(id, observations.clone()).with_trace(trace.clone(), SimCluster::now_ns);
    if let Some(disk) = machine_disk {
        machine = machine.on_disk(disk);
    }
    let map = machine.shared_map();
    let disk = {
        use rand::SeedableRng;
        // Each start draws its own latencies, still from the run's seed.
        let start = SimCluster::now_ns();
        SlowDisk {
            inner: storage,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ id.0 ^ start),
            id,
            promises,
            observations,
        }
    };
    let node = server
        .add_group(options, Box::new(disk), Box::new(machine))
        .expect("group starts");
    // Together, with no await between: readers see one incarnation.
    read_maps.lock().expect("read maps").insert(id, map);
    *member.lock().expect("member") = Some(node);
    trace.event(SimCluster::now_ns(), "started", json!({ "node": id.0 }));
    std::future::pending::<()>().await;
}

/// The real storage with a simulated device latency: a batch becomes
/// durable only after a delay drawn from the seed, so that a crash can land
/// between a write being issued and it being durable.
struct SlowDisk {
    inner: DiskStorage,
    rng: rand_chacha::ChaCha8Rng,
    /// Checks at recovery that the server kept what it promised.
    id: NodeId,
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
        let lost = self.promises.check(self.id, state);
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
}
