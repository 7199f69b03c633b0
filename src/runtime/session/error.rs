//! Why a session request was refused. Every refusal is decided from the log
//! alone, so every replica refuses the same requests, and none of them was
//! applied.

use super::table::SessionId;

/// A session request that the apply path refused; the command was not
/// applied (and a retry will not apply it either, unless the remedy says so).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session is unknown: it expired (no request for
    /// [`SessionOptions::expiry`](super::SessionOptions::expiry) of log
    /// time), was closed, or never existed. Whether an earlier attempt of
    /// this request was applied cannot be told any more. Remedy: open a new
    /// session, and read back before retrying a non-idempotent command.
    #[error("session {session} expired or unknown")]
    Expired {
        /// The session.
        session: SessionId,
    },
    /// The request's sequence number is below the watermark the client
    /// itself sent: its reply was forgotten on the client's word. A client
    /// bug; the command is not applied again.
    #[error("session {session}: the reply of request {seq} was already forgotten")]
    ReplyForgotten {
        /// The session.
        session: SessionId,
        /// The request's sequence number.
        seq: u64,
    },
    /// The session table is full ([`SessionOptions::sessions_max`](super::SessionOptions::sessions_max)).
    /// Remedy: close idle sessions, or wait for them to expire.
    #[error("no room for another session (at most {max})")]
    TooManySessions {
        /// The limit.
        max: usize,
    },
    /// The session (or the whole table) holds as many unacknowledged
    /// replies as it may; nothing was applied. Remedy: raise the watermark
    /// (acknowledge replies), then retry.
    #[error("session {session}: too many replies not yet acknowledged")]
    ReplyCacheFull {
        /// The session.
        session: SessionId,
    },
    /// The log entry was not a valid session envelope (it did not come
    /// through oar's session API).
    #[error("malformed session request")]
    Malformed,
}

impl SessionError {
    /// The code this error is logged and sent with.
    pub(crate) fn code(&self) -> u8 {
        match self {
            SessionError::Expired { .. } => 1,
            SessionError::ReplyForgotten { .. } => 2,
            SessionError::TooManySessions { .. } => 3,
            SessionError::ReplyCacheFull { .. } => 4,
            SessionError::Malformed => 5,
        }
    }
}
