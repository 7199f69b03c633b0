//! A deterministic in-process cluster of `RaftNode`s for tests and benches.
//!
//! The test owns everything the driver would: a virtual clock, a network that
//! is a list of messages in flight (deliver any, in any order; drop;
//! duplicate), and per-node disks whose writes complete only when the test
//! says so (or at once, with `auto_disk`). After every step it checks the
//! safety properties of Raft: election safety, log matching, leader
//! completeness, state-machine safety and apply-once-in-order.
#![allow(dead_code, unreachable_pub)]

mod checks;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use oar::core::{
    Action, EntriesLoad, Entry, EntryBatch, EntryPayload, HardState, InitialState, Instant, LogId,
    LogIndex, Membership, Message, MessageBody, NodeId, ProposalLost, RaftNode, RaftOptions,
    ReadFailure, ReadId, Role, SnapshotInfo, Term,
};

/// A write the node asked for that the disk has not completed.
#[derive(Clone, Debug)]
pub enum DiskOp {
    HardState(HardState),
    Entries(EntryBatch),
    Compact(LogId),
    Reset(LogId),
}

/// A durable snapshot: what it covers and the state machine's state then
/// (every entry applied, so that states compare entry by entry).
#[derive(Clone, Debug)]
pub struct TestSnapshot {
    pub info: SnapshotInfo,
    pub applied: Vec<Entry>,
}

/// One node: the core plus its disk and state machine.
pub struct TestNode {
    pub raft: RaftNode,
    pub options: RaftOptions,
    /// Writes not yet durable, in order.
    pub pending_disk: VecDeque<DiskOp>,
    pub durable_hard_state: HardState,
    /// The entry before `durable_log` (the durable purge point).
    pub durable_last_purged: LogId,
    pub durable_log: Vec<Entry>,
    /// The newest durable snapshot.
    pub snapshot: Option<TestSnapshot>,
    /// The state machine: every entry applied, from index 1 (a loaded
    /// snapshot brings its prefix).
    pub applied: Vec<Entry>,
    /// Snapshots installed from a leader since the node (re)started.
    pub installs: usize,
    pub failed_proposals: Vec<ProposalLost>,
    /// Reads resolved since the node (re)started: (read, outcome, number
    /// of entries the state machine had applied when it resolved).
    pub reads: Vec<(ReadId, Result<LogIndex, ReadFailure>, usize)>,
    /// Proposals this node accepted since it (re)started.
    pub accepted: Vec<LogId>,
    pub up: bool,
    /// The configuration the node was created with (configuration entries
    /// in its durable log take effect on top of it at restart).
    pub bootstrap: Membership,
}

impl TestNode {
    /// A running node whose disk holds `state`; its configuration there is
    /// the one it restarts with.
    fn new(options: RaftOptions, state: InitialState, now: Instant) -> Self {
        let raft = RaftNode::new(options.clone(), state.clone(), now).expect("valid options");
        TestNode {
            raft,
            options,
            pending_disk: VecDeque::new(),
            durable_hard_state: state.hard_state,
            durable_last_purged: state.last_purged,
            durable_log: state.entries,
            snapshot: None,
            applied: Vec::new(),
            installs: 0,
            failed_proposals: Vec::new(),
            reads: Vec::new(),
            accepted: Vec::new(),
            up: true,
            bootstrap: state.membership,
        }
    }
}

/// The cluster.
pub struct Cluster {
    pub now: Instant,
    pub nodes: BTreeMap<NodeId, TestNode>,
    /// Messages in flight, oldest first.
    pub network: Vec<Message>,
    /// Nodes cut off from everyone (their messages are dropped both ways).
    pub isolated: BTreeSet<NodeId>,
    /// Complete disk writes as soon as they are issued.
    pub auto_disk: bool,
    /// Hold snapshot installs until `complete_install` (else at once).
    pub defer_installs: bool,
    /// Installs asked for and not yet done: (installing node, source, snapshot).
    pub pending_installs: Vec<(NodeId, NodeId, SnapshotInfo)>,
    /// The leader of each term, as nodes announced it.
    pub leaders: BTreeMap<Term, NodeId>,
    /// Every entry some node applied: index → id (state-machine safety).
    pub applied_ids: BTreeMap<LogIndex, LogId>,
    /// Every action every node emitted, formatted, for determinism checks.
    pub trace: Vec<String>,
    pub record_trace: bool,
    /// Counts of messages sent, by kind.
    pub sent: BTreeMap<&'static str, u64>,
    /// Hold reads of evicted entries until `complete_load` (else answered
    /// at once from the node's durable log).
    pub defer_loads: bool,
    /// Reads asked for and not yet answered: (node, load).
    pub pending_loads: Vec<(NodeId, EntriesLoad)>,
    /// Reads answered with entries.
    pub loads_answered: u64,
}

pub const MS: Duration = Duration::from_millis(1);

/// Deliveries without time passing after which a cluster is livelocked.
const LIVELOCK_MESSAGES: usize = 1_000_000;

/// Node id `id` (tests name nodes by number).
pub fn n(id: u64) -> NodeId {
    NodeId(id)
}

/// The set of these node ids.
pub fn set(raw: &[u64]) -> BTreeSet<NodeId> {
    raw.iter().map(|&i| NodeId(i)).collect()
}

pub fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

pub fn options(id: NodeId, seed: u64) -> RaftOptions {
    RaftOptions {
        id,
        election_timeout_min: 150 * MS,
        election_timeout_max: 300 * MS,
        heartbeat_interval: 30 * MS,
        rng_seed: seed.wrapping_mul(1_000_003).wrapping_add(id.0),
        ..RaftOptions::default()
    }
}

pub fn kind(body: &MessageBody) -> &'static str {
    match body {
        MessageBody::VoteRequest(r) if r.pre_vote => "pre_vote",
        MessageBody::VoteRequest(_) => "vote",
        MessageBody::VoteResponse(_) => "vote_response",
        MessageBody::AppendRequest(_) => "append",
        MessageBody::AppendResponse(_) => "append_response",
        MessageBody::Heartbeat(_) => "heartbeat",
        MessageBody::Quiesce(_) => "quiesce",
        MessageBody::HeartbeatResponse { .. } => "heartbeat_response",
        MessageBody::ReadIndexRequest(_) => "read_index",
        MessageBody::ReadIndexResponse(_) => "read_index_response",
        MessageBody::TimeoutNow => "timeout_now",
        MessageBody::InstallSnapshot(_) => "install_snapshot",
        MessageBody::SnapshotFailed { .. } => "snapshot_failed",
        MessageBody::Removed { .. } => "removed",
    }
}

impl Cluster {
    /// `n` fresh voters with default test options.
    pub fn new(n: u64, seed: u64) -> Self {
        Self::with_options(n, |id| options(id, seed))
    }

    /// `n` fresh voters with options from `make`.
    pub fn with_options(n: u64, make: impl Fn(NodeId) -> RaftOptions) -> Self {
        let membership = Membership::with_voters(ids(n));
        let states = ids(n)
            .into_iter()
            .map(|id| {
                (
                    id,
                    InitialState {
                        membership: membership.clone(),
                        ..InitialState::default()
                    },
                )
            })
            .collect();
        Self::from_states(states, make)
    }

    /// Nodes starting from the given durable states.
    pub fn from_states(
        states: BTreeMap<NodeId, InitialState>,
        make: impl Fn(NodeId) -> RaftOptions,
    ) -> Self {
        let now = Instant::from_nanos(0);
        let nodes = states
            .into_iter()
            .map(|(id, state)| {
                let node = TestNode::new(make(id), state, now);
                (id, node)
            })
            .collect();
        Cluster {
            now,
            nodes,
            network: Vec::new(),
            isolated: BTreeSet::new(),
            auto_disk: true,
            defer_installs: false,
            pending_installs: Vec::new(),
            leaders: BTreeMap::new(),
            applied_ids: BTreeMap::new(),
            trace: Vec::new(),
            record_trace: false,
            sent: BTreeMap::new(),
            defer_loads: false,
            pending_loads: Vec::new(),
            loads_answered: 0,
        }
    }

    pub fn node(&self, id: u64) -> &RaftNode {
        &self.nodes[&NodeId(id)].raft
    }

    pub fn test_node(&self, id: u64) -> &TestNode {
        &self.nodes[&NodeId(id)]
    }

    /// Drains every node's actions (and, with `auto_disk`, completes writes).
    pub fn drain_all(&mut self) {
        loop {
            let mut progressed = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                progressed |= self.drain(id);
                if self.auto_disk {
                    progressed |= self.complete_disk(id, usize::MAX) > 0;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Drains one node's actions. Returns whether there were any.
    pub fn drain(&mut self, id: NodeId) -> bool {
        let mut any = false;
        loop {
            let node = self.nodes.get_mut(&id).unwrap();
            if !node.up {
                return any;
            }
            let Some(action) = node.raft.poll_action() else {
                return any;
            };
            any = true;
            if self.record_trace {
                self.trace.push(format!("{id}: {action:?}"));
            }
            self.perform(id, action);
        }
    }

    fn perform(&mut self, id: NodeId, action: Action) {
        match action {
            Action::Send(m) => {
                *self.sent.entry(kind(&m.body)).or_default() += 1;
                if !self.isolated.contains(&m.from) && !self.isolated.contains(&m.to) {
                    self.network.push(m);
                }
            }
            Action::PersistHardState(hs) => self
                .nodes
                .get_mut(&id)
                .unwrap()
                .pending_disk
                .push_back(DiskOp::HardState(hs)),
            Action::PersistEntries { entries } => self
                .nodes
                .get_mut(&id)
                .unwrap()
                .pending_disk
                .push_back(DiskOp::Entries(entries)),
            Action::Apply { entries } => self.apply(id, entries),
            Action::ProposalFailed(e) => self.nodes.get_mut(&id).unwrap().failed_proposals.push(e),
            Action::RoleChanged {
                role: Role::Leader,
                term,
                ..
            } => self.on_new_leader(id, term),
            Action::RoleChanged { .. } => {}
            Action::ReadReady { id: read, index } => {
                let node = self.nodes.get_mut(&id).unwrap();
                let applied = node.applied.len();
                node.reads.push((read, Ok(index), applied));
            }
            Action::ReadFailed { id: read, error } => {
                let node = self.nodes.get_mut(&id).unwrap();
                let applied = node.applied.len();
                node.reads.push((read, Err(error), applied));
            }
            Action::CompactLog { through } => self.queue_disk(id, DiskOp::Compact(through)),
            Action::ResetLog { snapshot } => self.queue_disk(id, DiskOp::Reset(snapshot)),
            Action::InstallSnapshot { from, snapshot } if self.defer_installs => {
                self.pending_installs.push((id, from, snapshot));
            }
            Action::InstallSnapshot { from, snapshot } => self.install(id, from, snapshot),
            Action::LoadEntries(load) if self.defer_loads => self.pending_loads.push((id, load)),
            Action::LoadEntries(load) => self.answer_load(id, load),
        }
    }

    /// Answers the pending load at `position` (the read happens now).
    pub fn complete_load(&mut self, position: usize) {
        let (id, load) = self.pending_loads.remove(position);
        if self.nodes[&id].up {
            self.answer_load(id, load);
            self.drain(id);
        }
    }

    /// Answers `load` from the node's durable log, as a disk would: within
    /// its bounds, or failed when the range left the log.
    fn answer_load(&mut self, id: NodeId, load: EntriesLoad) {
        let now = self.now;
        let node = self.nodes.get_mut(&id).unwrap();
        let start = node.durable_last_purged.index.0 + 1;
        let mut entries = Vec::new();
        let mut bytes = 0;
        if load.lo.0 >= start {
            let from = (load.lo.0 - start) as usize;
            let to = ((load.hi.0 - start) as usize).min(node.durable_log.len());
            for entry in node.durable_log.get(from..to).unwrap_or_default() {
                let size = entry.size_bytes();
                if entries.len() == load.count_max
                    || (!entries.is_empty() && bytes + size > load.bytes_max)
                {
                    break;
                }
                bytes += size;
                entries.push(entry.clone());
            }
        }
        match entries.is_empty() {
            true => node.raft.handle_entries_load_failed(now, load),
            false => {
                self.loads_answered += 1;
                node.raft.handle_entries_loaded(now, load, entries);
            }
        }
    }

    fn queue_disk(&mut self, id: NodeId, op: DiskOp) {
        self.nodes.get_mut(&id).unwrap().pending_disk.push_back(op);
    }

    /// Completes the pending install at `position` (the copy happens now).
    pub fn complete_install(&mut self, position: usize) {
        let (id, from, snapshot) = self.pending_installs.remove(position);
        if self.nodes[&id].up {
            self.install(id, from, snapshot);
            self.drain(id);
        }
    }

    /// Pulls `snapshot` from `from` at once (the driver's copy, durable
    /// save and load), or fails the install if `from` no longer has it.
    fn install(&mut self, id: NodeId, from: NodeId, snapshot: SnapshotInfo) {
        let source = self.nodes[&from]
            .snapshot
            .clone()
            .filter(|s| s.info == snapshot && !self.isolated.contains(&from));
        let now = self.now;
        let Some(source) = source else {
            let node = self.nodes.get_mut(&id).unwrap();
            node.raft.handle_snapshot_install_failed(now, snapshot);
            return;
        };
        for entry in &source.applied {
            let first = *self.applied_ids.entry(entry.id.index).or_insert(entry.id);
            assert_eq!(
                first, entry.id,
                "{id} installed a snapshot disagreeing at {}",
                entry.id
            );
        }
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(
            source.applied.len() > node.applied.len(),
            "{id} installed snapshot {} at or behind its applied {}",
            snapshot.last_included,
            node.applied.len()
        );
        node.applied = source.applied.clone();
        node.snapshot = Some(source);
        node.installs += 1;
        node.raft
            .handle_snapshot_installed(now, snapshot)
            .expect("install completion");
    }

    /// Saves a snapshot of `id`'s applied state (durable at once) and
    /// tells its core. Returns its last entry, if anything was applied.
    pub fn snapshot_now(&mut self, id: NodeId) -> Option<LogId> {
        let now = self.now;
        let node = self.nodes.get_mut(&id).unwrap();
        let last = node.applied.last()?.id;
        if node
            .snapshot
            .as_ref()
            .is_some_and(|s| s.info.last_included.index >= last.index)
        {
            return None;
        }
        let membership = node
            .applied
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                EntryPayload::Config(m) => Some(Membership::clone(m)),
                _ => None,
            })
            .or_else(|| {
                node.snapshot
                    .as_ref()
                    .map(|s| Membership::clone(&s.info.membership))
            })
            .unwrap_or_else(|| node.bootstrap.clone());
        let info = SnapshotInfo {
            last_included: last,
            membership: membership.into(),
        };
        node.snapshot = Some(TestSnapshot {
            info: info.clone(),
            applied: node.applied.clone(),
        });
        node.raft
            .handle_snapshot_saved(now, info)
            .expect("snapshot of the applied state");
        self.drain(id);
        Some(last)
    }

    fn apply(&mut self, id: NodeId, entries: EntryBatch) {
        let node = self.nodes.get_mut(&id).unwrap();
        for entry in entries.iter().cloned() {
            let expected = LogIndex(node.applied.len() as u64 + 1);
            assert_eq!(
                entry.id.index, expected,
                "{id} applied out of order or twice"
            );
            // State-machine safety (§5.4.3): one entry per index, cluster-wide.
            let first = *self.applied_ids.entry(entry.id.index).or_insert(entry.id);
            assert_eq!(
                first, entry.id,
                "{id} applied {} where another node applied {first}",
                entry.id
            );
            node.applied.push(entry);
        }
    }

    fn on_new_leader(&mut self, id: NodeId, term: Term) {
        // Election safety (§5.2).
        let first = *self.leaders.entry(term).or_insert(id);
        assert_eq!(first, id, "two leaders in term {term}: {first} and {id}");
        // Leader completeness (§5.4): the new leader holds every entry any
        // node has applied (applied implies committed).
        let log = self.nodes[&id].raft.log();
        // Entries it compacted are in its snapshot, checked when applied.
        let compacted = log.snapshot_last().index;
        for (index, applied) in self.applied_ids.range(compacted.next()..) {
            assert!(
                log.matches(*applied),
                "new leader {id} of term {term} lacks committed entry {applied} (has {:?} at {index})",
                log.term_at(*index)
            );
        }
    }

    /// Completes up to `n` of a node's pending writes, in order. Returns
    /// how many completed.
    pub fn complete_disk(&mut self, id: NodeId, n: usize) -> usize {
        let mut done = 0;
        while done < n {
            let now = self.now;
            let node = self.nodes.get_mut(&id).unwrap();
            if !node.up {
                break;
            }
            let Some(op) = node.pending_disk.pop_front() else {
                break;
            };
            done += 1;
            match op {
                DiskOp::HardState(hs) => {
                    node.durable_hard_state = hs;
                    node.raft
                        .handle_hard_state_persisted(now, hs)
                        .expect("hard state completion");
                }
                DiskOp::Entries(entries) => {
                    let first = entries[0].id.index.0;
                    let start = node.durable_last_purged.index.0;
                    node.durable_log
                        .truncate(first.saturating_sub(start + 1) as usize);
                    let up_to = entries.last().unwrap().id;
                    let skip = (start + 1).saturating_sub(first) as usize;
                    node.durable_log.extend(entries.iter().skip(skip).cloned());
                    // Stale completions (entries truncated since) are allowed.
                    let _ = node.raft.handle_entries_persisted(now, up_to);
                }
                DiskOp::Compact(through) => {
                    let start = node.durable_last_purged.index.0;
                    let drop = through.index.0.saturating_sub(start) as usize;
                    node.durable_log.drain(..drop.min(node.durable_log.len()));
                    node.durable_last_purged = node.durable_last_purged.max(through);
                }
                DiskOp::Reset(snapshot) => {
                    node.durable_log.clear();
                    node.durable_last_purged = snapshot;
                }
            }
            self.drain(id);
        }
        done
    }

    /// Delivers the message at `position` in the network.
    pub fn deliver_at(&mut self, position: usize) -> Result<(), oar::core::InputError> {
        let m = self.network.remove(position);
        let to = m.to;
        let now = self.now;
        let node = self.nodes.get_mut(&to).unwrap();
        if !node.up {
            return Ok(());
        }
        let result = node.raft.handle_message(now, m);
        self.drain(to);
        result
    }

    /// Delivers the first message matching `pred`. Returns whether one did.
    pub fn deliver_first(&mut self, pred: impl Fn(&Message) -> bool) -> bool {
        match self.network.iter().position(pred) {
            Some(i) => {
                let _ = self.deliver_at(i);
                true
            }
            None => false,
        }
    }

    /// Drops every message in flight matching `pred`.
    pub fn drop_where(&mut self, pred: impl Fn(&Message) -> bool) {
        self.network.retain(|m| !pred(m));
    }

    /// Delivers everything (and what that produces) until the network and,
    /// with `auto_disk`, the disks are quiet.
    pub fn stabilize(&mut self) {
        self.drain_all();
        let mut delivered = 0;
        while !self.network.is_empty() {
            let _ = self.deliver_at(0);
            self.drain_all();
            delivered += 1;
            // Without time passing, a correct cluster goes quiet quickly;
            // endless message ping-pong is a livelock, reported as such.
            assert!(
                delivered < LIVELOCK_MESSAGES,
                "livelock: the network never went quiet"
            );
        }
    }

    /// Like [`stabilize`](Self::stabilize), but every message matching
    /// `lost` is dropped instead of delivered.
    pub fn stabilize_dropping(&mut self, lost: impl Fn(&Message) -> bool) {
        for _ in 0..LIVELOCK_MESSAGES {
            self.drain_all();
            self.network.retain(|m| !lost(m));
            if self.network.is_empty() {
                return;
            }
            let _ = self.deliver_at(0);
        }
        panic!("livelock: the network never went quiet");
    }

    /// Advances the clock by `dt` and ticks every live node.
    pub fn advance(&mut self, dt: Duration) {
        self.now = self.now + dt;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.tick_node(id);
        }
    }

    /// Ticks one node at the current time.
    pub fn tick_node(&mut self, id: NodeId) {
        let now = self.now;
        let node = self.nodes.get_mut(&id).unwrap();
        if node.up {
            node.raft.handle_tick(now);
            self.drain(id);
        }
    }

    /// Runs time forward in `step`s, stabilizing after each, until `done`
    /// holds or `limit` passes. Returns whether `done` held.
    pub fn run_until(
        &mut self,
        step: Duration,
        limit: Duration,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> bool {
        let end = self.now + limit;
        self.stabilize();
        while self.now < end {
            if done(self) {
                return true;
            }
            self.advance(step);
            self.stabilize();
        }
        done(self)
    }

    /// Runs until some node leads; returns it.
    /// Node `id` campaigns alone and the cluster settles: it leads.
    pub fn make_leader(&mut self, id: u64) {
        self.now = self.now + Duration::from_secs(1);
        self.tick_node(NodeId(id));
        self.stabilize();
        assert_eq!(self.node(id).role(), Role::Leader, "n{id} leads");
    }

    /// Delivers `m` now, as if it had just arrived.
    pub fn deliver_now(&mut self, m: Message) -> Result<(), oar::core::InputError> {
        self.network.push(m);
        let at = self.network.len() - 1;
        self.deliver_at(at)
    }

    pub fn elect(&mut self) -> NodeId {
        let ok = self.run_until(MS, Duration::from_secs(30), |c| c.leader().is_some());
        assert!(ok, "no leader elected");
        self.leader().unwrap()
    }

    /// The live leader with the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.up && n.raft.role() == Role::Leader)
            .max_by_key(|(_, n)| n.raft.term())
            .map(|(&id, _)| id)
    }

    /// Proposes `data` at node `id`.
    pub fn propose(&mut self, id: NodeId, data: &str) -> Result<LogId, oar::core::ProposalRefused> {
        let now = self.now;
        let node = self.nodes.get_mut(&id).unwrap();
        let result = node
            .raft
            .propose(now, Bytes::copy_from_slice(data.as_bytes()));
        if let Ok(id) = result {
            node.accepted.push(id);
        }
        self.drain(id);
        result
    }

    /// Cuts a node off from everyone; drops its messages in flight.
    pub fn isolate(&mut self, id: NodeId) {
        self.isolated.insert(id);
        self.network.retain(|m| m.from != id && m.to != id);
    }

    pub fn heal(&mut self) {
        self.isolated.clear();
    }

    /// Crashes a node: it stops, and its unfinished writes are lost.
    pub fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        node.up = false;
        node.pending_disk.clear();
        self.pending_installs
            .retain(|(installing, ..)| *installing != id);
        // A driver's reads die with it.
        self.pending_loads.retain(|(loading, _)| *loading != id);
        self.network.retain(|m| m.to != id);
    }

    /// Restarts a crashed node from its durable state.
    pub fn restart(&mut self, id: NodeId, membership: Membership) {
        let now = self.now;
        let node = self.nodes.get_mut(&id).unwrap();
        let state = InitialState {
            hard_state: node.durable_hard_state,
            membership,
            snapshot: node.snapshot.as_ref().map(|s| s.info.clone()),
            last_purged: node.durable_last_purged,
            entries: node.durable_log.clone(),
            applied: None,
        };
        node.raft = RaftNode::new(node.options.clone(), state, now).expect("valid options");
        // The state machine starts from the snapshot.
        node.applied = node
            .snapshot
            .as_ref()
            .map_or_else(Vec::new, |s| s.applied.clone());
        node.installs = 0;
        node.accepted.clear();
        node.failed_proposals.clear();
        node.reads.clear();
        node.up = true;
        self.drain(id);
    }

    /// Restarts a crashed node from its durable state and the configuration
    /// it was created with.
    pub fn restart_bootstrap(&mut self, id: NodeId) {
        let bootstrap = self.nodes[&id].bootstrap.clone();
        self.restart(id, bootstrap);
    }

    /// Adds a fresh node that knows no configuration (it joins an existing
    /// group and waits to hear from its leader).
    pub fn add_node(&mut self, id: NodeId, options: RaftOptions) {
        let node = TestNode::new(options, InitialState::default(), self.now);
        assert!(self.nodes.insert(id, node).is_none(), "{id} exists");
    }

    /// Calls `f` on node `id`'s core at the current time, then drains it.
    pub fn call<R>(&mut self, id: NodeId, f: impl FnOnce(&mut RaftNode, Instant) -> R) -> R {
        let now = self.now;
        let result = f(&mut self.nodes.get_mut(&id).unwrap().raft, now);
        self.drain(id);
        result
    }
}
