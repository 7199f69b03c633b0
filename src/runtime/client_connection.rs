//! A client's (or an operator's) connection, pipelined: the client sends
//! requests without waiting for answers, each tagged with its own
//! `request_id`; the server runs up to `client_requests_in_flight_max` of
//! them at once and answers each as it finishes, so out of order.
//!
//! ```text
//!   reader (this task) ─► permit (in-flight bound) ─► spawned task: answer() ─┐
//!        │ other frames: answered inline, in order ─────────────────────────┐ │
//!        ▼                                                                  ▼ ▼
//!   the writer task ◄── bounded channel of answers: batched, one flush per batch
//! ```
//!
//! Past the bound the reader stops reading: the client's own frames wait in
//! its socket (TCP pushes back), nothing queues here without limit. Server
//! identities never come here: Raft frames keep their one-at-a-time loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Weak;

use tokio::io::WriteHalf;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::auth::{BoxedStream, Identity};
use super::inbound::{ConnectionError, Listener, answer, decode_frame};
use super::node_manager::Inner;
use super::wire::frame::{FrameError, read_frame_within, write_queued};
use super::wire::proto;

/// Serves a non-server connection until it closes, breaks a rule, idles
/// out or stops reading its answers.
pub(crate) async fn serve_pipelined(
    stream: BoxedStream,
    peer: SocketAddr,
    identity: Identity,
    manager: &Weak<Inner>,
    which: Listener,
) -> Result<(), ConnectionError> {
    let Some(inner) = manager.upgrade() else {
        return Ok(());
    };
    let options = inner.options.clone();
    drop(inner);
    let in_flight_max = options.client_requests_in_flight_max.max(1);
    let (mut reader, writer) = tokio::io::split(stream);
    // Room for every in-flight answer plus the inline ones: a handler that
    // holds a permit never waits on this channel for long.
    let (answers, queued) = mpsc::channel(in_flight_max + 1);
    let mut write = tokio::spawn(write_answers(writer, queued, options.write_timeout));
    let permits = Arc::new(Semaphore::new(in_flight_max));
    let mut handlers = Handlers(Vec::new());
    loop {
        handlers.0.retain(|h| !h.is_finished());
        // The in-flight bound: no more frames are read until one finishes.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            _ = &mut write => return Err(ConnectionError::Write),
        };
        let read = tokio::select! {
            read = read_frame_within(
                &mut reader,
                options.frame_bytes_max,
                options.idle_timeout,
                options.frame_timeout,
            ) => read,
            _ = &mut write => return Err(ConnectionError::Write),
        };
        let body = match read {
            Ok(body) => body,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let kind = decode_frame(body, options.message_entries_max)?;
        if matches!(kind, proto::frame::Kind::ClientRequest(_)) {
            let manager = manager.clone();
            let answers = answers.clone();
            handlers.0.push(tokio::spawn(async move {
                if let Ok(Some(reply)) = answer(kind, peer, identity, &manager, which).await {
                    let _ = answers.send(reply).await;
                }
                drop(permit);
            }));
            continue;
        }
        drop(permit);
        if let Some(reply) = answer(kind, peer, identity, manager, which).await?
            && answers.send(reply).await.is_err()
        {
            return Err(ConnectionError::Write);
        }
    }
}

/// A connection's request handlers (at most its in-flight bound, the
/// finished ones dropped before each read), aborted with the connection:
/// nobody is left to read their answers. (Not `JoinSet`: the simulator's
/// tokio has none.)
struct Handlers(Vec<JoinHandle<()>>);

impl Drop for Handlers {
    fn drop(&mut self) {
        for handler in &self.0 {
            handler.abort();
        }
    }
}

/// Writes answers as they come, each batch (what is queued, up to
/// [`WRITE_BATCH_MAX`](crate::runtime::wire::frame::WRITE_BATCH_MAX)) with one flush; ends when the connection's reader
/// is gone or a write does not finish within `timeout` (a peer that stops
/// reading must not hold the connection's answers forever).
async fn write_answers(
    mut writer: WriteHalf<BoxedStream>,
    mut queued: mpsc::Receiver<proto::frame::Kind>,
    timeout: std::time::Duration,
) {
    let _ = write_queued(&mut writer, &mut queued, std::convert::identity, timeout).await;
}
