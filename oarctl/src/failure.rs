//! Why a verb failed, as a class with its own exit code, so that scripts
//! can act on it (`3`: ask the leader named; `6`: retry later...).

use std::net::SocketAddr;
use std::process::ExitCode;

use oar::core::NodeId;
use std::io::ErrorKind;

use oar::runtime::DialError;
use oar::runtime::admin_client::AdminError;
use oar::runtime::auth::AuthError;
use serde_json::{Value, json};

/// A failed verb: its class and what to tell the operator.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) class: Class,
    pub(crate) message: String,
    /// With [`Class::NotLeader`]: the leader known, and its address.
    pub(crate) leader: Option<(NodeId, Option<SocketAddr>)>,
}

/// The error classes and their exit codes (documented in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// 1: the group refused or failed the request, or anything unforeseen.
    Failed,
    /// 2: the command line or the request is invalid (clap's usage errors
    /// exit 2 too).
    InvalidArgument,
    /// 3: no leader could be reached (none elected, or it kept moving).
    NotLeader,
    /// 4: the server runs no such group.
    UnknownGroup,
    /// 5: the server refused our credentials, or we refused its certificate.
    Credentials,
    /// 6: no answer in time.
    Timeout,
    /// 7: no server could be reached.
    Unreachable,
}

impl Class {
    /// The process exit code of this class.
    pub(crate) fn code(self) -> u8 {
        match self {
            Class::Failed => 1,
            Class::InvalidArgument => 2,
            Class::NotLeader => 3,
            Class::UnknownGroup => 4,
            Class::Credentials => 5,
            Class::Timeout => 6,
            Class::Unreachable => 7,
        }
    }

    /// The class's name in `--output json`.
    fn name(self) -> &'static str {
        match self {
            Class::Failed => "failed",
            Class::InvalidArgument => "invalid_argument",
            Class::NotLeader => "not_leader",
            Class::UnknownGroup => "unknown_group",
            Class::Credentials => "credentials_refused",
            Class::Timeout => "timeout",
            Class::Unreachable => "unreachable",
        }
    }
}

impl Failure {
    /// A failure of `class` with this message.
    pub(crate) fn new(class: Class, message: impl Into<String>) -> Failure {
        Failure {
            class,
            message: message.into(),
            leader: None,
        }
    }

    /// The failure as `--output json` prints it:
    /// `{"error": {"class", "exit_code", "message", "leader", "leader_addr"}}`.
    pub(crate) fn json(&self) -> Value {
        json!({
            "error": {
                "class": self.class.name(),
                "exit_code": self.class.code(),
                "message": self.message,
                "leader": self.leader.map(|(id, _)| id.0),
                "leader_addr": self.leader.and_then(|(_, a)| a).map(|a| a.to_string()),
            }
        })
    }

    /// The process exit code.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.class.code())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        match self.leader {
            Some((id, Some(addr))) => write!(f, " (the leader is {id} at {addr})"),
            Some((id, None)) => write!(f, " (the leader is {id}, address unknown here)"),
            None if self.class == Class::NotLeader => f.write_str(" (no leader known)"),
            None => Ok(()),
        }
    }
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Failure {
        let message = e.to_string();
        let class = match &e {
            AdminError::NotLeader {
                leader,
                leader_addr,
                ..
            } => {
                return Failure {
                    class: Class::NotLeader,
                    message,
                    leader: leader.map(|id| (id, *leader_addr)),
                };
            }
            AdminError::UnknownGroup(_) => Class::UnknownGroup,
            AdminError::InvalidArgument(_) => Class::InvalidArgument,
            AdminError::Refused(_) | AdminError::Malformed(_) => Class::Failed,
            AdminError::Timeout(_) => Class::Timeout,
            AdminError::Io(_) => Class::Unreachable,
            AdminError::Dial(dial) => match dial {
                DialError::Refused(_) => Class::Credentials,
                // TLS refusals (a server certificate our CA did not sign)
                // surface as invalid data; a reset or an early close
                // during the handshake is the server going away.
                DialError::Auth(AuthError::Io(io)) if io.kind() != ErrorKind::InvalidData => {
                    Class::Unreachable
                }
                DialError::Auth(_) => Class::Credentials,
                DialError::Timeout(_) => Class::Timeout,
                DialError::Connect(_) => Class::Unreachable,
                _ => Class::Failed,
            },
            _ => Class::Failed,
        };
        Failure::new(class, message)
    }
}
