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
    /// The group refused or failed the request (a change in flight, a
    /// lagging learner, the group stopped...).
    #[error("{0}")]
    Refused(String),
    /// The member asked does not lead its group; `leader` (and its Raft
    /// address, when the member knows it) is the one it knows of.
    #[error("{message}")]
    NotLeader {
        /// The leader the member knows of, if any.
        leader: Option<NodeId>,
        /// That leader's Raft address, if known.
        leader_addr: Option<SocketAddr>,
        /// The server's words.
        message: String,
    },
    /// The server runs no such group.
    #[error("{0}")]
    UnknownGroup(String),
    /// The request is invalid (an address, a configuration, no `force`).
    #[error("{0}")]
    InvalidArgument(String),
}

/// A successful admin answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminAnswer {
    /// What happened, or the status, for people.
    pub text: String,
    /// The same as one JSON object (its fields are documented per verb in
    /// the runtime's `admin_verbs.rs` and `oarctl`'s README section).
    pub json: String,
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
    /// Every group the server runs (the group given is ignored).
    ListGroups,
    /// Add a learner: it receives the log but does not vote.
    AddLearner {
        /// Its node id.
        id: NodeId,
        /// Its Raft address.
        addr: SocketAddr,
    },
    /// Promote a caught-up learner to voter.
    PromoteLearner {
        /// Its node id.
        id: NodeId,
    },
    /// Move to this simple configuration (braft's `change_peers`); a
    /// member the group does not know yet needs its address.
    ChangePeers {
        /// The voters, each with its address if new.
        voters: Vec<(NodeId, Option<SocketAddr>)>,
        /// The learners, each with its address if new.
        learners: Vec<(NodeId, Option<SocketAddr>)>,
    },
    /// **Unsafe** (braft's `reset_peers`): force this configuration on the
    /// member asked, without consensus. The server refuses it unless
    /// `force` is set.
    ResetPeers {
        /// The voters.
        voters: Vec<NodeId>,
        /// The learners.
        learners: Vec<NodeId>,
        /// The operator's explicit consent.
        force: bool,
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
            AdminOp::ListGroups => Op::ListGroups(proto::AdminListGroups {}),
            AdminOp::AddLearner { id, addr } => Op::AddLearner(proto::AdminAddLearner {
                id: id.0,
                addr: addr.to_string(),
            }),
            AdminOp::PromoteLearner { id } => {
                Op::PromoteLearner(proto::AdminPromoteLearner { id: id.0 })
            }
            AdminOp::ChangePeers { voters, learners } => {
                let members = |list: &[(NodeId, Option<SocketAddr>)]| {
                    list.iter()
                        .map(|(id, addr)| proto::AdminMember {
                            id: id.0,
                            addr: addr.map_or(String::new(), |a| a.to_string()),
                        })
                        .collect()
                };
                Op::ChangePeers(proto::AdminChangePeers {
                    voters: members(voters),
                    learners: members(learners),
                })
            }
            AdminOp::ResetPeers {
                voters,
                learners,
                force,
            } => Op::ResetPeers(proto::AdminResetPeers {
                voters: voters.iter().map(|v| v.0).collect(),
                learners: learners.iter().map(|l| l.0).collect(),
                force: *force,
            }),
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
    request(dialer, addr, group, op, timeout)
        .await
        .map(|a| a.text)
}

/// Runs `op` on `group` at the server `addr` and returns the whole answer
/// (text and JSON).
///
/// # Errors
/// [`AdminError`].
pub async fn request(
    dialer: &Dialer,
    addr: SocketAddr,
    group: GroupId,
    op: AdminOp,
    timeout: Duration,
) -> Result<AdminAnswer, AdminError> {
    exchange(dialer, addr, op.to_request(group), timeout).await
}

/// [`call`] with a request in its wire form (tests send malformed ones).
#[doc(hidden)]
pub async fn call_request(
    dialer: &Dialer,
    addr: SocketAddr,
    request: proto::AdminRequest,
    timeout: Duration,
) -> Result<String, AdminError> {
    exchange(dialer, addr, request, timeout)
        .await
        .map(|a| a.text)
}

async fn exchange(
    dialer: &Dialer,
    addr: SocketAddr,
    request: proto::AdminRequest,
    timeout: Duration,
) -> Result<AdminAnswer, AdminError> {
    let exchange = async {
        let stream = dialer.dial(addr).await?;
        let (mut reader, mut writer) = tokio::io::split(stream);
        write_frame(&mut writer, proto::frame::Kind::AdminRequest(request)).await?;
        let body = read_frame(&mut reader, FRAME_BYTES_MAX)
            .await
            .map_err(|e| AdminError::Malformed(e.to_string()))?;
        match proto::Frame::decode(body).map(|f| f.kind) {
            Ok(Some(proto::frame::Kind::AdminResponse(r))) => answer_of(r),
            Ok(Some(proto::frame::Kind::Error(e))) => Err(AdminError::Refused(e.detail)),
            Ok(other) => Err(AdminError::Malformed(format!("unexpected frame {other:?}"))),
            Err(e) => Err(AdminError::Malformed(e.to_string())),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| AdminError::Timeout(timeout))?
}

/// A response as an answer or a typed refusal.
fn answer_of(r: proto::AdminResponse) -> Result<AdminAnswer, AdminError> {
    use proto::admin_response::ErrorKind;
    if r.error.is_empty() {
        return Ok(AdminAnswer {
            text: r.text,
            json: r.json,
        });
    }
    Err(match ErrorKind::try_from(r.kind).unwrap_or_default() {
        ErrorKind::NotLeader => AdminError::NotLeader {
            leader: (r.leader != 0).then_some(NodeId(r.leader)),
            leader_addr: r.leader_addr.parse().ok(),
            message: r.error,
        },
        ErrorKind::UnknownGroup => AdminError::UnknownGroup(r.error),
        ErrorKind::InvalidArgument => AdminError::InvalidArgument(r.error),
        ErrorKind::Failed | ErrorKind::Unspecified => AdminError::Refused(r.error),
    })
}
