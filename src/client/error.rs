//! Why a client call failed.

use std::time::Duration;

use crate::runtime::{GroupId, SessionError};

/// Why a [`Client`](super::Client) call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No attempt succeeded before the deadline. A session write may or
    /// may not have been applied; retrying it in the same session (same
    /// sequence number) is safe, which [`Session::apply`](super::Session::apply)
    /// does until its deadline.
    #[error("no answer within {deadline:?} (last: {last})")]
    Timeout {
        /// The call's deadline.
        deadline: Duration,
        /// The last attempt's failure.
        last: String,
    },
    /// A write outside any session ([`Client::apply`](super::Client::apply))
    /// may or may not have been applied (the connection broke or timed out
    /// after it was sent, or the server could not tell); it was not retried,
    /// since a retry could apply it twice. Remedy: read back, or write
    /// through a [`Session`](super::Session).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The session refused the request (expired, forgotten, full); it was
    /// not applied. Remedy: see the inner error.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// No server the client knows runs this group.
    #[error("group {0} is not served by any known server")]
    UnknownGroup(GroupId),
    /// The server refused the request for good (too large, no sessions in
    /// this group, not allowed for this identity, ...).
    #[error("refused: {0}")]
    Refused(String),
    /// Every connection to the server had all its request slots taken
    /// (`ClientOptions::connections_per_server_max` ×
    /// `requests_in_flight_per_connection_max`); the request was not sent.
    /// Remedy: fewer concurrent calls, or larger limits.
    #[error("{in_flight} requests already in flight to the server")]
    Busy {
        /// The requests in flight to that server (the limit).
        in_flight: usize,
    },
}
