//! Connections to servers, in the client role, pipelined: every caller's
//! request gets a `request_id` and goes out on a shared connection without
//! waiting for the answers before it; a reader task hands each answer to
//! the caller waiting for that id, in whatever order the server finishes.
//!
//! ```text
//!   callers ─► Pool: per server ≤ connections_per_server_max connections
//!                 │  each ≤ requests_in_flight_per_connection_max requests (a slot each)
//!                 ▼
//!   Conn: outbox (bounded) ─► writer task (batched frames, one flush) ─► TLS
//!         pending: id → caller ◄─ reader task (answers, any order)   ◄─ TLS
//! ```
//!
//! With every slot of every connection to a server taken, a call fails at
//! once with [`AttemptError::Busy`] rather than queueing without bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message as _;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::options::ClientOptions;
use crate::runtime::auth::{BoxedStream, Dialer};
use crate::runtime::wire::frame::{read_frame, write_queued};
use crate::runtime::wire::proto;

/// A connection with this many requests in flight is shared no further
/// while another may still be opened: callers spread over connections
/// (each is one reader and one writer task at either end).
const SPREAD_IN_FLIGHT: usize = 16;

/// Why one attempt at one server failed; every one but `Refused` and
/// `Busy` may be retried.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttemptError {
    /// No authenticated connection.
    #[error("connecting to {addr}: {error}")]
    Dial {
        addr: SocketAddr,
        error: crate::runtime::DialError,
    },
    /// The connection broke or the answer was not a client response.
    #[error("exchange with {addr}: {detail}")]
    Exchange { addr: SocketAddr, detail: String },
    /// The server refused us for good: our credentials, or a request our
    /// role may not send.
    #[error("refused by {addr}: {detail}")]
    Refused { addr: SocketAddr, detail: String },
    /// No answer within the attempt timeout.
    #[error("no answer from {addr} within the attempt timeout")]
    Timeout { addr: SocketAddr },
    /// Every connection to the server has all its slots taken.
    #[error("{in_flight} requests in flight to {addr}: no room for more")]
    Busy { addr: SocketAddr, in_flight: usize },
}

/// How a connection ended, told to every caller still waiting on it.
#[derive(Clone, Debug)]
enum Broken {
    Refused(String),
    Lost(String),
}

/// Opens, shares and drops connections.
pub(crate) struct Pool {
    dialer: Dialer,
    options: ClientOptions,
    servers: Mutex<BTreeMap<SocketAddr, Arc<Server>>>,
}

/// The connections to one server.
#[derive(Default)]
struct Server {
    connections: Mutex<Vec<Arc<Conn>>>,
    /// One dial at a time per server: concurrent callers that find no room
    /// wait for it rather than each opening its own.
    dialing: tokio::sync::Mutex<()>,
}

/// One pipelined connection. Dropping it ends its tasks (and so the
/// connection).
struct Conn {
    shared: Arc<Shared>,
    outbox: mpsc::Sender<proto::ClientRequest>,
    slots: Arc<Semaphore>,
    tasks: [JoinHandle<()>; 2],
}

/// What a connection's tasks and its callers share.
struct Shared {
    next_id: AtomicU64,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// Callers waiting, by request id.
    waiting: BTreeMap<u64, oneshot::Sender<Result<proto::ClientResponse, Broken>>>,
    /// Set once the connection broke: no new request is taken.
    broken: Option<Broken>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    /// Marks the connection broken and tells every waiting caller.
    fn break_with(&self, why: Broken) {
        let mut pending = self.pending.lock().expect("pending lock");
        pending.broken.get_or_insert(why.clone());
        for (_, caller) in std::mem::take(&mut pending.waiting) {
            let _ = caller.send(Err(why.clone()));
        }
    }

    fn is_broken(&self) -> bool {
        self.pending.lock().expect("pending lock").broken.is_some()
    }
}

/// Forgets a caller's request id if it stops waiting (timeout, cancel).
struct Waiting<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut pending = self.shared.pending.lock().expect("pending lock");
        pending.waiting.remove(&self.id);
    }
}

impl Pool {
    pub(crate) fn new(dialer: Dialer, options: ClientOptions) -> Self {
        Pool {
            dialer,
            options,
            servers: Mutex::new(BTreeMap::new()),
        }
    }

    /// The dialer connections are opened with.
    pub(crate) fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Sends `request` to the server at `addr` and waits for its answer,
    /// within the attempt timeout. With `resend`, a shared connection the
    /// server has closed since (it idled out) costs one fresh dial, not a
    /// failed attempt; without it (a request that must not reach the log
    /// twice) it is an `Exchange` error.
    pub(crate) async fn exchange(
        &self,
        addr: SocketAddr,
        request: &proto::ClientRequest,
        resend: bool,
    ) -> Result<proto::ClientResponse, AttemptError> {
        let attempt = async {
            let (conn, slot, fresh) = self.connection(addr).await?;
            match conn.request(addr, request.clone(), slot).await {
                Err(AttemptError::Exchange { .. }) if !fresh && resend => {
                    let (conn, slot, _) = self.connection(addr).await?;
                    conn.request(addr, request.clone(), slot).await
                }
                result => result,
            }
        };
        tokio::time::timeout(self.options.attempt_timeout, attempt)
            .await
            .map_err(|_| AttemptError::Timeout { addr })?
    }

    /// A connection to `addr` with a free slot, and whether it was just
    /// opened: the least busy one, or a new one while there is room for it.
    async fn connection(
        &self,
        addr: SocketAddr,
    ) -> Result<(Arc<Conn>, OwnedSemaphorePermit, bool), AttemptError> {
        let server = self
            .servers
            .lock()
            .expect("pool lock")
            .entry(addr)
            .or_default()
            .clone();
        let dial_max = self.options.connections_per_server_max.max(1);
        let in_flight_max = self.options.requests_in_flight_per_connection_max.max(1);
        if let Some(found) = server.pick(dial_max, in_flight_max, false) {
            return Ok((found.0, found.1, false));
        }
        let _dialing = server.dialing.lock().await;
        // Another caller may have opened one while we waited.
        if let Some(found) = server.pick(dial_max, in_flight_max, false) {
            return Ok((found.0, found.1, false));
        }
        if server.connections.lock().expect("pool lock").len() >= dial_max {
            return match server.pick(dial_max, in_flight_max, true) {
                Some(found) => Ok((found.0, found.1, false)),
                None => Err(AttemptError::Busy {
                    addr,
                    in_flight: dial_max * in_flight_max,
                }),
            };
        }
        let stream = self.dialer.dial(addr).await.map_err(|error| match error {
            crate::runtime::DialError::Refused(refusal) => AttemptError::Refused {
                addr,
                detail: refusal.to_string(),
            },
            error => AttemptError::Dial { addr, error },
        })?;
        let conn = Arc::new(Conn::start(stream, &self.options));
        let slot = conn
            .slots
            .clone()
            .try_acquire_owned()
            .expect("a new connection has free slots");
        server
            .connections
            .lock()
            .expect("pool lock")
            .push(conn.clone());
        Ok((conn, slot, true))
    }
}

impl Server {
    /// Drops broken connections, then takes a slot on the least busy one:
    /// if `any`, on any with room; else only where sharing beats opening
    /// another (`SPREAD_IN_FLIGHT`, while fewer than `dial_max` are open).
    fn pick(
        &self,
        dial_max: usize,
        in_flight_max: usize,
        any: bool,
    ) -> Option<(Arc<Conn>, OwnedSemaphorePermit)> {
        let mut connections = self.connections.lock().expect("pool lock");
        connections.retain(|c| !c.shared.is_broken());
        let room = connections.len() < dial_max;
        let best = connections
            .iter()
            .max_by_key(|c| c.slots.available_permits())?;
        let in_flight = in_flight_max - best.slots.available_permits();
        if !any && room && in_flight >= SPREAD_IN_FLIGHT.min(in_flight_max) {
            return None;
        }
        let slot = best.slots.clone().try_acquire_owned().ok()?;
        Some((best.clone(), slot))
    }
}

impl Conn {
    fn start(stream: BoxedStream, options: &ClientOptions) -> Conn {
        let in_flight_max = options.requests_in_flight_per_connection_max.max(1);
        let (reader, writer) = tokio::io::split(stream);
        let (outbox, queued) = mpsc::channel(in_flight_max);
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Pending::default()),
        });
        let read = tokio::spawn(read_answers(
            reader,
            shared.clone(),
            options.frame_bytes_max,
        ));
        let write = tokio::spawn(write_requests(
            writer,
            queued,
            shared.clone(),
            options.attempt_timeout,
        ));
        Conn {
            shared,
            outbox,
            slots: Arc::new(Semaphore::new(in_flight_max)),
            tasks: [read, write],
        }
    }

    /// Sends `request` under a fresh id and waits for its answer; `slot`
    /// is held until then.
    async fn request(
        &self,
        addr: SocketAddr,
        mut request: proto::ClientRequest,
        slot: OwnedSemaphorePermit,
    ) -> Result<proto::ClientResponse, AttemptError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        {
            let mut pending = self.shared.pending.lock().expect("pending lock");
            if let Some(why) = &pending.broken {
                return Err(broken(addr, why.clone()));
            }
            pending.waiting.insert(id, answer);
        }
        let _waiting = Waiting {
            shared: &self.shared,
            id,
        };
        request.request_id = id;
        if self.outbox.send(request).await.is_err() {
            return Err(broken(addr, Broken::Lost("connection closed".into())));
        }
        let result = match answered.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(why)) => Err(broken(addr, why)),
            Err(_) => Err(broken(addr, Broken::Lost("connection closed".into()))),
        };
        drop(slot);
        result
    }
}

fn broken(addr: SocketAddr, why: Broken) -> AttemptError {
    match why {
        Broken::Refused(detail) => AttemptError::Refused { addr, detail },
        Broken::Lost(detail) => AttemptError::Exchange { addr, detail },
    }
}

/// Hands each answer to the caller waiting for its id (an answer nobody
/// waits for any more, after a timeout, is dropped); on anything but a
/// client response the connection is done.
async fn read_answers(mut reader: ReadHalf<BoxedStream>, shared: Arc<Shared>, max: u32) {
    let why = loop {
        let body = match read_frame(&mut reader, max).await {
            Ok(body) => body,
            Err(e) => break Broken::Lost(e.to_string()),
        };
        match proto::Frame::decode(body).map(|f| f.kind) {
            Ok(Some(proto::frame::Kind::ClientResponse(response))) => {
                let caller = shared
                    .pending
                    .lock()
                    .expect("pending lock")
                    .waiting
                    .remove(&response.request_id);
                if let Some(caller) = caller {
                    let _ = caller.send(Ok(response));
                }
            }
            Ok(Some(proto::frame::Kind::Error(e)))
                if e.kind == proto::transport_error::Kind::Forbidden as i32 =>
            {
                break Broken::Refused(e.detail);
            }
            Ok(Some(proto::frame::Kind::Error(e))) => break Broken::Lost(e.detail),
            Ok(other) => break Broken::Lost(format!("unexpected frame {other:?}")),
            Err(e) => break Broken::Lost(e.to_string()),
        }
    };
    shared.break_with(why);
}

/// Writes requests as they come, each batch (what is queued, up to
/// [`WRITE_BATCH_MAX`](crate::runtime::wire::frame::WRITE_BATCH_MAX)) with one flush. A write that does not finish
/// within `timeout` breaks the connection.
async fn write_requests(
    mut writer: WriteHalf<BoxedStream>,
    mut queued: mpsc::Receiver<proto::ClientRequest>,
    shared: Arc<Shared>,
    timeout: std::time::Duration,
) {
    let kind = proto::frame::Kind::ClientRequest;
    if let Err(e) = write_queued(&mut writer, &mut queued, kind, timeout).await {
        shared.break_with(Broken::Lost(e.to_string()));
    }
}
