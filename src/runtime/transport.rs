//! Outbound peer messages. Over TCP: one connection per peer server, shared
//! by every group on this server, each fed by its own sender task. In
//! process: a [`LocalNetwork`] hands messages straight to the receiving
//! server's router (for benchmarks and tests of the runtime without sockets).
//!
//! Raft messages are one-way and the protocol tolerates loss, so the
//! transport never blocks a group: a full queue drops the message, and a
//! write that does not finish within `write_timeout` (a partition can hold a
//! TCP stream for a long time) drops the connection and reconnects with
//! backoff. The core's own timers resend what matters.
//!
//! A real kernel keeps a connection whose packets are being dropped alive for
//! many minutes, retransmitting with exponential backoff, and uses a healed
//! path only at its next retransmission: tens of seconds after a long
//! partition. So a connection that makes no progress for `stall_timeout` is
//! killed by the kernel (`TCP_USER_TIMEOUT`, keepalive) and replaced at once,
//! and reconnects back off only up to `backoff_max`, well below an election
//! timeout (tests/real_network.rs measures this on real namespaces).
//!
//! Where no kernel watches (the simulator, systems without
//! `TCP_USER_TIMEOUT`) a blackholed path takes every write without an error
//! and the connection looks alive forever. So the transport probes too:
//! while it writes, a `Ping` at most every quarter of `probe_timeout`, which
//! the other end answers with a `Pong` on the same connection; a ping left
//! unanswered for `probe_timeout` replaces the connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message as _;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::auth::Dialer;
use super::backoff::Backoff;
use super::clock::sleep_until_or_never;
use super::group_id::GroupId;
use super::liveness::PeerLiveness;
use super::snapshot_copy::FileHandler;
use super::wire::convert::to_proto;
use super::wire::frame::{FRAME_BYTES_MAX, encode_frame, read_frame};
use super::wire::proto;
use crate::core::Message;

/// Connection tuning.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// Frames queued per peer before new ones are dropped.
    pub queue_frames_max: usize,
    /// Give up on an outbound connection attempt (TCP, secure channel and
    /// `Hello`) after this long.
    pub connect_timeout: Duration,
    /// Give up on a write (and the connection) after this long.
    pub write_timeout: Duration,
    /// The kernel drops a connection whose sent data stays unacknowledged
    /// this long, or whose idle peer stops answering keepalive probes
    /// (Linux; a no-op elsewhere and in the simulator).
    pub stall_timeout: Duration,
    /// A peer connection whose progress probe stays unanswered this long is
    /// replaced. A probe waits behind everything written before it, so this
    /// is generous; where the kernel watches (`stall_timeout`) it catches
    /// dead paths first.
    pub probe_timeout: Duration,
    /// First reconnect delay; doubles up to `backoff_max`. Each wait is
    /// drawn from `[delay / 2, delay)`, so that senders spread apart.
    pub backoff_min: Duration,
    /// Largest reconnect delay: well below the election timeout, so that a
    /// peer back from a partition is reached before the group gives up.
    pub backoff_max: Duration,
    /// Largest frame accepted from a peer.
    pub frame_bytes_max: u32,
    /// The server's snapshot copy rate limit, shared by every group's
    /// serving and receiving copies (`None`: unlimited).
    pub snapshot_bytes_per_sec: Option<u64>,
    /// The server's snapshot save rate limit: the bytes every group's
    /// saves stream into their snapshot files, together (`None`:
    /// unlimited; hard links cost nothing). A save that streams a large
    /// state at the disk's full speed leaves the log's fsyncs waiting
    /// behind its writeback; a limit below the disk's bandwidth keeps
    /// writes going at their pace during the save, which then takes
    /// longer.
    pub snapshot_save_bytes_per_sec: Option<u64>,
    /// Inbound connections open at once, all sources together; more are
    /// closed at once.
    pub connections_max: usize,
    /// Inbound connections open at once from one IP address.
    pub connections_per_ip_max: usize,
    /// The secure channel and the `Hello` must be done within this long
    /// (in and out).
    pub handshake_timeout: Duration,
    /// An inbound connection with no frame for this long is closed.
    pub idle_timeout: Duration,
    /// Once a frame began, its body must arrive within this long.
    pub frame_timeout: Duration,
    /// Requests one client connection may have in flight at once (it
    /// sends them without waiting; answers come as each finishes). Past
    /// this the server stops reading that connection until one finishes.
    pub client_requests_in_flight_max: usize,
    /// Most log entries one message may carry; a frame with more is refused
    /// before it is decoded (decoding inflates small entries ~50×). Must
    /// be at least every group's `RaftOptions::append_entries_max`.
    pub message_entries_max: usize,
    /// First wait after a failed accept (e.g. out of file descriptors);
    /// doubles up to `accept_backoff_max`.
    pub accept_backoff_min: Duration,
    /// Longest wait after failed accepts.
    pub accept_backoff_max: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            queue_frames_max: 4096,
            // A lost SYN is retried after this (the kernel itself would wait
            // a second): a healed peer is reached within about this long.
            connect_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_secs(2),
            // The default election timeout's lower bound: a connection
            // stuck that long is of no use to Raft anyway.
            stall_timeout: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            frame_bytes_max: FRAME_BYTES_MAX,
            snapshot_bytes_per_sec: None,
            snapshot_save_bytes_per_sec: None,
            connections_max: 1024,
            connections_per_ip_max: 64,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            frame_timeout: Duration::from_secs(30),
            client_requests_in_flight_max: 256,
            message_entries_max: 65_536,
            accept_backoff_min: Duration::from_millis(5),
            accept_backoff_max: Duration::from_secs(1),
        }
    }
}

/// Delivers one inbound message to a server's groups.
pub type Router = Arc<dyn Fn(GroupId, Message) + Send + Sync>;

/// Servers in one process, reachable by address without sockets (a test
/// double: made only with the `testing` feature).
#[derive(Clone)]
#[cfg_attr(feature = "testing", derive(Default))]
#[cfg_attr(not(feature = "testing"), doc(hidden))]
pub struct LocalNetwork {
    routers: Arc<Mutex<BTreeMap<SocketAddr, Router>>>,
    /// Each server's snapshot file service.
    file_handlers: Arc<Mutex<BTreeMap<SocketAddr, FileHandler>>>,
}

impl LocalNetwork {
    /// An empty network.
    #[cfg(feature = "testing")]
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn register(&self, addr: SocketAddr, router: Router) {
        self.routers
            .lock()
            .expect("network lock")
            .insert(addr, router);
    }

    pub(crate) fn unregister(&self, addr: SocketAddr) {
        self.routers.lock().expect("network lock").remove(&addr);
        self.file_handlers
            .lock()
            .expect("network lock")
            .remove(&addr);
    }

    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn register_file_handler(&self, addr: SocketAddr, handler: FileHandler) {
        self.file_handlers
            .lock()
            .expect("network lock")
            .insert(addr, handler);
    }

    /// Whether a server is registered at `addr`.
    pub(crate) fn is_registered(&self, addr: SocketAddr) -> bool {
        self.routers
            .lock()
            .expect("network lock")
            .contains_key(&addr)
    }

    /// The snapshot file service of the server at `addr`.
    pub(crate) fn file_handler(&self, addr: SocketAddr) -> Option<FileHandler> {
        self.file_handlers
            .lock()
            .expect("network lock")
            .get(&addr)
            .cloned()
    }

    fn deliver(&self, addr: SocketAddr, group: GroupId, message: Message) {
        let router = self
            .routers
            .lock()
            .expect("network lock")
            .get(&addr)
            .cloned();
        if let Some(router) = router {
            router(group, message);
        }
    }
}

impl std::fmt::Debug for LocalNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNetwork").finish_non_exhaustive()
    }
}

/// Per-peer frame queues of the TCP transport.
type SenderMap = Mutex<BTreeMap<SocketAddr, mpsc::Sender<Bytes>>>;

/// Sends messages to peer servers.
#[derive(Clone, Debug)]
pub struct Transport {
    kind: TransportKind,
    /// What the connections' probes learn of the peer servers' liveness.
    liveness: Arc<PeerLiveness>,
    /// Frames dropped because their peer's queue was full.
    dropped: Arc<AtomicU64>,
}

#[derive(Clone, Debug)]
enum TransportKind {
    Tcp {
        senders: Arc<SenderMap>,
        options: Box<TransportOptions>,
        dialer: Dialer,
    },
    /// Made only by `Transport::local` (feature `testing`).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Local(LocalNetwork),
}

impl Transport {
    /// A TCP transport with these options, connecting through `dialer`.
    pub fn tcp(options: TransportOptions, dialer: Dialer) -> Self {
        Transport {
            kind: TransportKind::Tcp {
                senders: Arc::default(),
                options: Box::new(options),
                dialer,
            },
            liveness: Arc::default(),
            dropped: Arc::default(),
        }
    }

    /// An in-process transport over `network`.
    #[cfg(feature = "testing")]
    pub fn local(network: LocalNetwork) -> Self {
        Transport {
            kind: TransportKind::Local(network),
            liveness: Arc::default(),
            dropped: Arc::default(),
        }
    }

    /// The peer servers' liveness, as the probes see it.
    pub(crate) fn liveness(&self) -> &Arc<PeerLiveness> {
        &self.liveness
    }

    /// Frames dropped so far because their peer's queue was full (each a
    /// lost message the protocol recovers from by retrying, at a cost).
    pub fn dropped_frames(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Keeps a connection to the server at `addr`, probing it even while
    /// nothing else is sent (the liveness monitor's peers). In process: a
    /// no-op (the network itself says who is there).
    pub(crate) fn probe(&self, addr: SocketAddr) {
        if let TransportKind::Tcp {
            senders,
            options,
            dialer,
        } = &self.kind
        {
            let mut senders = senders.lock().expect("transport lock");
            if senders.get(&addr).is_none_or(mpsc::Sender::is_closed) {
                let tx = spawn_sender(addr, options, dialer, &self.liveness);
                senders.insert(addr, tx);
            }
        }
    }

    /// Sends `message` of `group` to the server at `addr`. Returns false if
    /// it was dropped because the peer's queue is full.
    pub fn send(&self, addr: SocketAddr, group: GroupId, message: Message) -> bool {
        match &self.kind {
            TransportKind::Tcp {
                senders,
                options,
                dialer,
            } => {
                let frame = proto::Frame {
                    kind: Some(proto::frame::Kind::Raft(to_proto(group, &message))),
                };
                let body = frame.encode_to_vec();
                let mut out = BytesMut::with_capacity(body.len() + 4);
                encode_frame(&body, &mut out);
                let frame = out.freeze();
                let (liveness, dropped) = (&self.liveness, &self.dropped);
                send_frame(senders, options, dialer, liveness, dropped, addr, frame)
            }
            TransportKind::Local(network) => {
                network.deliver(addr, group, message);
                true
            }
        }
    }

    /// Stops every TCP sender task (they end when their queue closes).
    pub fn close(&self) {
        if let TransportKind::Tcp { senders, .. } = &self.kind {
            senders.lock().expect("transport lock").clear();
        }
    }
}

/// Queues one encoded frame (length prefix included) for `addr`, starting
/// its sender task on first use; counts it in `dropped` if the queue is full.
fn send_frame(
    senders: &SenderMap,
    options: &TransportOptions,
    dialer: &Dialer,
    liveness: &Arc<PeerLiveness>,
    dropped: &AtomicU64,
    addr: SocketAddr,
    frame: Bytes,
) -> bool {
    let mut senders = senders.lock().expect("transport lock");
    let sender = senders
        .entry(addr)
        .or_insert_with(|| spawn_sender(addr, options, dialer, liveness));
    match sender.try_send(frame) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::debug!(%addr, "peer queue full; message dropped");
            dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            senders.remove(&addr);
            false
        }
    }
}

/// Starts the sender task of `addr`; returns its queue.
fn spawn_sender(
    addr: SocketAddr,
    options: &TransportOptions,
    dialer: &Dialer,
    liveness: &Arc<PeerLiveness>,
) -> mpsc::Sender<Bytes> {
    let (tx, rx) = mpsc::channel(options.queue_frames_max);
    tokio::spawn(run_peer_sender(
        addr,
        rx,
        options.clone(),
        dialer.clone(),
        Arc::clone(liveness),
    ));
    tx
}

/// Keeps one connection to `addr` and writes queued frames to it, batching
/// what is queued into one write; probes it while idle too, for the
/// liveness monitor (`liveness.rs`).
async fn run_peer_sender(
    addr: SocketAddr,
    mut queue: mpsc::Receiver<Bytes>,
    options: TransportOptions,
    dialer: Dialer,
    liveness: Arc<PeerLiveness>,
) {
    let mut backoff = Backoff::new(addr, options.backoff_min, options.backoff_max);
    let mut batch = BytesMut::new();
    loop {
        let stream = match dialer.dial(addr).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connect failed");
                if !sleep_draining(&mut queue, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        let connected = tokio::time::Instant::now();
        // An authenticated handshake is as good as an answered probe.
        liveness.heard(addr);
        let (reader, mut writer) = tokio::io::split(stream);
        let answered = Arc::new(AtomicU64::new(0));
        let mut replies = tokio::spawn(read_replies(
            addr,
            reader,
            options.frame_bytes_max,
            answered.clone(),
            Arc::clone(&liveness),
        ));
        let mut probe = Probe::new(&options, answered, Arc::clone(&liveness));
        loop {
            let idle_due = probe.idle_due();
            let frame = tokio::select! {
                biased;
                // The read side ends when the peer closes or the kernel gives
                // up on the connection: replace it now, not at the next write.
                _ = &mut replies => {
                    tracing::debug!(%addr, "connection closed; reconnecting");
                    break;
                }
                () = probe.overdue() => {
                    tracing::debug!(%addr, "probe unanswered; reconnecting");
                    break;
                }
                frame = queue.recv() => Some(frame),
                // Idle: a probe alone, so that liveness is heard.
                () = sleep_until_or_never(idle_due) => None,
            };
            batch.clear();
            match frame {
                Some(Some(frame)) => batch.extend_from_slice(&frame),
                Some(None) => {
                    replies.abort();
                    return;
                }
                None => {}
            }
            while batch.len() < 1 << 20 {
                match queue.try_recv() {
                    Ok(frame) => batch.extend_from_slice(&frame),
                    Err(_) => break,
                }
            }
            probe.maybe_ping(&mut batch);
            if batch.is_empty() {
                continue;
            }
            // Flush: a no-op on a real socket, but madsim's stream sends
            // only on flush.
            let write = tokio::time::timeout(options.write_timeout, async {
                writer.write_all(&batch).await?;
                writer.flush().await
            })
            .await;
            if !matches!(write, Ok(Ok(()))) {
                tracing::debug!(%addr, "write failed or timed out; reconnecting");
                break;
            }
        }
        replies.abort();
        // A connection that worked resets the backoff; one that ended at
        // once (a peer that accepts and drops) keeps it growing.
        if connected.elapsed() >= options.backoff_max {
            backoff.reset();
        }
        if !sleep_draining(&mut queue, backoff.next_delay()).await {
            return;
        }
    }
}

/// Waits `delay` while dropping what is queued (stale by the time a
/// connection exists). Returns false when the queue closed.
async fn sleep_draining(queue: &mut mpsc::Receiver<Bytes>, delay: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        tokio::select! {
            biased;
            frame = queue.recv() => if frame.is_none() { return false },
            _ = tokio::time::sleep_until(deadline) => return true,
        }
    }
}

/// A connection's progress probe: at most one ping unanswered at a time,
/// sent along with a write (an idle connection has nothing to lose).
struct Probe {
    /// Pings are sent at most this often.
    interval: Duration,
    timeout: Duration,
    /// The highest sequence number the peer answered.
    answered: Arc<AtomicU64>,
    sent: u64,
    /// When the unanswered ping `sent` went out, if one is unanswered.
    since: Option<tokio::time::Instant>,
    last: Option<tokio::time::Instant>,
    /// Says how often the liveness monitor needs a probe, if at all.
    liveness: Arc<PeerLiveness>,
}

impl Probe {
    fn new(
        options: &TransportOptions,
        answered: Arc<AtomicU64>,
        liveness: Arc<PeerLiveness>,
    ) -> Self {
        Probe {
            interval: options.probe_timeout / 4,
            timeout: options.probe_timeout,
            answered,
            sent: 0,
            since: None,
            last: None,
            liveness,
        }
    }

    /// Pings go out at most this often: the progress probe's interval, or
    /// the liveness monitor's if that is shorter.
    fn interval(&self) -> Duration {
        match self.liveness.probe_interval() {
            Some(liveness) => self.interval.min(liveness),
            None => self.interval,
        }
    }

    /// When an idle connection is due a probe for the liveness monitor
    /// (never while the monitor needs none). While a probe is unanswered,
    /// an interval from now: its answer arrives on another task, so the
    /// sender looks again then.
    fn idle_due(&self) -> Option<tokio::time::Instant> {
        let interval = self.liveness.probe_interval()?;
        let now = tokio::time::Instant::now();
        if self.since.is_some() && !self.is_answered() {
            return Some(now + interval);
        }
        Some(self.last.map_or(now, |last| last + interval))
    }

    fn is_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed) >= self.sent
    }

    /// Appends a ping to `batch` unless one is unanswered or one went out
    /// less than `interval` ago.
    fn maybe_ping(&mut self, batch: &mut BytesMut) {
        let now = tokio::time::Instant::now();
        if self.since.is_some() && !self.is_answered() {
            return;
        }
        self.since = None;
        if self.last.is_some_and(|last| now < last + self.interval()) {
            return;
        }
        self.sent += 1;
        let ping = proto::Frame {
            kind: Some(proto::frame::Kind::Ping(proto::Probe {
                sequence: self.sent,
                ..Default::default()
            })),
        };
        encode_frame(&ping.encode_to_vec(), batch);
        self.since = Some(now);
        self.last = Some(now);
    }

    /// Resolves once the unanswered ping is `timeout` old; never while
    /// none is unanswered.
    async fn overdue(&mut self) {
        loop {
            let Some(since) = self.since else {
                return std::future::pending().await;
            };
            tokio::time::sleep_until(since + self.timeout).await;
            if !self.is_answered() {
                return;
            }
            self.since = None;
        }
    }
}

/// Reads what a peer answers on our connection: notes answered probes,
/// logs error frames.
async fn read_replies<R: tokio::io::AsyncRead + Unpin>(
    addr: SocketAddr,
    mut reader: R,
    max: u32,
    answered: Arc<AtomicU64>,
    liveness: Arc<PeerLiveness>,
) {
    while let Ok(body) = read_frame(&mut reader, max).await {
        match proto::Frame::decode(body).map(|frame| frame.kind) {
            Ok(Some(proto::frame::Kind::Pong(probe))) => {
                answered.fetch_max(probe.sequence, Ordering::Relaxed);
                liveness.answered(addr, (probe.incarnation, probe.members_stopped));
            }
            Ok(Some(proto::frame::Kind::Error(e))) => {
                tracing::warn!(%addr, group = e.group_id, kind = e.kind, detail = %e.detail, "peer refused a message");
            }
            _ => {}
        }
    }
}
