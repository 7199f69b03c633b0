//! `NodeManager` (braft's `NodeManager` + `RaftService`): one TCP listener
//! per server process serving every Raft group on it, routing inbound
//! messages by group id.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::apply_loop::ApplyLoop;
use super::auth::{Dialer, Security};
use super::error::Error;
use super::group::{GroupDriver, GroupInput, SharedState, catch_unwind, panic_message};
use super::group_id::GroupId;
use super::group_storage::GroupStorage;
use super::inbound::{self, ConnectionCounts, Listener};
use super::liveness::run_liveness_monitor;
use super::metrics::ServerSnapshot;
use super::node::Node;
use super::observer::GroupObserver;
use super::options::GroupOptions;
use super::peer_lives::PeerLives;
use super::queue;
use super::session::SessionStateMachine;
use super::snapshot_copy::{FileService, SnapshotSource};
use super::snapshot_install::{SnapshotInstaller, SourceResolver};
use super::snapshot_policy::SnapshotPolicy;
#[cfg(feature = "testing")]
use super::snapshot_storage::SnapshotStorage;
use super::start_point::{RecoveredLog, recover_start_point};
use super::state_machine::StateMachine;
use super::throttle::Throttle;
use super::transport::{LocalNetwork, Transport, TransportOptions};
use super::wire::proto;
use super::write_task::WritePath;
use crate::core::{InitialState, RaftNode};
use crate::storage::StorageError;

/// Counters of what the server refused, for tests and the status page.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections refused at the connection caps.
    pub refused_connections: AtomicU64,
    /// Connections closed in the handshake: no secure channel, a refused
    /// or missing `Hello`, or too slow.
    pub refused_handshakes: AtomicU64,
    /// Requests refused because the connection's identity may not send
    /// them (an operator's Raft message, a peer's admin request).
    pub forbidden_requests: AtomicU64,
    /// Connections closed for idling or for a frame that came too slowly.
    pub timed_out_connections: AtomicU64,
    /// Failed accepts (e.g. out of file descriptors), each followed by a
    /// backoff.
    pub accept_errors: AtomicU64,
    /// Connections closed for a frame over the size limit.
    pub oversized_frames: AtomicU64,
    /// Connections closed for a frame that is not a valid message.
    pub malformed_frames: AtomicU64,
    /// Messages answered "unknown group".
    pub unknown_group_messages: AtomicU64,
    /// Messages dropped because a group's inbox was full.
    pub dropped_messages: AtomicU64,
    /// Snapshot file bytes sent to copying peers.
    pub snapshot_bytes_served: AtomicU64,
    /// Connections accepted within the caps.
    pub accepted_connections: AtomicU64,
    /// Connections closed because a later start of their server connected
    /// (what its earlier life had not delivered must not arrive now).
    pub superseded_connections: AtomicU64,
    /// Times a peer server was found silent, restarted or short of a
    /// member, each waking this server's quiet groups that share it.
    pub peer_servers_lost: AtomicU64,
}

/// What the server's tasks share (the registry, the inbound side, the
/// transport).
pub(crate) struct Inner {
    local_addr: SocketAddr,
    /// Set when the server lives on an in-process network instead of TCP.
    local_network: Option<LocalNetwork>,
    routes: Mutex<BTreeMap<GroupId, Node>>,
    /// Set by `shutdown`: inbound connections stop answering (a server
    /// shut down must look dead to its peers' liveness probes).
    closed: AtomicBool,
    /// This start of the server, as its probes' answers name it.
    incarnation: u64,
    /// Group members that stopped here (failed, removed, shut down), as
    /// its probes' answers count them.
    members_stopped: AtomicU64,
    /// Groups `add_group` is starting (recovering, loading a snapshot)
    /// without holding `routes`, which every incoming message needs.
    starting: Mutex<BTreeSet<GroupId>>,
    pub(crate) transport: Transport,
    pub(crate) options: TransportOptions,
    pub(crate) security: Security,
    /// Opens this server's outbound connections (as this server).
    dialer: Dialer,
    /// The accept loops (Raft listener, admin listener if any).
    accept: Mutex<Vec<JoinHandle<()>>>,
    /// Operators are served on a separate admin listener, not here.
    admin_elsewhere: AtomicBool,
    pub(crate) stats: ServerStats,
    pub(crate) connections: Arc<ConnectionCounts>,
    /// Which start of each peer server its connections here belong to.
    pub(crate) peer_lives: Arc<PeerLives>,
    /// The groups whose snapshots peers may copy from here.
    files: FileService,
    /// The rate every group's snapshot saves share
    /// (`TransportOptions::snapshot_save_bytes_per_sec`).
    save_throttle: Throttle,
}

/// Many Raft groups on one TCP server. Cheap to clone.
///
/// # Example
///
/// A server, one group on it, and shutdown (`examples/embed.rs` runs
/// three servers):
///
/// ```
/// # use std::time::Duration;
/// # use oar::prelude::*;
/// # /// Answers each command with itself.
/// # struct Echo;
/// # impl StateMachine for Echo {
/// #     fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
/// #         commands.iter().map(|c| c.data.clone()).collect()
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = NodeManager::bind(
///     "127.0.0.1:0".parse()?,
///     Security::insecure("my-cluster"),
///     TransportOptions::default(),
/// )
/// .await?;
/// let peers = [(NodeId(1), server.local_addr())].into();
/// let options = GroupOptions::new(GroupId(7), NodeId(1), peers);
/// let node = server.add_group(options, MemStorage::new(), Echo)?;
/// assert_eq!(server.group(GroupId(7)).map(|n| n.id()), Some(NodeId(1)));
/// assert_eq!(server.groups(), vec![GroupId(7)]);
/// server.remove_group(node.group()).await?;
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct NodeManager {
    inner: Arc<Inner>,
}

impl NodeManager {
    /// Listens on `addr` (port 0 picks a free port); every connection, in
    /// and out, is authenticated as `security` says.
    ///
    /// # Errors
    /// The listener could not be bound.
    pub async fn bind(
        addr: SocketAddr,
        security: Security,
        options: TransportOptions,
    ) -> std::io::Result<NodeManager> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let mut options = options;
        if let Some(limit) = descriptor_limit() {
            // Connections may take at most half the process's descriptors:
            // the rest stay for segments, snapshots and the service's own
            // clients, so that strangers cannot starve the log of files.
            let cap = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
            if options.connections_max > cap {
                tracing::info!(
                    cap,
                    limit,
                    "connections_max lowered to half the descriptor limit"
                );
                options.connections_max = cap;
            }
        }
        if security.is_insecure() {
            tracing::warn!(%local_addr, "running INSECURE: connections are not authenticated");
        }
        let incarnation = incarnation();
        let dialer = Dialer::server(&security, local_addr, options.connect_timeout)
            .with_stall_timeout(options.stall_timeout)
            .with_incarnation(incarnation);
        let inner = Arc::new(Inner {
            local_addr,
            local_network: None,
            routes: Mutex::default(),
            closed: AtomicBool::new(false),
            incarnation,
            members_stopped: AtomicU64::new(0),
            starting: Mutex::default(),
            transport: Transport::tcp(options.clone(), dialer.clone()),
            files: file_service(&options),
            save_throttle: Throttle::new(options.snapshot_save_bytes_per_sec),
            options,
            security,
            dialer,
            accept: Mutex::default(),
            admin_elsewhere: AtomicBool::new(false),
            stats: ServerStats::default(),
            connections: Arc::default(),
            peer_lives: Arc::default(),
        });
        let accept = tokio::spawn(inbound::accept_loop(
            listener,
            Arc::downgrade(&inner),
            Listener::Raft,
        ));
        inner.accept.lock().expect("accept lock").push(accept);
        tokio::spawn(run_liveness_monitor(Arc::downgrade(&inner)));
        Ok(NodeManager { inner })
    }

    /// A server on an in-process network, reachable at `addr` by the other
    /// servers of `network` (no sockets: for benchmarks and tests; feature
    /// `testing`).
    #[cfg(feature = "testing")]
    pub fn local(network: &LocalNetwork, addr: SocketAddr) -> NodeManager {
        let options = TransportOptions::default();
        // In process there is no stranger: nothing to authenticate.
        let security = Security::insecure("local");
        let inner = Arc::new(Inner {
            local_addr: addr,
            local_network: Some(network.clone()),
            routes: Mutex::default(),
            closed: AtomicBool::new(false),
            incarnation: incarnation(),
            members_stopped: AtomicU64::new(0),
            starting: Mutex::default(),
            transport: Transport::local(network.clone()),
            files: file_service(&options),
            save_throttle: Throttle::new(options.snapshot_save_bytes_per_sec),
            dialer: Dialer::server(&security, addr, options.connect_timeout),
            options,
            security,
            accept: Mutex::default(),
            admin_elsewhere: AtomicBool::new(false),
            stats: ServerStats::default(),
            connections: Arc::default(),
            peer_lives: Arc::default(),
        });
        let weak = Arc::downgrade(&inner);
        network.register_file_handler(
            addr,
            Arc::new(move |request| {
                let inner = weak.upgrade();
                Box::pin(async move {
                    let inner = inner?;
                    Some(inner.serve_file(request).await)
                })
            }),
        );
        let weak = Arc::downgrade(&inner);
        network.register(
            addr,
            Arc::new(move |group, message| {
                if let Some(inner) = weak.upgrade() {
                    inner.route(group, message, None);
                }
            }),
        );
        tokio::spawn(run_liveness_monitor(Arc::downgrade(&inner)));
        NodeManager { inner }
    }

    /// The address peers reach this server at.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Serves operators (admin requests, the status page) on `addr`, a
    /// separate listener (e.g. on loopback, or a management network),
    /// instead of the Raft address, where they are then refused. Peers are
    /// refused there. Returns the bound address.
    ///
    /// # Errors
    /// The listener could not be bound.
    pub async fn serve_admin(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        self.inner.admin_elsewhere.store(true, Ordering::Release);
        let accept = tokio::spawn(inbound::accept_loop(
            listener,
            Arc::downgrade(&self.inner),
            Listener::Admin,
        ));
        self.inner.accept.lock().expect("accept lock").push(accept);
        Ok(bound)
    }

    /// What the server refused so far.
    pub fn stats(&self) -> &ServerStats {
        &self.inner.stats
    }

    /// Outbound messages dropped so far because their peer server's send
    /// queue was full ([`TransportOptions::queue_frames_max`]).
    pub fn dropped_outbound_messages(&self) -> u64 {
        self.inner.transport.dropped_frames()
    }

    /// Inbound connections open now.
    pub fn open_connections(&self) -> usize {
        self.inner.connections.total()
    }

    /// Lets peers copy `group`'s snapshots from `storage` (replacing any
    /// earlier registration), as `add_group` does for its group (feature
    /// `testing`: for a test serving snapshots without a group).
    #[cfg(feature = "testing")]
    pub fn serve_snapshots(&self, group: GroupId, storage: Arc<dyn SnapshotStorage>) {
        self.inner.files.serve(group, storage);
    }

    /// Stops serving `group`'s snapshots; copies under way fail with
    /// [`CopyError::UnknownGroup`](super::CopyError::UnknownGroup)
    /// (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn stop_serving_snapshots(&self, group: GroupId) {
        self.inner.files.stop(group);
    }

    /// The server-wide snapshot copy throttle: serving copies take from it,
    /// and so should copies into this server's groups.
    pub fn snapshot_throttle(&self) -> &Throttle {
        self.inner.files.throttle()
    }

    /// Where this server copies snapshots from the server at `addr`: over
    /// TCP, or in process for a `NodeManager::local` server.
    pub fn snapshot_source(&self, addr: SocketAddr) -> SnapshotSource {
        match &self.inner.local_network {
            Some(network) => SnapshotSource::Local {
                network: network.clone(),
                addr,
            },
            None => SnapshotSource::Tcp {
                addr,
                dialer: self.inner.dialer.clone(),
            },
        }
    }

    fn snapshot_resolver(&self) -> SourceResolver {
        let manager = self.clone();
        Arc::new(move |addr| manager.snapshot_source(addr))
    }

    /// Starts a group member from its storage. `storage` and
    /// `state_machine` are taken by value (a `Box<dyn ..>` of either works
    /// too); the state machine then lives on the group's apply task, so a
    /// service that reads its state keeps a shared handle on it (see
    /// `examples/embed.rs`).
    ///
    /// # Errors
    /// `GroupExists`, `Options` (invalid options, or this node missing from
    /// `peers`), `Storage` (recovery failed).
    pub fn add_group(
        &self,
        options: GroupOptions,
        storage: impl GroupStorage,
        state_machine: impl StateMachine,
    ) -> Result<Node, Error> {
        let mut storage: Box<dyn GroupStorage> = Box::new(storage);
        let state_machine: Box<dyn StateMachine> = Box::new(state_machine);
        if !options.peers.contains_key(&options.raft.id) {
            return Err(Error::Options(format!(
                "{} is not among the peers",
                options.raft.id
            )));
        }
        options
            .check_fits(
                self.inner.options.frame_bytes_max,
                self.inner.options.message_entries_max,
            )
            .map_err(Error::Options)?;
        let _reservation = self.reserve(options.group)?;
        let recovered = storage.recover().map_err(StorageError::from_failure)?;
        let snapshots = storage.snapshots();
        let mut state_machine = match &options.sessions {
            Some(sessions) => Box::new(SessionStateMachine::new(state_machine, sessions.clone())),
            None => state_machine,
        };
        let start = recover_start_point(
            &*snapshots,
            state_machine.as_mut(),
            RecoveredLog {
                last_purged: recovered.last_purged,
                entries: &recovered.entries,
                bootstrap: options.bootstrap_membership(),
            },
        )?;
        // The configuration at the start of the log: the snapshot's, or the
        // bootstrap one; the core layers the log's configuration entries on
        // top, so a truncated one rolls back.
        let initial = InitialState {
            hard_state: recovered.hard_state,
            membership: options.bootstrap_membership(),
            snapshot: start.snapshot.clone(),
            last_purged: recovered.last_purged,
            entries: recovered.entries,
            applied: start.resumed,
        };
        let clock: std::sync::Arc<dyn super::clock::Clock> = match &options.clock {
            Some(clock) => std::sync::Arc::clone(clock),
            None => std::sync::Arc::new(super::clock::MonotonicClock {
                epoch: tokio::time::Instant::now(),
            }),
        };
        let now = clock.local(tokio::time::Instant::now());
        let mut raft_options = options.raft.clone();
        if !storage.reads_entries() {
            // Evicted entries could not be read back for a lagging peer.
            raft_options.log_cache_bytes_max = None;
        }
        let raft =
            RaftNode::new(raft_options, initial, now).map_err(|e| Error::Options(e.to_string()))?;
        let (inbox_tx, inbox) = queue::bounded(options.inbox_max);
        let (apply_tx, apply_tasks) = queue::unbounded();
        let shared = Arc::new(SharedState::new(
            options.group,
            options.raft.id,
            options.bootstrap_membership(),
            options.metrics,
            Arc::clone(&clock),
        ));
        shared
            .applied_index
            .store(start.applied.index.0, Ordering::Release);
        shared.status.set_applied(start.applied.index);
        let (log, write_task) = WritePath::start(storage, Arc::clone(&shared.metrics));
        let driver = Box::new(GroupDriver {
            group: options.group,
            raft,
            clock,
            peers: options.peers.clone(),
            transport: self.inner.transport.clone(),
            log,
            apply: apply_tx,
            shared: shared.clone(),
            pending: Default::default(),
            pending_changes: Vec::new(),
            pending_reads: Default::default(),
            ready_barriers: Vec::new(),
            batch_reads: Default::default(),
            installer: SnapshotInstaller {
                group: options.group,
                snapshots: Arc::clone(&snapshots),
                inbox: inbox_tx.clone(),
                source: self.snapshot_resolver(),
                throttle: self.snapshot_throttle().clone(),
                options: Default::default(),
                task: None,
            },
            observer: GroupObserver::default(),
            liveness: Arc::clone(self.inner.transport.liveness()),
            loads_due: Vec::new(),
        });
        driver.publish_peer_servers();
        let node = Node {
            group: options.group,
            id: options.raft.id,
            inbox: inbox_tx.clone(),
            shared: shared.clone(),
            command_bytes_max: options.command_bytes_max,
            sessions: options.sessions.is_some(),
        };
        let mut routes = self.inner.routes.lock().expect("routes lock");
        routes.insert(options.group, node.clone());
        let apply_loop = Box::new(ApplyLoop {
            sm: state_machine,
            snapshots: Arc::clone(&snapshots),
            group: inbox_tx,
            applied_index: shared.applied_index.clone(),
            shared: Arc::clone(&shared),
            last_applied: start.applied,
            membership: start.membership,
            policy: SnapshotPolicy {
                entries: options.snapshot_interval,
                log_bytes: options.snapshot_log_bytes,
                period: options.snapshot_period,
            },
            since_snapshot: Default::default(),
            snapshot_at: tokio::time::Instant::now(),
            saving: None,
            save_throttle: self.inner.save_throttle.clone(),
        });
        self.inner
            .files
            .serve(options.group, Arc::clone(&snapshots));
        let apply = tokio::spawn(apply_loop.run(apply_tasks));
        let manager = Arc::downgrade(&self.inner);
        let group = options.group;
        // One task: the driver's panic is caught here, so that `stopped`
        // still means that storage is quiet.
        tokio::spawn(async move {
            if let Err(panic) = catch_unwind(driver.run(inbox)).await {
                tracing::error!(%group, panic = panic_message(&*panic), "group task panicked");
            }
            // The driver is gone with its queues: the writer finishes what
            // was queued, the apply loop what was committed.
            if let Some(write_task) = write_task {
                let _ = write_task.await;
            }
            let _ = apply.await;
            if let Some(manager) = manager.upgrade() {
                // Under the routes lock, so that a successor `add_group`
                // (which takes it first) never has its serving undone.
                let mut routes = manager.routes.lock().expect("routes lock");
                routes.remove(&group);
                manager.files.stop(group);
                manager.transport.liveness().mark_changed();
                manager.members_stopped.fetch_add(1, Ordering::Relaxed);
            }
            shared.stopped.send_replace(true);
        });
        Ok(node)
    }

    /// Claims `group` for an `add_group` under way; released on drop.
    fn reserve(&self, group: GroupId) -> Result<Reservation<'_>, Error> {
        let routes = self.inner.routes.lock().expect("routes lock");
        let mut starting = self.inner.starting.lock().expect("starting lock");
        if routes.contains_key(&group) || !starting.insert(group) {
            return Err(Error::GroupExists(group));
        }
        Ok(Reservation {
            starting: &self.inner.starting,
            group,
        })
    }

    /// The local member of `group`, if it runs here.
    pub fn group(&self, group: GroupId) -> Option<Node> {
        self.inner
            .routes
            .lock()
            .expect("routes lock")
            .get(&group)
            .cloned()
    }

    /// The groups running here.
    pub fn groups(&self) -> Vec<GroupId> {
        self.inner
            .routes
            .lock()
            .expect("routes lock")
            .keys()
            .copied()
            .collect()
    }

    /// Stops and removes a group member.
    ///
    /// # Errors
    /// `GroupNotFound`.
    pub async fn remove_group(&self, group: GroupId) -> Result<(), Error> {
        let node = self.group(group).ok_or(Error::GroupNotFound(group))?;
        node.shutdown().await;
        Ok(())
    }

    /// Stops accepting connections, shuts every group down and closes the
    /// outbound connections.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        // Ends the liveness monitor, even one waiting for a group.
        self.inner.transport.liveness().mark_changed();
        for accept in self.inner.accept.lock().expect("accept lock").drain(..) {
            accept.abort();
        }
        let nodes: Vec<Node> = self
            .inner
            .routes
            .lock()
            .expect("routes lock")
            .values()
            .cloned()
            .collect();
        for node in nodes {
            node.shutdown().await;
        }
        self.inner.transport.close();
        if let Some(network) = &self.inner.local_network {
            network.unregister(self.inner.local_addr);
        }
    }
}

/// A number that differs at each start of a server at one address: the
/// wall clock at start, in nanoseconds (a restart comes later). The
/// simulator's clock is simulated, so runs stay deterministic.
fn incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The process's limit on open file descriptors, where there is one to ask
/// (not in the simulator, whose connections take none).
fn descriptor_limit() -> Option<u64> {
    #[cfg(all(unix, not(madsim)))]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
    }
    #[cfg(not(all(unix, not(madsim))))]
    {
        None
    }
}

/// The file service `options` call for.
fn file_service(options: &TransportOptions) -> FileService {
    FileService::new(
        Throttle::new(options.snapshot_bytes_per_sec),
        options.frame_bytes_max,
    )
}

impl Inner {
    /// Answers a snapshot copier's request.
    pub(crate) async fn serve_file(
        &self,
        request: proto::GetFileRequest,
    ) -> proto::GetFileResponse {
        self.files
            .handle(request, &self.stats.snapshot_bytes_served)
            .await
    }

    /// The answer to a peer's probe `sequence`: this server's incarnation
    /// and members stopped ride along (`liveness.rs`).
    pub(crate) fn pong(&self, sequence: u64) -> proto::Probe {
        proto::Probe {
            sequence,
            incarnation: self.incarnation,
            members_stopped: self.members_stopped.load(Ordering::Relaxed),
        }
    }

    /// Whether `shutdown` began.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether the server at `addr` is on this server's in-process network
    /// (`None` over TCP, where only probes tell).
    pub(crate) fn reachable_in_process(&self, addr: SocketAddr) -> Option<bool> {
        self.local_network
            .as_ref()
            .map(|network| network.is_registered(addr))
    }

    /// Whether operators are served on the `which` listener.
    pub(crate) fn serves_operators(&self, which: Listener) -> bool {
        match which {
            Listener::Admin => true,
            Listener::Raft => !self.admin_elsewhere.load(Ordering::Acquire),
        }
    }

    /// The local member of `group`, if it runs here.
    pub(crate) fn node(&self, group: GroupId) -> Option<Node> {
        self.routes
            .lock()
            .expect("routes lock")
            .get(&group)
            .cloned()
    }

    /// Every group served here, by id.
    pub(crate) fn groups(&self) -> Vec<(GroupId, Node)> {
        let routes = self.routes.lock().expect("routes lock");
        routes.iter().map(|(&g, n)| (g, n.clone())).collect()
    }

    /// Hands a message from the server at `sender` (`None`: in process) to
    /// its group's inbox. Returns false if no such group runs here. A full
    /// inbox drops the message (Raft resends).
    pub(crate) fn route(
        &self,
        group: GroupId,
        message: crate::core::Message,
        sender: Option<SocketAddr>,
    ) -> bool {
        let inbox = self
            .routes
            .lock()
            .expect("routes lock")
            .get(&group)
            .map(|n| n.inbox.clone());
        let Some(inbox) = inbox else {
            self.stats
                .unknown_group_messages
                .fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if inbox
            .try_send(GroupInput::Message { message, sender })
            .is_err()
        {
            self.stats.dropped_messages.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

/// A group `add_group` is starting; dropping it lets the id be claimed again
/// (by then the group is in `routes`, or its start failed).
struct Reservation<'a> {
    starting: &'a Mutex<BTreeSet<GroupId>>,
    group: GroupId,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.starting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.group);
    }
}

impl Inner {
    /// The server's counters now, for `/metrics` and `/status.json`.
    pub(crate) fn server_snapshot(&self) -> ServerSnapshot {
        ServerSnapshot::of(
            &self.stats,
            self.connections.total(),
            self.transport.dropped_frames(),
        )
    }
}
