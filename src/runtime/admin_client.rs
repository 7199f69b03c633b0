//! The client side of the admin service (what `oarctl` runs): one request,
//! one answer, over its own connection to a server's Raft port.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message as _;

use super::auth::{DialError, Dialer};
use super::frame::{FRAME_BYTES_MAX, read_frame, write_frame};
use super::proto;

/// Why an admin request got no answer, or a refusal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The server could not be reached or the connection broke.
    #[error("transport: {0}")]
    Io(#[from] std::io::Error),
    /// No authenticated connection: unreachable, a bad certificate, or the
    /// server refused our credentials.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer was not an admin response.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The server refused or failed the request.
    #[error("{0}")]
    Refused(String),
}

/// Sends `request` to the server at `addr` over a connection `dialer`
/// opens (an operator's) and returns the answer's text.
///
/// # Errors
/// [`AdminError`].
pub async fn call(
    dialer: &Dialer,
    addr: SocketAddr,
    request: proto::AdminRequest,
    timeout: Duration,
) -> Result<String, AdminError> {
    let exchange = async {
        let stream = dialer.dial(addr).await?;
        let (mut reader, mut writer) = tokio::io::split(stream);
        write_frame(&mut writer, proto::frame::Kind::AdminRequest(request)).await?;
        let body = read_frame(&mut reader, FRAME_BYTES_MAX)
            .await
            .map_err(|e| AdminError::Malformed(e.to_string()))?;
        match proto::Frame::decode(body).map(|f| f.kind) {
            Ok(Some(proto::frame::Kind::AdminResponse(r))) if r.error.is_empty() => Ok(r.text),
            Ok(Some(proto::frame::Kind::AdminResponse(r))) => Err(AdminError::Refused(r.error)),
            Ok(Some(proto::frame::Kind::Error(e))) => Err(AdminError::Refused(e.detail)),
            Ok(other) => Err(AdminError::Malformed(format!("unexpected frame {other:?}"))),
            Err(e) => Err(AdminError::Malformed(e.to_string())),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| AdminError::Timeout(timeout))?
}
