//! The `Hello` step: the side that opened a connection says which cluster
//! it belongs to and in which role it comes; the accepting side checks the
//! claim against what the secure channel proved.

use std::net::SocketAddr;

use bytes::Bytes;
use prost::Message as _;

use super::channel::Credential;
use super::security::Security;
use crate::runtime::wire::proto;
use crate::runtime::wire::proto::hello_reply::Status;

/// Who is on the other end of an accepted connection, once its `Hello` was
/// accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The server whose Raft address this is: it may send Raft messages
    /// for the nodes that live there, and fetch snapshots.
    Server(SocketAddr),
    /// An operator: admin requests and the status page, and whatever a
    /// client may ask.
    Operator,
    /// An application (`oar::client`): sessions, commands, reads, routes.
    Client,
}

/// Why a `Hello` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("hello refused ({status:?}): {detail}")]
pub struct HelloRefusal {
    /// The refusal's kind, as sent in the `HelloReply`.
    pub status: Status,
    /// For people.
    pub detail: String,
}

impl HelloRefusal {
    fn new(status: Status, detail: impl Into<String>) -> Self {
        HelloRefusal {
            status,
            detail: detail.into(),
        }
    }

    /// The reply that tells the other side.
    pub(crate) fn reply(&self) -> proto::HelloReply {
        proto::HelloReply {
            status: self.status as i32,
            detail: self.detail.clone(),
        }
    }
}

/// The reply to an accepted `Hello`.
pub(crate) fn accepted() -> proto::HelloReply {
    proto::HelloReply {
        status: Status::Accepted as i32,
        detail: String::new(),
    }
}

/// Checks the first frame of a connection (`body`, a protobuf `Frame`)
/// as a `Hello` against what the channel proved.
///
/// The identity, and for a server the incarnation its `Hello` named (0
/// otherwise).
///
/// # Errors
/// [`HelloRefusal`]: not a `Hello`, another cluster, or a claim the
/// credential does not back.
pub(crate) fn accept_hello(
    body: Bytes,
    credential: &Credential,
    security: &Security,
) -> Result<(Identity, u64), HelloRefusal> {
    let hello = match proto::Frame::decode(body).map(|f| f.kind) {
        Ok(Some(proto::frame::Kind::Hello(hello))) => hello,
        _ => {
            return Err(HelloRefusal::new(
                Status::Malformed,
                "the first frame must be a Hello",
            ));
        }
    };
    if hello.cluster_id != security.cluster_id {
        return Err(HelloRefusal::new(
            Status::WrongCluster,
            format!("this server belongs to cluster {:?}", security.cluster_id),
        ));
    }
    use proto::hello::Role;
    match hello.role {
        Some(Role::ServerAddr(addr)) => {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| HelloRefusal::new(Status::Malformed, "unparsable server address"))?;
            if credential.vouches_for_server(addr) {
                Ok((Identity::Server(addr), hello.incarnation))
            } else {
                Err(HelloRefusal::new(
                    Status::NotAuthenticated,
                    format!("the credential does not vouch for a server at {addr}"),
                ))
            }
        }
        Some(Role::OperatorToken(token)) => {
            if security.is_operator(credential, &token) {
                Ok((Identity::Operator, 0))
            } else {
                Err(HelloRefusal::new(
                    Status::NotAuthenticated,
                    "unknown operator token",
                ))
            }
        }
        Some(Role::ClientToken(token)) => {
            if security.is_client(credential, &token) {
                Ok((Identity::Client, 0))
            } else {
                Err(HelloRefusal::new(
                    Status::NotAuthenticated,
                    "unknown client token",
                ))
            }
        }
        None => Err(HelloRefusal::new(Status::Malformed, "a Hello needs a role")),
    }
}
