//! The per-group driver task (braft's `NodeImpl`, driver half): feeds the
//! core its inputs, performs its actions, and sleeps until its next timer.
//!
//! ```text
//!  transport / clients ──► inbox ──► group task ──► log writer task ──┐
//!                                      │  ▲                           │
//!                                      │  └──── completions ◄─────────┘
//!                                      └──────► apply task (state machine)
//! ```
//!
//! Storage that never blocks (memory) has no log writer task: the group
//! task persists each batch itself and feeds the completions straight back
//! to the core, in the same wake-up (see [`WritePath`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::admin::{AdminReply, AdminRequest, PendingChange};
use super::apply_loop::{ApplyTask, ProposalReply, SnapshotReply};
use super::clock::sleep_until_or_never;
use super::error::Error;
use super::group_id::GroupId;
use super::liveness::{LivenessWatch, PeerLiveness};
use super::metrics::GroupMetrics;
use super::observer::{GroupDetails, GroupObserver};
use super::queue;
use super::read_batch::ReadBatches;
use super::read_lease::ReadLease;
use super::snapshot_install::SnapshotInstaller;
use super::transport::Transport;
use super::watch::StatusPublisher;
use super::write_task::{LoadResult, StorageDone, WritePath};
use crate::core::{
    Action, EntriesLoad, Instant, Message, NodeId, ProposalLost, ProposalRefused, RaftNode,
    SnapshotInfo, Status,
};
use crate::storage::{Durable, WriteOp};

/// Inputs a group task accepts.
pub(crate) enum GroupInput {
    /// A message from a peer. `sender` is the authenticated server it came
    /// from (`None` in process, where there is no stranger to fear).
    Message {
        message: Message,
        sender: Option<SocketAddr>,
    },
    /// A client command.
    Propose {
        command: Bytes,
        reply: ProposalReply,
    },
    /// A read barrier or a query.
    Read {
        policy: crate::core::ReadPolicy,
        waiter: super::read_barrier::ReadWaiter,
    },
    /// A status request.
    Status { reply: oneshot::Sender<Status> },
    /// The address book (for clients' route lookups).
    Peers {
        reply: oneshot::Sender<BTreeMap<NodeId, SocketAddr>>,
    },
    /// A status request with the driver's own details (`/raft_stat`).
    Details {
        reply: oneshot::Sender<GroupDetails>,
    },
    /// A membership change, transfer or address update.
    Admin {
        request: AdminRequest,
        reply: AdminReply,
    },
    /// Save a snapshot now.
    Snapshot { reply: SnapshotReply },
    /// The apply task saved a durable snapshot.
    SnapshotSaved(SnapshotInfo),
    /// A snapshot from the leader is durable and loaded.
    SnapshotInstalled(SnapshotInfo),
    /// A snapshot from the leader could not be installed.
    SnapshotInstallFailed(SnapshotInfo),
    /// The server at this address stopped answering (`liveness.rs`): a
    /// quiet member wakes.
    PeerServerDown(SocketAddr),
    /// A reader wants a read batch (`read_batch.rs`): one a batch.
    ReadBatchWanted,
    /// Stop; [`SharedState::stopped`] tells when storage is quiet.
    Shutdown,
}

/// What the node handle reads without asking the task.
#[derive(Debug)]
pub(crate) struct SharedState {
    pub(crate) applied_index: Arc<AtomicU64>,
    /// Messages refused because their sender node does not live on the
    /// server that sent them.
    pub(crate) forbidden_messages: AtomicU64,
    /// The state machine answered a query with `QueryError::Unsupported`:
    /// later queries fail at once, without a read round, and the client
    /// service runs them through the log.
    pub(crate) queries_unsupported: AtomicBool,
    /// Set once the group and every task that touches its storage (log
    /// writer, apply loop, installer) have finished: only then may the
    /// storage directory be opened again.
    pub(crate) stopped: watch::Sender<bool>,
    /// The watchable status ([`Node::watch`](super::Node::watch)).
    pub(crate) status: StatusPublisher,
    /// The group's counters and histograms, for `/metrics`.
    pub(crate) metrics: Arc<GroupMetrics>,
    /// What the server's liveness monitor watches for this group (`None`:
    /// quiescence off, nothing to watch).
    liveness_watch: std::sync::Mutex<Option<LivenessWatch>>,
    /// The leader's lease for reads that skip this task (`read_lease.rs`).
    pub(crate) read_lease: ReadLease,
    /// The batches ReadIndex readers share (`read_batch.rs`).
    pub(crate) read_batches: ReadBatches,
}

impl SharedState {
    /// The state of member `id` of `group`, starting in `membership`, on
    /// `clock`.
    pub(crate) fn new(
        group: GroupId,
        id: NodeId,
        membership: crate::core::Membership,
        metrics_enabled: bool,
        clock: Arc<dyn super::clock::Clock>,
    ) -> Self {
        let applied_index: Arc<AtomicU64> = Arc::default();
        SharedState {
            read_lease: ReadLease::new(clock, Arc::clone(&applied_index)),
            applied_index,
            read_batches: ReadBatches::new(),
            forbidden_messages: AtomicU64::new(0),
            queries_unsupported: AtomicBool::new(false),
            stopped: watch::Sender::new(false),
            status: StatusPublisher::new(group, id, membership),
            metrics: Arc::new(GroupMetrics::new(metrics_enabled)),
            liveness_watch: Default::default(),
        }
    }

    /// What the liveness monitor should watch for this group.
    pub(crate) fn liveness_watch(&self) -> Option<LivenessWatch> {
        self.liveness_watch.lock().expect("watch lock").clone()
    }
}

/// The group task's state.
pub(crate) struct GroupDriver {
    pub(crate) group: GroupId,
    pub(crate) raft: RaftNode,
    /// The node's clock: the core's `now` and the timers.
    pub(crate) clock: Arc<dyn super::clock::Clock>,
    pub(crate) peers: BTreeMap<NodeId, SocketAddr>,
    pub(crate) transport: Transport,
    /// Where the core's writes go: a log writer task, or inline.
    pub(crate) log: WritePath,
    pub(crate) apply: queue::Sender<ApplyTask>,
    pub(crate) shared: Arc<SharedState>,
    /// Clients waiting for their proposal: index → (term, reply_to).
    pub(crate) pending: super::pending::PendingProposals,
    /// Membership changes waiting to complete.
    pub(crate) pending_changes: Vec<PendingChange>,
    /// Read barriers waiting for the core.
    pub(crate) pending_reads: super::read_barrier::PendingReads,
    /// Confirmed barriers waiting for the end of the drain (empty between
    /// drains).
    pub(crate) ready_barriers: super::read_barrier::ReadyBarriers,
    /// The read batches in flight (`read_batch.rs`), oldest first: each
    /// one's number and its read in the core.
    pub(crate) batch_reads: std::collections::VecDeque<(u64, crate::core::ReadId)>,
    /// Pulls snapshots from the leader; one install at a time.
    pub(crate) installer: SnapshotInstaller,
    /// Status, metrics and details kept for operators.
    pub(crate) observer: GroupObserver,
    /// The server's view of its peer servers' liveness.
    pub(crate) liveness: Arc<PeerLiveness>,
    /// Loads the core asked for in this drain, submitted after its writes
    /// (empty between drains).
    pub(crate) loads_due: Vec<EntriesLoad>,
}

/// Inputs taken per wake-up before actions are drained, so that a burst of
/// proposals shares one AppendEntries per peer and one disk write.
const INPUT_BATCH_MAX: usize = 1024;

impl GroupDriver {
    fn now(&self) -> Instant {
        self.clock.local(tokio::time::Instant::now())
    }

    /// Runs until shutdown, a storage failure, or the end of the apply task
    /// (the state machine panicked). Boxed: an async fn's future holds its
    /// arguments twice (before and after the first poll), 2 KB a member for
    /// a driver by value.
    pub(crate) async fn run(mut self: Box<Self>, mut inbox: queue::Receiver<GroupInput>) {
        let mut shutdown = false;
        let mut failure = None;
        loop {
            let deadline = self.raft.poll_timeout();
            let timer = (deadline != Instant::NEVER).then(|| self.clock.runtime_instant(deadline));
            tokio::select! {
                biased;
                result = self.log.completed(), if self.log.is_task() => match result {
                    Some(StorageDone::Written(Ok(done))) => self.on_persisted(done),
                    Some(StorageDone::Written(Err(e))) => {
                        failure = Some(Error::Storage(e));
                        break;
                    }
                    Some(StorageDone::Loaded(load, result)) => self.on_loaded(load, result),
                    None => break,
                },
                input = inbox.recv() => match input {
                    Some(GroupInput::Shutdown) => break,
                    Some(input) => self.on_input(input, self.now()),
                    None => break,
                },
                () = sleep_until_or_never(timer) => {
                    self.raft.handle_tick(self.now());
                    // Between bursts: the queues' buffers go (issue 15).
                    inbox.release_if_empty();
                    self.apply.release_if_empty();
                }
            }
            // One clock read for the whole batch: inputs drained together
            // happened "now" as far as the protocol can tell.
            let now = self.now();
            for _ in 0..INPUT_BATCH_MAX {
                match inbox.try_recv() {
                    Some(GroupInput::Shutdown) => {
                        shutdown = true;
                        break;
                    }
                    Some(input) => self.on_input(input, now),
                    None => break,
                }
            }
            if shutdown {
                break;
            }
            self.maybe_wake_for_down_servers();
            if let Err(e) = self.perform_actions() {
                failure = Some(e);
                break;
            }
            self.observer
                .maybe_publish(&self.raft, &self.peers, &self.shared);
            if self.raft.is_quiet() {
                // No tick comes to a quiet group: its queues' buffers go now.
                inbox.release_if_empty();
                self.apply.release_if_empty();
            }
            if self.apply.is_closed() {
                // Nothing committed can be applied or answered any more:
                // fail-stop rather than lead on with a dead state machine.
                let reason = "the apply task ended: the state machine panicked";
                failure = Some(Error::StateMachine(reason.into()));
                break;
            }
        }
        self.stop(failure, inbox);
    }

    fn on_input(&mut self, input: GroupInput, now: Instant) {
        match input {
            GroupInput::Message { message, sender } => {
                if let Some(sender) = sender
                    && self.peers.get(&message.from).map(SocketAddr::ip) != Some(sender.ip())
                {
                    // An authenticated server speaking for a node that does
                    // not live there: refused before the core sees it. The
                    // credential proves an IP, so the IP is what is bound
                    // (servers sharing an IP are one principal).
                    self.shared
                        .forbidden_messages
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(group = %self.group, from = %message.from, %sender,
                        "message from a node that does not live on its sending server");
                    return;
                }
                self.observer.on_message(message.from, now);
                if let Err(e) = self.raft.handle_message(now, message) {
                    tracing::debug!(group = %self.group, error = %e, "message rejected");
                }
            }
            GroupInput::Propose { command, reply } => match self.raft.propose(now, command) {
                Ok(id) => {
                    self.observer.on_proposed(id.index, now, &self.shared);
                    self.pending.insert(id.index, (id.term, reply));
                }
                Err(ProposalRefused::NotLeader { leader_hint }) => {
                    self.observer.on_refused(&self.shared);
                    let leader_addr = leader_hint.and_then(|l| self.peers.get(&l).copied());
                    let _ = reply.send(Err(Error::NotLeader {
                        leader: leader_hint,
                        leader_addr,
                    }));
                }
            },
            // A fresh clock read: a lease is checked at the time the read
            // is handled, never at an earlier batch time.
            GroupInput::Read { policy, waiter } => self.on_read(policy, waiter, self.now()),
            GroupInput::Admin { request, reply } => self.on_admin(request, reply, now),
            GroupInput::Status { reply } => {
                let _ = reply.send(self.raft.status());
            }
            GroupInput::Peers { reply } => {
                let _ = reply.send(self.peers.clone());
            }
            GroupInput::Details { reply } => {
                let details =
                    self.observer
                        .details(&self.raft, &self.peers, self.pending.len(), now);
                let _ = reply.send(details);
            }
            GroupInput::Snapshot { reply } => {
                let _ = self.apply.try_send(ApplyTask::Snapshot { reply });
            }
            GroupInput::SnapshotSaved(snapshot) => {
                if let Err(e) = self.raft.handle_snapshot_saved(now, snapshot) {
                    tracing::warn!(group = %self.group, error = %e, "snapshot not used");
                }
            }
            GroupInput::SnapshotInstalled(snapshot) => {
                if let Err(e) = self.raft.handle_snapshot_installed(now, snapshot) {
                    tracing::warn!(group = %self.group, error = %e, "installed snapshot not used");
                }
            }
            GroupInput::SnapshotInstallFailed(snapshot) => {
                self.raft.handle_snapshot_install_failed(now, snapshot);
            }
            GroupInput::PeerServerDown(addr) => self.on_peer_server_down(addr, now),
            GroupInput::ReadBatchWanted => self.maybe_start_read_batch(),
            GroupInput::Shutdown => unreachable!("handled by the loop"),
        }
    }

    /// Tells the core that every member on the server at `addr` is
    /// unreachable (a quiet node wakes; an awake one ignores it).
    fn on_peer_server_down(&mut self, addr: SocketAddr, now: Instant) {
        let own = self.raft.id();
        let members: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|&(&id, &at)| at == addr && id != own)
            .map(|(&id, _)| id)
            .collect();
        for id in members {
            self.raft.handle_peer_unreachable(now, id);
        }
    }

    /// A quiet node with a member on a server that is down wakes now: the
    /// monitor told the group when the server went down, but the group may
    /// have gone quiet only since.
    fn maybe_wake_for_down_servers(&mut self) {
        if !self.raft.is_quiet() {
            return;
        }
        let own = self.raft.id();
        let unreachable: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|&(&id, &addr)| id != own && self.liveness.is_down(addr))
            .map(|(&id, _)| id)
            .collect();
        let now = self.now();
        for id in unreachable {
            self.raft.handle_peer_unreachable(now, id);
        }
    }

    /// Publishes the address book to the liveness monitor (quiescing
    /// groups only); call whenever `peers` changes.
    pub(crate) fn publish_peer_servers(&self) {
        let options = self.raft.options();
        if options.quiesce_after.is_none() {
            return;
        }
        let silence_max = options.election_timeout_min;
        let own = self.raft.id();
        let own_addr = self.peers.get(&own).copied();
        let peer_servers = self
            .peers
            .iter()
            .filter(|&(&id, &addr)| id != own && Some(addr) != own_addr)
            .map(|(_, &addr)| addr)
            .collect();
        *self.shared.liveness_watch.lock().expect("watch lock") = Some(LivenessWatch {
            peer_servers,
            silence_max,
        });
        self.liveness.mark_changed();
    }

    fn on_persisted(&mut self, done: Vec<Durable>) {
        let now = self.now();
        for persisted in done {
            let result = match persisted {
                Durable::HardState(hs) => self.raft.handle_hard_state_persisted(now, hs),
                Durable::Entries(up_to) => self.raft.handle_entries_persisted(now, up_to),
            };
            if let Err(e) = result {
                tracing::trace!(group = %self.group, error = %e, "completion ignored");
            }
        }
    }

    /// Entries read back for a peer (`Action::LoadEntries`) go to the
    /// core; a failed read is reported, and the core tries again later.
    fn on_loaded(&mut self, load: EntriesLoad, result: LoadResult) {
        let now = self.now();
        match result {
            Ok(entries) => self.raft.handle_entries_loaded(now, load, entries),
            Err(error) => {
                tracing::error!(group = %self.group, peer = %load.peer, lo = %load.lo, %error,
                    "reading log entries back for a peer failed");
                self.raft.handle_entries_load_failed(now, load);
            }
        }
    }

    /// Drains the core's actions and performs them. With inline storage,
    /// a batch's completions go back to the core at once, and the actions
    /// they release (acks, commits, applies) are performed in the same
    /// call. `Err` when storage failed: the group must stop.
    fn perform_actions(&mut self) -> Result<(), Error> {
        loop {
            let writes = self.drain_actions();
            let loads = std::mem::take(&mut self.loads_due);
            if writes.is_empty() && loads.is_empty() {
                return Ok(());
            }
            let mut answered = false;
            if !writes.is_empty() {
                match self.log.submit(writes) {
                    None => {}
                    Some(Ok(done)) => {
                        self.on_persisted(done);
                        answered = true;
                    }
                    Some(Err(e)) => return Err(Error::Storage(e)),
                }
            }
            // After the writes: a load reads what was queued before it.
            for load in loads {
                if let Some(result) = self.log.load(load.clone()) {
                    self.on_loaded(load, result);
                    answered = true;
                }
            }
            if !answered {
                return Ok(());
            }
        }
    }

    /// Performs the core's pending actions; returns the writes among them,
    /// in order, for one storage batch.
    fn drain_actions(&mut self) -> Vec<WriteOp> {
        // Before any action leaves: a lease the input ended is revoked
        // before the message that ended it goes out, and the commit index
        // is raised before its entries reach the apply task.
        self.publish_read_lease();
        let mut writes = Vec::new();
        while let Some(action) = self.raft.poll_action() {
            match action {
                Action::Send(m) => self.send(m),
                Action::PersistHardState(hs) => writes.push(WriteOp::HardState(hs)),
                Action::PersistEntries { entries } => writes.push(WriteOp::Entries(entries)),
                Action::Apply { entries } => {
                    let replies = entries
                        .iter()
                        .map(|e| match self.pending.remove(e.id.index) {
                            Some((term, reply_to)) if term == e.id.term => Some(reply_to),
                            Some((term, reply_to)) => {
                                let id = crate::core::LogId {
                                    term,
                                    index: e.id.index,
                                };
                                let _ = reply_to.send(Err(Error::Overwritten(id)));
                                None
                            }
                            None => None,
                        })
                        .collect();
                    if self.shared.metrics.enabled
                        && let Some(last) = entries.last()
                    {
                        let now = self.now();
                        self.observer.on_committed(last.id.index, now, &self.shared);
                    }
                    self.resolve_changes(&entries);
                    let _ = self.apply.try_send(ApplyTask::Entries { entries, replies });
                }
                Action::ProposalFailed(failure) => {
                    let (proposal, error) = match failure {
                        ProposalLost::Overwritten { proposal, .. } => {
                            (proposal, Error::Overwritten(proposal))
                        }
                        ProposalLost::OutcomeUnknown { proposal } => {
                            (proposal, Error::OutcomeUnknown(proposal))
                        }
                    };
                    if let Some((_, reply_to)) = self.pending.remove(proposal.index) {
                        let _ = reply_to.send(Err(error));
                    }
                }
                Action::LoadEntries(load) => self.loads_due.push(load),
                Action::CompactLog { through } => writes.push(WriteOp::Compact(through)),
                Action::ResetLog { snapshot } => writes.push(WriteOp::Reset(snapshot)),
                Action::InstallSnapshot { from, snapshot } => {
                    let source = self.peers.get(&from).copied();
                    self.installer.start(source, snapshot, self.apply.clone());
                }
                Action::ReadReady { id, index } => self.on_read_ready(id, index),
                Action::ReadFailed { id, error } => self.on_read_failed(id, error),
                Action::RoleChanged { role, term, leader } => {
                    self.observer.on_role(role, leader, &self.shared);
                    let _ = self.apply.try_send(ApplyTask::Role { role, term, leader });
                }
            }
        }
        self.flush_ready_barriers();
        writes
    }

    fn send(&self, m: Message) {
        let Some(&addr) = self.peers.get(&m.to) else {
            tracing::warn!(group = %self.group, to = %m.to, "no address for peer");
            return;
        };
        self.transport.send(addr, self.group, m);
    }

    /// Fails every waiting client and every queued request.
    fn stop(&mut self, failure: Option<Error>, mut inbox: queue::Receiver<GroupInput>) {
        let error = failure.clone().unwrap_or(Error::Shutdown);
        if let Some(failure) = failure {
            tracing::error!(group = %self.group, error = %failure, "group stopped");
            let _ = self.apply.try_send(ApplyTask::Failed(failure));
        }
        self.fail_changes(&error);
        for (_, (_, reply_to)) in std::mem::take(&mut self.pending) {
            let _ = reply_to.send(Err(error.clone()));
        }
        for (_, waiter) in std::mem::take(&mut self.pending_reads) {
            waiter.fail(error.clone());
        }
        self.installer.cancel();
        self.shared.read_lease.close();
        self.shared.read_batches.close();
        inbox.close();
        // Queued proposals were never handed to the core: definitely not
        // applied. (Queued shutdown callers wait for `SharedState::stopped`.)
        while let Some(input) = inbox.try_recv() {
            match input {
                GroupInput::Propose { reply, .. } => {
                    let _ = reply.send(Err(Error::NotRunning));
                }
                GroupInput::Read { waiter, .. } => waiter.fail(Error::NotRunning),
                _ => {}
            }
        }
        self.shared.status.set_stopped();
    }
}

/// Runs `future`, catching its panic (`futures`' `catch_unwind` with std
/// alone): the future is dropped when this returns, either way.
pub(crate) async fn catch_unwind<F: std::future::Future>(
    future: F,
) -> Result<F::Output, Box<dyn std::any::Any + Send>> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(move |cx| {
        let poll = std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx));
        match std::panic::catch_unwind(poll) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    })
    .await
}

/// A caught panic's message, if it has one.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
