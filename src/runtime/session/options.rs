//! The limits of a group's session table.

use std::time::Duration;

/// How a group keeps client sessions. Every limit is checked from the log
/// alone (the same on every replica); going over one gets a typed
/// [`SessionError`](super::SessionError), never a silent drop.
///
/// Memory held by the table is at most about `sessions_max` small records
/// plus `reply_bytes_max` of replies (plus one apply batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// A session with no request for this much log time expires. Log time
    /// is the largest time a leader stamped on an entry: it advances only
    /// with the log (an idle group expires nothing) and a leader whose clock
    /// runs ahead expires sessions early by its skew.
    pub expiry: Duration,
    /// Open sessions at most; opening one more is refused
    /// ([`SessionError::TooManySessions`](super::SessionError::TooManySessions)).
    pub sessions_max: usize,
    /// Replies one session may hold that its client has not acknowledged.
    pub replies_per_session_max: usize,
    /// Bytes of replies one session may hold.
    pub reply_bytes_per_session_max: usize,
    /// Bytes of replies all sessions together may hold.
    pub reply_bytes_max: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            expiry: Duration::from_secs(600),
            sessions_max: 10_000,
            replies_per_session_max: 1_024,
            reply_bytes_per_session_max: 1 << 20,
            reply_bytes_max: 256 << 20,
        }
    }
}
