//! The client side of the admin service (what `oarctl` runs): one request,
//! one answer, over its own connection to a server's Raft port.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message as _;

use super::auth::{DialError, Dialer};
use super::group_id::GroupId;
use super::wire::frame::{FRAME_BYTES_MAX, read_frame, write_frame};
use super::wire::proto;
use crate::core::NodeId;

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

/// One admin verb (braft's `CliService` calls), run by one group's member
/// on the server it is sent to; changes must go to the group's leader.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminOp {
    /// Role, term, log, configuration and (on the leader) peer progress.
    Status,
    /// Save a snapshot now and compact the log.
    Snapshot,
    /// Hand leadership to a voter.
    TransferLeader {
        /// The voter to lead next.
        to: NodeId,
    },
    /// Add a voter: as a learner first, promoted once caught up.
    AddPeer {
        /// Its node id.
        id: NodeId,
        /// Its Raft address.
        addr: SocketAddr,
        /// How long it may take to catch up (the server caps it at an hour).
        catch_up: Duration,
    },
    /// Remove a member.
    RemovePeer {
        /// Its node id.
        id: NodeId,
    },
}

impl AdminOp {
    /// The request for `group` in its wire form.
    fn to_request(&self, group: GroupId) -> proto::AdminRequest {
        use proto::admin_request::Op;
        let op = match self {
            AdminOp::Status => Op::Status(proto::AdminStatus {}),
            AdminOp::Snapshot => Op::Snapshot(proto::AdminSnapshot {}),
            AdminOp::TransferLeader { to } => Op::TransferLeader(proto::AdminTransfer { to: to.0 }),
            AdminOp::AddPeer { id, addr, catch_up } => Op::AddPeer(proto::AdminAddPeer {
                id: id.0,
                addr: addr.to_string(),
                catch_up_ms: u64::try_from(catch_up.as_millis()).unwrap_or(u64::MAX),
            }),
            AdminOp::RemovePeer { id } => Op::RemovePeer(proto::AdminRemovePeer { id: id.0 }),
        };
        proto::AdminRequest {
            group_id: group.0,
            op: Some(op),
        }
    }
}

/// Runs `op` on `group` at the server `addr` over a connection `dialer`
/// opens (an operator's) and returns the answer's text.
///
/// # Errors
/// [`AdminError`].
pub async fn call(
    dialer: &Dialer,
    addr: SocketAddr,
    group: GroupId,
    op: AdminOp,
    timeout: Duration,
) -> Result<String, AdminError> {
    call_request(dialer, addr, op.to_request(group), timeout).await
}

/// [`call`] with a request in its wire form (tests send malformed ones).
#[doc(hidden)]
pub async fn call_request(
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
