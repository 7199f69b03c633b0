//! The inbound side of a server: the accept loop, connection limits, the
//! authentication of every connection, and serving what each identity may
//! ask for. Nothing a connection sends is acted on before its `Hello` was
//! accepted, and then only what its role allows.
//!
//! ```text
//!   accept ─► cap (total, per IP) ─► secure channel ─► first 4 bytes
//!                                     (deadline)        ├─ "GET " ─► status page (operator token)
//!                                                       └─ frame ─► Hello ─► Identity
//!   Identity::Server(addr): Raft messages (sender node must live at addr), snapshot file requests
//!   Identity::Operator:     admin requests, and client requests
//!   Identity::Client:       client requests (sessions, commands, reads, routes), Raft port only
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::admin_service;
use super::auth::{
    BoxedStream, Credential, HANDSHAKE_FRAME_BYTES_MAX, HelloRefusal, Identity, Security,
    accept_hello, hello_accepted,
};
use super::client_connection::serve_pipelined;
use super::client_service;
use super::group_id::GroupId;
use super::node_manager::Inner;
use super::peer_lives::PeerLife;
use super::socket_options::watch_progress;
use super::status_http::{self, StatusSources};
use super::wire::convert::{DecodeError, from_proto};
use super::wire::frame::{
    FrameError, read_frame_body, read_frame_within, read_header, write_frame,
};
use super::wire::proto;
use super::wire::proto::transport_error::Kind as ErrorKind;
use super::wire::shape::{ShapeError, check_frame_shape};

/// Open inbound connections, in total and by source IP.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounts {
    by_ip: Mutex<BTreeMap<IpAddr, usize>>,
}

/// One counted connection; uncounted on drop.
struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    ip: IpAddr,
}

impl ConnectionCounts {
    /// Counts a connection from `ip`, or refuses it over either cap.
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        total_max: usize,
        per_ip_max: usize,
    ) -> Option<ConnectionSlot> {
        let mut by_ip = self.by_ip.lock().expect("connection counts");
        let total: usize = by_ip.values().sum();
        let here = by_ip.get(&ip).copied().unwrap_or(0);
        if total >= total_max || here >= per_ip_max {
            return None;
        }
        by_ip.insert(ip, here + 1);
        Some(ConnectionSlot {
            counts: self.clone(),
            ip,
        })
    }

    /// Open connections.
    pub(crate) fn total(&self) -> usize {
        self.by_ip.lock().expect("connection counts").values().sum()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut by_ip = self.counts.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Which of a server's listeners a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The Raft address: peers, and operators unless they were moved.
    Raft,
    /// The separate admin address: operators only.
    Admin,
}

/// Accepts connections until the server is gone. An accept error (out of
/// file descriptors, say) backs off instead of spinning, and never ends the
/// loop: the server keeps serving the connections it has.
pub(crate) async fn accept_loop(listener: TcpListener, manager: Weak<Inner>, which: Listener) {
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = listener.accept().await;
        let Some(inner) = manager.upgrade() else {
            return;
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(e) => {
                inner.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                let limits = &inner.options;
                backoff = (backoff * 2).clamp(limits.accept_backoff_min, limits.accept_backoff_max);
                tracing::warn!(error = %e, ?backoff, "accept failed; backing off");
                drop(inner);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let options = &inner.options;
        let Some(slot) = inner.connections.admit(
            peer.ip(),
            options.connections_max,
            options.connections_per_ip_max,
        ) else {
            inner
                .stats
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "connection refused: at the connection cap");
            continue;
        };
        inner
            .stats
            .accepted_connections
            .fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        // Half-open connections left by a partition go too, not only at the
        // idle timeout.
        watch_progress(&stream, options.stall_timeout);
        drop(inner);
        tokio::spawn(serve_connection(stream, peer, slot, manager.clone(), which));
    }
}

/// Why an inbound connection was closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A frame could not be read (too large, too slow, idle, I/O).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame is not a valid message.
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// A frame was refused before decoding (too many entries).
    #[error("refused before decoding: {0}")]
    Shape(#[from] ShapeError),
    /// The secure channel failed, or the handshake took too long.
    #[error("handshake: {0}")]
    Handshake(String),
    /// The `Hello` was refused.
    #[error(transparent)]
    Refused(#[from] HelloRefusal),
    /// A reply could not be written in time.
    #[error("reply not written")]
    Write,
}

/// What an accepted connection turned out to be.
enum Classified {
    /// An HTTP request whose first four bytes were read.
    Http(BoxedStream, Credential),
    /// A frame connection whose `Hello` was accepted, and the incarnation
    /// it named.
    Frames(BoxedStream, Identity, u64),
}

/// Authenticates one connection, then serves it until it closes, breaks a
/// rule or idles out. The slot is held for the connection's whole life.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    _slot: ConnectionSlot,
    manager: Weak<Inner>,
    which: Listener,
) {
    let Some(inner) = manager.upgrade() else {
        return;
    };
    let handshake_timeout = inner.options.handshake_timeout;
    let classified = tokio::time::timeout(handshake_timeout, classify(stream, &inner)).await;
    let result = match classified {
        Err(_) => Err(ConnectionError::Handshake(format!(
            "not done within {handshake_timeout:?}"
        ))),
        Ok(Err(e)) => Err(e),
        Ok(Ok(Classified::Http(stream, credential))) => {
            let security = inner.security.clone();
            let sources = StatusSources {
                groups: inner.groups(),
                server: inner.server_snapshot(),
                enabled: security.status_page_enabled && inner.serves_operators(which),
            };
            drop(inner);
            status_http::serve(stream, sources, &security, &credential).await;
            return;
        }
        Ok(Ok(Classified::Frames(stream, identity, incarnation))) => match identity {
            Identity::Server(addr) => {
                let life = inner.peer_lives.enter(addr, incarnation);
                drop(inner);
                serve_frames(stream, peer, identity, life, &manager, which).await
            }
            _ => {
                drop(inner);
                serve_pipelined(stream, peer, identity, &manager, which).await
            }
        },
    };
    let Err(error) = result else {
        return;
    };
    if let Some(inner) = manager.upgrade() {
        let stats = &inner.stats;
        let counter = match &error {
            ConnectionError::Frame(FrameError::TooLarge { .. }) => &stats.oversized_frames,
            ConnectionError::Handshake(_) | ConnectionError::Refused(_) => {
                &stats.refused_handshakes
            }
            ConnectionError::Frame(FrameError::Idle(_) | FrameError::Slow(_)) => {
                &stats.timed_out_connections
            }
            ConnectionError::Write => &stats.timed_out_connections,
            _ => &stats.malformed_frames,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    tracing::info!(%peer, %error, "closing connection");
}

/// Sets up the secure channel and reads the first frame: an HTTP request,
/// or a `Hello` that is answered here.
async fn classify(stream: TcpStream, inner: &Inner) -> Result<Classified, ConnectionError> {
    let (mut stream, credential) = inner
        .security
        .authenticator
        .accept(stream)
        .await
        .map_err(|e| ConnectionError::Handshake(e.to_string()))?;
    match first_contact(&mut stream, &credential, &inner.security).await? {
        FirstContact::Http => Ok(Classified::Http(stream, credential)),
        FirstContact::Frames(identity, incarnation) => {
            Ok(Classified::Frames(stream, identity, incarnation))
        }
    }
}

/// What the first bytes on a secured connection are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstContact {
    /// An HTTP request (its first four bytes, `GET `, were read).
    Http,
    /// A `Hello` that was accepted and answered: frames follow. With the
    /// incarnation a server's `Hello` named (0 for other roles).
    Frames(Identity, u64),
}

/// Reads the first frame of a secured connection whose other end proved
/// `credential`: tells an HTTP request from a `Hello`, checks the `Hello`
/// (reading no more than a Hello's worth of bytes) and answers it.
/// Generic over the stream so that the fuzz target drives it from bytes.
///
/// # Errors
/// [`ConnectionError`]: no frame, a frame too large before authentication,
/// or a refused `Hello` (answered with the reason, then shut down).
pub async fn first_contact<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    credential: &Credential,
    security: &Security,
) -> Result<FirstContact, ConnectionError> {
    let first = read_header(stream).await?;
    if first == admin_service::HTTP_GET {
        return Ok(FirstContact::Http);
    }
    let body = read_frame_body(stream, first, HANDSHAKE_FRAME_BYTES_MAX).await?;
    match accept_hello(body, credential, security) {
        Ok((identity, incarnation)) => {
            let reply = proto::frame::Kind::HelloReply(hello_accepted());
            write_frame(stream, reply)
                .await
                .map_err(|_| ConnectionError::Write)?;
            Ok(FirstContact::Frames(identity, incarnation))
        }
        Err(refusal) => {
            let reply = proto::frame::Kind::HelloReply(refusal.reply());
            let _ = write_frame(stream, reply).await;
            let _ = stream.shutdown().await;
            Err(refusal.into())
        }
    }
}

/// Decodes one frame body from an authenticated connection, its shape
/// checked first so that decoding allocates within bounds.
///
/// # Errors
/// [`ConnectionError::Shape`] or [`ConnectionError::Decode`].
pub fn decode_frame(
    body: bytes::Bytes,
    entries_max: usize,
) -> Result<proto::frame::Kind, ConnectionError> {
    check_frame_shape(&body, entries_max)?;
    let kind = proto::Frame::decode(body)
        .map_err(DecodeError::from)?
        .kind
        .ok_or(DecodeError::MissingField("frame.kind"))?;
    Ok(kind)
}

/// Reads frames from an authenticated connection: routes Raft messages and
/// answers requests in the order they came, each only if `identity` may
/// send it. Closes once `life` is superseded (`peer_lives.rs`).
async fn serve_frames(
    stream: BoxedStream,
    peer: SocketAddr,
    identity: Identity,
    mut life: Option<PeerLife>,
    manager: &Weak<Inner>,
    which: Listener,
) -> Result<(), ConnectionError> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    loop {
        let Some(inner) = manager.upgrade() else {
            return Ok(());
        };
        if inner.is_closed() {
            return Ok(());
        }
        let options = inner.options.clone();
        drop(inner);
        let read = read_frame_within(
            &mut reader,
            options.frame_bytes_max,
            options.idle_timeout,
            options.frame_timeout,
        );
        let superseded = async {
            match life.as_mut() {
                Some(life) => life.superseded().await,
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            biased;
            () = superseded => {
                if let Some(inner) = manager.upgrade() {
                    inner.stats.superseded_connections.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(%peer, "a newer start of this server connected: closing its earlier one's connection");
                return Ok(());
            }
            read = read => read,
        };
        let body = match read {
            Ok(body) => body,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let kind = decode_frame(body, options.message_entries_max)?;
        if manager.upgrade().is_none_or(|inner| inner.is_closed()) {
            // Shut down: answer nothing more, not even a probe.
            return Ok(());
        }
        let Some(reply) = answer(kind, peer, identity, manager, which).await? else {
            continue;
        };
        // A peer that stops reading must not hold this task forever.
        let written =
            tokio::time::timeout(options.write_timeout, write_frame(&mut writer, reply)).await;
        if !matches!(written, Ok(Ok(()))) {
            return Err(ConnectionError::Write);
        }
    }
}

/// Handles one frame from `identity`; what to answer, if anything.
pub(crate) async fn answer(
    kind: proto::frame::Kind,
    peer: SocketAddr,
    identity: Identity,
    manager: &Weak<Inner>,
    which: Listener,
) -> Result<Option<proto::frame::Kind>, ConnectionError> {
    use proto::frame::Kind;
    let Some(inner) = manager.upgrade() else {
        return Ok(None);
    };
    let peers = which == Listener::Raft;
    let operators = inner.security.admin_enabled && inner.serves_operators(which);
    let reply = match (kind, identity) {
        (Kind::Raft(m), Identity::Server(server)) if peers => {
            let (group, message) = from_proto(m)?;
            (!inner.route(group, message, Some(server))).then(|| {
                tracing::debug!(%peer, %group, "message for an unknown group");
                error_frame(
                    group,
                    ErrorKind::UnknownGroup,
                    format!("group {group} is not served here"),
                )
            })
        }
        (Kind::Ping(probe), Identity::Server(_)) if peers => {
            Some(Kind::Pong(inner.pong(probe.sequence)))
        }
        (Kind::GetFileRequest(request), Identity::Server(_)) if peers => {
            Some(Kind::GetFileResponse(inner.serve_file(request).await))
        }
        (Kind::AdminRequest(request), Identity::Operator) if operators => {
            let group = GroupId(request.group_id);
            let groups = match request.op {
                Some(proto::admin_request::Op::ListGroups(_)) => inner.groups(),
                _ => inner
                    .node(group)
                    .map(|n| vec![(group, n)])
                    .unwrap_or_default(),
            };
            drop(inner);
            Some(Kind::AdminResponse(
                admin_service::handle(groups, request).await,
            ))
        }
        (Kind::ClientRequest(request), identity)
            if (identity == Identity::Client && peers)
                || (identity == Identity::Operator && operators) =>
        {
            let group = GroupId(request.group_id);
            let groups = match request.op {
                Some(proto::client_request::Op::Route(_)) => inner.groups(),
                _ => inner
                    .node(group)
                    .map(|n| vec![(group, n)])
                    .unwrap_or_default(),
            };
            drop(inner);
            Some(Kind::ClientResponse(
                client_service::handle(groups, request).await,
            ))
        }
        (
            Kind::Error(_)
            | Kind::GetFileResponse(_)
            | Kind::AdminResponse(_)
            | Kind::Pong(_)
            | Kind::ClientResponse(_),
            _,
        ) => None,
        (kind, identity) => {
            inner
                .stats
                .forbidden_requests
                .fetch_add(1, Ordering::Relaxed);
            let what = frame_kind_name(&kind);
            tracing::warn!(%peer, ?identity, what, "request refused: not allowed for this identity");
            Some(error_frame(
                GroupId(0),
                ErrorKind::Forbidden,
                format!("{what} is not allowed for this connection"),
            ))
        }
    };
    Ok(reply)
}

fn error_frame(group: GroupId, kind: ErrorKind, detail: String) -> proto::frame::Kind {
    proto::frame::Kind::Error(proto::TransportError {
        group_id: group.0,
        kind: kind as i32,
        detail,
    })
}

fn frame_kind_name(kind: &proto::frame::Kind) -> &'static str {
    use proto::frame::Kind;
    match kind {
        Kind::Raft(_) => "a Raft message",
        Kind::Error(_) => "an error",
        Kind::GetFileRequest(_) => "a snapshot file request",
        Kind::GetFileResponse(_) => "a snapshot file response",
        Kind::AdminRequest(_) => "an admin request",
        Kind::AdminResponse(_) => "an admin response",
        Kind::Hello(_) => "a second Hello",
        Kind::HelloReply(_) => "a Hello reply",
        Kind::Ping(_) => "a progress probe",
        Kind::Pong(_) => "a probe's answer",
        Kind::ClientRequest(_) => "a client request",
        Kind::ClientResponse(_) => "a client response",
    }
}
