//! A cluster of simulated servers, each a madsim node running the
//! production runtime (`NodeManager`, group tasks, log writers, apply
//! loops) over the simulated disk and hosting a member of each of the
//! run's groups (`server.rs`), with crash, restart, pause and partition
//! controls that hit a whole server.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use oar::core::{NodeId, RaftOptions};

use oar::runtime::{GroupId, Node, NodeManager, SessionOptions, TransportOptions};
use oar::storage::{FileSystem, LogWriter, MemFileSystem, ServerLog, StorageError};
use serde_json::json;

use crate::blackhole::Blackholes;
use crate::durability::Promises;
use crate::final_checks::DurableLog;
use crate::groups::{SimGroup, group_dir};
use crate::kv_machine::MachineDisk;
use crate::observe::Observations;
use crate::server::{ServerContext, log_options, serve, server_dir, server_log_options};
use crate::trace::Trace;

pub use crate::server::{CLUSTER_ID, CLUSTER_KEY};

/// The first group (the only one, unless `--groups`): the one membership
/// changes, leadership transfers, tactics and the stranger aim at.
pub const GROUP: GroupId = GroupId(1);
const RAFT_PORT: u16 = 7000;

/// Where a node keeps the first group's storage on its simulated disk.
pub fn data_dir() -> PathBuf {
    group_dir(0)
}

/// One simulated server.
pub struct SimNode {
    /// Its Raft id.
    pub id: NodeId,
    /// Its madsim node.
    pub madsim: NodeHandle,
    /// Its disk; outlives crashes.
    pub fs: MemFileSystem,
    /// The running member's handle of the first group, `None` while down.
    pub member: Arc<Mutex<Option<Node>>>,
    /// The running server, `None` while down: its refusal counters.
    pub server: Arc<Mutex<Option<NodeManager>>>,
    /// Killed and not restarted.
    pub down: bool,
    /// Paused (its tasks do not run).
    pub paused: bool,
    /// An I/O error was injected and no power loss cleared it since: its
    /// group may have stopped (fail-stop) and needs a power cycle.
    pub disk_error_injected: bool,
}

/// How each server's state machines and storage are set up.
pub struct ServerSetup {
    /// The group's client sessions, if it keeps them.
    pub sessions: Option<SessionOptions>,
    /// Each state machine keeps a store of its own across restarts.
    pub on_disk: bool,
    /// The group (by index) whose member on the first server misreports
    /// what it applies: a planted divergence, for tests.
    pub planted_divergence: Option<usize>,
    /// Each server keeps one log for all its groups (`SharedLog`) instead
    /// of one per member.
    pub shared_log: bool,
}

impl ServerSetup {
    /// Groups without sessions, state machines without a store of their
    /// own, nothing planted, a log per member.
    pub fn plain() -> Self {
        ServerSetup {
            sessions: None,
            on_disk: false,
            planted_divergence: None,
            shared_log: false,
        }
    }
}

/// The simulated servers.
pub struct SimCluster {
    /// The servers, in id order.
    pub nodes: Vec<SimNode>,
    /// The groups every server hosts a member of.
    pub groups: Vec<SimGroup>,
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
    /// Each running server's clock, for the nemesis to aim.
    clocks: crate::reads::Clocks,
    /// Each server keeps one log for all its groups.
    shared_log: bool,
}

fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

/// The stranger's IP: on the cluster's network, in nobody's address book.
pub const STRANGER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1));

impl SimCluster {
    /// Starts `n` servers, all voters, hosting `groups` groups, each
    /// observed afresh, without a trace: for tests that drive the cluster
    /// themselves.
    pub fn start_untraced(
        n: usize,
        seed: u64,
        raft: RaftOptions,
        setup: ServerSetup,
        groups: usize,
    ) -> SimCluster {
        let observations = (0..groups).map(|_| Arc::default()).collect();
        SimCluster::start(n, seed, raft, n, setup, observations, Trace::new(false))
    }

    /// Starts `n` servers, each hosting a member of one group for each of
    /// `observations` (what is observed of that group).
    pub fn start(
        n: usize,
        seed: u64,
        raft: RaftOptions,
        voters: usize,
        setup: ServerSetup,
        observations: Vec<Arc<Mutex<Observations>>>,
        trace: Trace,
    ) -> SimCluster {
        let handle = Handle::current();
        let peers: BTreeMap<NodeId, SocketAddr> = (0..n)
            .map(|i| (NodeId(i as u64 + 1), SocketAddr::new(node_ip(i), RAFT_PORT)))
            .collect();
        let blackholes = Blackholes::default();
        let promises = Promises::default();
        let clocks = crate::reads::Clocks::default();
        let groups: Vec<SimGroup> = observations
            .into_iter()
            .enumerate()
            .map(|(index, observations)| SimGroup::new(index, n, observations))
            .collect();
        let nodes = (0..n)
            .map(|i| {
                let id = NodeId(i as u64 + 1);
                let fs = MemFileSystem::new(seed.wrapping_add(i as u64).wrapping_mul(31));
                let server = Arc::new(Mutex::new(None));
                let context = ServerContext {
                    id,
                    index: i,
                    seed,
                    raft: raft.clone(),
                    voters,
                    sessions: setup.sessions.clone(),
                    machine_disks: setup
                        .on_disk
                        .then(|| groups.iter().map(|_| MachineDisk::default()).collect()),
                    fs: fs.clone(),
                    peers: peers.clone(),
                    groups: groups.clone(),
                    planted_divergence: setup.planted_divergence,
                    shared_log: setup.shared_log,
                    server: server.clone(),
                    blackholes: blackholes.clone(),
                    promises: promises.clone(),
                    trace: trace.clone(),
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
                    member: groups[0].members[i].clone(),
                    server,
                    down: false,
                    paused: false,
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
        let shared_log = setup.shared_log;
        SimCluster {
            nodes,
            groups,
            clocks,
            shared_log,
            admin,
            stranger,
            peers,
            blackholes,
            promises,
            handle,
            trace,
        }
    }

    /// Each running state machine's map of the first group, for barrier
    /// reads.
    pub fn read_maps(&self) -> crate::reads::ReadMaps {
        Arc::clone(&self.groups[0].read_maps)
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
        for group in &self.groups {
            *group.members[i].lock().expect("member") = None;
        }
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
        self.blackholes.hold(node_ip(from), node_ip(to));
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
                self.blackholes.hold(node_ip(a), node_ip(b));
                self.blackholes.hold(node_ip(b), node_ip(a));
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
                self.blackholes.hold(node_ip(a), node_ip(b));
                self.blackholes.hold(node_ip(b), node_ip(a));
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

    /// The handle of server `i`'s member of the first group, if it runs.
    pub fn member(&self, i: usize) -> Option<Node> {
        self.member_in(0, i)
    }

    /// The handle of server `i`'s member of group `g` (by index), if it
    /// runs.
    pub fn member_in(&self, g: usize, i: usize) -> Option<Node> {
        let node = &self.nodes[i];
        if node.down || node.paused {
            return None;
        }
        self.groups[g].members[i].lock().expect("member").clone()
    }

    /// The server the running members of the first group name as leader
    /// most often, if any.
    pub fn leader_index(&self) -> Option<usize> {
        self.leader_index_in(0)
    }

    /// The server the running members of group `g` (by index) name as
    /// leader most often, if any.
    pub fn leader_index_in(&self, g: usize) -> Option<usize> {
        let mut votes = BTreeMap::new();
        for i in 0..self.nodes.len() {
            if let Some(leader) = self.member_in(g, i).and_then(|m| m.leader()) {
                *votes.entry(leader).or_insert(0) += 1;
            }
        }
        let (&leader, _) = votes
            .iter()
            .max_by_key(|&(id, count)| (*count, std::cmp::Reverse(*id)))?;
        self.nodes.iter().position(|n| n.id == leader)
    }

    /// Every member handle of the first group (running or not), shared
    /// with the clients.
    pub fn member_slots(&self) -> Vec<Arc<Mutex<Option<Node>>>> {
        self.groups[0].members.clone()
    }

    /// Whether each server keeps one log for all its groups.
    pub fn keeps_shared_log(&self) -> bool {
        self.shared_log
    }

    /// Server `i`'s storage of some group refused to open (corruption was
    /// detected): the server is not whole.
    pub fn unrecoverable(&self, i: usize) -> bool {
        (0..self.groups.len()).any(|g| self.unrecoverable_in(g, i))
    }

    /// Server `i`'s storage of group `g` (by index) refused to open.
    pub fn unrecoverable_in(&self, g: usize, i: usize) -> bool {
        *self.groups[g].unrecoverable[i]
            .lock()
            .expect("unrecoverable")
    }

    /// Stops every server and reads each durable log of group `g` (by
    /// index) back from its disk.
    pub fn durable_logs(&mut self, g: usize) -> BTreeMap<NodeId, DurableLog> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].down {
                self.handle.kill(self.nodes[i].madsim.id());
                // The process is gone (not the power): what it wrote stays.
                self.nodes[i].fs.process_died();
                self.nodes[i].down = true;
                *self.nodes[i].server.lock().expect("server") = None;
            }
        }
        let group = self.groups[g].id();
        let shared_log = self.shared_log;
        self.nodes
            .iter()
            .filter_map(|node| {
                let fs: Arc<dyn FileSystem> = Arc::new(node.fs.clone());
                let opened = match shared_log {
                    true => ServerLog::open(fs, &shared_log_dir(), server_log_options())
                        .map(|(_, mut all)| all.remove(&group.0).unwrap_or_default()),
                    false => LogWriter::open(fs, &group_dir(g), log_options())
                        .map(|(_, recovered)| recovered),
                };
                let recovered = match opened {
                    Ok(recovered) => recovered,
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

/// Where a server's shared log keeps its segments (`--shared-log`).
pub fn shared_log_dir() -> PathBuf {
    server_dir().join(oar::runtime::shared_log::SHARED_LOG_DIR_NAME)
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
