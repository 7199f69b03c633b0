//! Connections to servers, in the client role: one request at a time on a
//! connection, idle ones kept (bounded) per server for the next request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use prost::Message as _;

use super::options::ClientOptions;
use crate::runtime::auth::{BoxedStream, Dialer};
use crate::runtime::wire::frame::{read_frame, write_frame};
use crate::runtime::wire::proto;

/// Why one attempt at one server failed; every one of them may be retried.
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
}

/// Opens and keeps connections.
pub(crate) struct Pool {
    dialer: Dialer,
    options: ClientOptions,
    idle: Mutex<BTreeMap<SocketAddr, Vec<BoxedStream>>>,
}

impl Pool {
    pub(crate) fn new(dialer: Dialer, options: ClientOptions) -> Self {
        Pool {
            dialer,
            options,
            idle: Mutex::new(BTreeMap::new()),
        }
    }

    /// The dialer connections are opened with.
    pub(crate) fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Sends `request` to the server at `addr` and reads its answer, within
    /// the attempt timeout. A kept connection the server has closed since
    /// (it idled out) costs one fresh dial, not a failed attempt.
    pub(crate) async fn exchange(
        &self,
        addr: SocketAddr,
        request: &proto::ClientRequest,
    ) -> Result<proto::ClientResponse, AttemptError> {
        let attempt = async {
            let kept = self
                .idle
                .lock()
                .expect("pool lock")
                .get_mut(&addr)
                .and_then(Vec::pop);
            if let Some(stream) = kept
                && let Ok(answer) = self.exchange_on(addr, stream, request).await
            {
                return Ok(answer);
            }
            let stream = self.dialer.dial(addr).await.map_err(|error| match error {
                crate::runtime::DialError::Refused(refusal) => AttemptError::Refused {
                    addr,
                    detail: refusal.to_string(),
                },
                error => AttemptError::Dial { addr, error },
            })?;
            self.exchange_on(addr, stream, request).await
        };
        tokio::time::timeout(self.options.attempt_timeout, attempt)
            .await
            .map_err(|_| AttemptError::Timeout { addr })?
    }

    async fn exchange_on(
        &self,
        addr: SocketAddr,
        mut stream: BoxedStream,
        request: &proto::ClientRequest,
    ) -> Result<proto::ClientResponse, AttemptError> {
        let failed = |detail: String| AttemptError::Exchange { addr, detail };
        let frame = proto::frame::Kind::ClientRequest(request.clone());
        write_frame(&mut stream, frame)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let body = read_frame(&mut stream, self.options.frame_bytes_max)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let response = match proto::Frame::decode(body).map(|f| f.kind) {
            Ok(Some(proto::frame::Kind::ClientResponse(response))) => response,
            Ok(Some(proto::frame::Kind::Error(e)))
                if e.kind == proto::transport_error::Kind::Forbidden as i32 =>
            {
                return Err(AttemptError::Refused {
                    addr,
                    detail: e.detail,
                });
            }
            Ok(Some(proto::frame::Kind::Error(e))) => return Err(failed(e.detail)),
            Ok(other) => return Err(failed(format!("unexpected frame {other:?}"))),
            Err(e) => return Err(failed(e.to_string())),
        };
        let mut idle = self.idle.lock().expect("pool lock");
        let kept = idle.entry(addr).or_default();
        if kept.len() < self.options.idle_connections_per_server_max {
            kept.push(stream);
        }
        Ok(response)
    }
}
