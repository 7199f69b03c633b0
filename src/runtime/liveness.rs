//! Server-level liveness for quiet groups (`core::quiesce`): one probe
//! stream per pair of servers, not one heartbeat per group.
//!
//! A quiet group runs no timer, so a follower would never notice that its
//! leader's server died. Instead each server watches every peer server
//! that one of its quiescing groups has a member on: over TCP, the
//! transport's connection to that server sends a `Ping` at least every
//! quarter of the bound below, even when idle, and each `Pong` (or a
//! completed handshake) counts as hearing from the server. A peer server
//! silent for longer than the bound is *down*: every local group with a
//! member there gets [`RaftNode::handle_peer_unreachable`] for it (through
//! its inbox), so that a quiet follower wakes and elects by the usual
//! timers. A server that answers is not enough, though: it may have
//! restarted faster than the bound (its member is now a follower, or gone
//! if its storage was refused), or one of its members may have stopped
//! (fail-stop, removal) while it lives on. So each `Pong` carries the
//! server's incarnation (drawn at start) and a count of its members that
//! stopped, and a change in either is treated as that server going down. A group that goes quiet while one of its peers' servers is down
//! wakes at once (the driver checks), so no notification is lost to a race.
//!
//! Why the transport's `Ping`/`Pong` rather than a new heartbeat frame: the
//! probe already exists on every peer connection, is answered only on a
//! connection authenticated as a server (`inbound.rs`), and travels on a
//! connection this server dialed and authenticated itself (the peer's
//! certificate names its IP), so only the real server can keep itself
//! "alive" and no stranger can. It measures the round trip, so a path
//! broken in either direction counts as silence. One frame per interval per
//! server pair carries the liveness of every group they share; nothing per
//! group travels while the groups are quiet.
//!
//! The bound is the smallest `election_timeout_min` of the local quiescing
//! groups: without quiescence a follower would notice a dead leader after
//! an election timeout, and this keeps detection within about the same
//! order (silence bound + one check interval, then the follower's own
//! election timeout). A false alarm (a slow server) only wakes groups,
//! which is always safe. Over the in-process network a server is down when
//! it left the network.
//!
//! [`RaftNode::handle_peer_unreachable`]: crate::core::RaftNode::handle_peer_unreachable

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::group::GroupInput;
use super::node_manager::Inner;

/// Shortest check interval, whatever the groups' timeouts.
const CHECK_INTERVAL_MIN: Duration = Duration::from_millis(5);

/// What this server knows of its peer servers' liveness. Holds an entry
/// only for servers some local quiescing group has a member on (the
/// address books bound it, never the network).
#[derive(Debug, Default)]
pub(crate) struct PeerLiveness {
    peers: Mutex<BTreeMap<SocketAddr, PeerState>>,
    /// Set when a group came or went or changed its address book: the
    /// monitor reindexes.
    changed: AtomicBool,
    /// Wakes the monitor when `changed` is set.
    changed_notify: Notify,
    /// How often connections must probe for the monitor, in nanoseconds
    /// (0: no probe needed).
    probe_interval_nanos: AtomicU64,
}

#[derive(Debug)]
struct PeerState {
    /// When the server last answered (or when watching began).
    heard: Instant,
    /// Silent for longer than the bound, as of the last check.
    down: bool,
    /// Its incarnation and members stopped, as its last answer said.
    epoch: Option<(u64, u64)>,
    /// The epoch moved since the last check: it restarted, or a member
    /// there stopped.
    epoch_moved: bool,
}

impl PeerLiveness {
    /// The authenticated server at `addr` completed a dial.
    pub(crate) fn heard(&self, addr: SocketAddr) {
        if let Some(peer) = self.peers.lock().expect("liveness lock").get_mut(&addr) {
            peer.heard = Instant::now();
        }
    }

    /// The authenticated server at `addr` answered a probe, naming its
    /// `(incarnation, members stopped)`.
    pub(crate) fn answered(&self, addr: SocketAddr, epoch: (u64, u64)) {
        if let Some(peer) = self.peers.lock().expect("liveness lock").get_mut(&addr) {
            peer.heard = Instant::now();
            if peer.epoch.is_some_and(|known| known != epoch) {
                peer.epoch_moved = true;
            }
            peer.epoch = Some(epoch);
        }
    }

    /// Whether the server at `addr` is down as of the last check.
    pub(crate) fn is_down(&self, addr: SocketAddr) -> bool {
        let peers = self.peers.lock().expect("liveness lock");
        peers.get(&addr).is_some_and(|p| p.down)
    }

    /// How often connections must probe for the monitor, if at all.
    pub(crate) fn probe_interval(&self) -> Option<Duration> {
        match self.probe_interval_nanos.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// A group came or went, or changed its address book.
    pub(crate) fn mark_changed(&self) {
        self.changed.store(true, Ordering::Release);
        self.changed_notify.notify_one();
    }

    /// Watches exactly `addrs` from now on: new ones start as just heard,
    /// others are forgotten.
    fn watch_only(&self, addrs: &BTreeSet<SocketAddr>) {
        let mut peers = self.peers.lock().expect("liveness lock");
        peers.retain(|addr, _| addrs.contains(addr));
        let now = Instant::now();
        for &addr in addrs {
            peers.entry(addr).or_insert(PeerState {
                heard: now,
                down: false,
                epoch: None,
                epoch_moved: false,
            });
        }
    }

    /// This server itself stalled (a paused process, a starved runtime):
    /// its peers could not be heard meanwhile, so their silence counts
    /// from now. A server already found down stays down until heard.
    fn forgive_own_stall(&self) {
        let now = Instant::now();
        for peer in self.peers.lock().expect("liveness lock").values_mut() {
            if !peer.down {
                peer.heard = peer.heard.max(now);
            }
        }
    }

    /// Marks servers down or up by `reachable` (`None`: by how long ago
    /// they were heard, against `silence_max`); returns those that just
    /// went down, or restarted or lost a member since the last check.
    fn check(
        &self,
        silence_max: Duration,
        reachable: impl Fn(SocketAddr) -> Option<bool>,
    ) -> Vec<SocketAddr> {
        let now = Instant::now();
        let mut peers = self.peers.lock().expect("liveness lock");
        let mut lost = Vec::new();
        for (&addr, peer) in peers.iter_mut() {
            let up = reachable(addr).unwrap_or(now.duration_since(peer.heard) <= silence_max);
            if (!up && !peer.down) || peer.epoch_moved {
                lost.push(addr);
            }
            peer.down = !up;
            peer.epoch_moved = false;
        }
        lost
    }
}

/// The local quiescing groups by peer server, rebuilt when groups change.
#[derive(Default)]
struct Watched {
    /// Each watched server's groups' inboxes.
    groups: BTreeMap<SocketAddr, Vec<super::queue::Sender<GroupInput>>>,
    /// The smallest `election_timeout_min` among them.
    silence_max: Option<Duration>,
}

impl Watched {
    fn build(inner: &Inner) -> Self {
        let mut watched = Watched::default();
        for (_, node) in inner.groups() {
            let Some(quiet) = node.shared.liveness_watch() else {
                continue;
            };
            watched.silence_max = Some(
                watched
                    .silence_max
                    .map_or(quiet.silence_max, |s| s.min(quiet.silence_max)),
            );
            for addr in quiet.peer_servers {
                watched
                    .groups
                    .entry(addr)
                    .or_default()
                    .push(node.inbox.clone());
            }
        }
        watched
    }
}

/// How often to probe and check against a silence bound: a server is
/// heard several times within the bound, and a silent one found within a
/// quarter of it.
fn check_interval(silence_max: Duration) -> Duration {
    (silence_max / 4).max(CHECK_INTERVAL_MIN)
}

/// What a quiescing group asks of the monitor.
#[derive(Clone, Debug, Default)]
pub(crate) struct LivenessWatch {
    /// The servers of its other members.
    pub(crate) peer_servers: BTreeSet<SocketAddr>,
    /// Its `election_timeout_min`.
    pub(crate) silence_max: Duration,
}

/// Watches peer servers until the server shuts down, telling the groups
/// with a member on a server that went down.
pub(crate) async fn run_liveness_monitor(manager: Weak<Inner>) {
    let mut watched = Watched::default();
    // When the last check ran: a check much later than its interval means
    // this server stalled, not that its peers fell silent.
    let mut last_check: Option<Instant> = None;
    loop {
        let Some(inner) = manager.upgrade() else {
            return;
        };
        if inner.is_closed() {
            return;
        }
        let liveness = Arc::clone(inner.transport.liveness());
        if liveness.changed.swap(false, Ordering::AcqRel) {
            watched = Watched::build(&inner);
            let addrs: BTreeSet<SocketAddr> = watched.groups.keys().copied().collect();
            liveness.watch_only(&addrs);
            let probe_nanos = watched.silence_max.map_or(0, |s| {
                u64::try_from(check_interval(s).as_nanos()).unwrap_or(u64::MAX)
            });
            liveness
                .probe_interval_nanos
                .store(probe_nanos, Ordering::Relaxed);
            for &addr in &addrs {
                inner.transport.probe(addr);
            }
        }
        let Some(silence_max) = watched.silence_max else {
            // No quiescing group: nothing to watch until one comes.
            last_check = None;
            drop(inner);
            liveness.changed_notify.notified().await;
            continue;
        };
        let now = Instant::now();
        let interval = check_interval(silence_max);
        if last_check.is_some_and(|last| now.duration_since(last) > interval + silence_max / 2) {
            tracing::info!(
                ?silence_max,
                "this server stalled; its peers' silence counts from now"
            );
            liveness.forgive_own_stall();
        }
        last_check = Some(now);
        let lost = liveness.check(silence_max, |addr| inner.reachable_in_process(addr));
        for addr in lost {
            inner
                .stats
                .peer_servers_lost
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(%addr, ?silence_max, "peer server silent, restarted or lost a member; waking its quiet groups");
            for inbox in watched.groups.get(&addr).into_iter().flatten() {
                // A full inbox belongs to a busy group, which is not
                // quiet; if it goes quiet later, it checks for itself.
                let _ = inbox.try_send(GroupInput::PeerServerDown(addr));
            }
        }
        drop(inner);
        tokio::time::sleep(interval).await;
    }
}
