//! A client's timeouts and limits.

use std::time::Duration;

use crate::core::ReadPolicy;

/// How a [`Client`](super::Client) waits and retries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one request may take at one server (connecting included)
    /// before the client gives up on that attempt and retries.
    pub attempt_timeout: Duration,
    /// How long a call keeps retrying (across leader changes, elections and
    /// reconnections) before it fails with [`ClientError::Timeout`](super::ClientError::Timeout).
    pub deadline: Duration,
    /// The first wait between failed attempts; it doubles (with jitter) up
    /// to `backoff_max`.
    pub backoff_min: Duration,
    /// The longest wait between failed attempts.
    pub backoff_max: Duration,
    /// The largest answer frame read, in bytes.
    pub frame_bytes_max: u32,
    /// Connections opened to one server at most; concurrent calls share
    /// them (each carries many requests at once).
    pub connections_per_server_max: usize,
    /// Requests one connection carries at once at most. With every
    /// connection to a server that full, a call fails at once with
    /// [`ClientError::Busy`](super::ClientError::Busy). Servers bound it
    /// too (`TransportOptions::client_requests_in_flight_max`).
    pub requests_in_flight_per_connection_max: usize,
    /// How [`Client::read`](super::Client::read) makes a read linearizable.
    /// `ReadIndex` (the default) and `Lease` skip the log when the group's
    /// state machine answers queries (`StateMachine::on_query`); a state
    /// machine that does not gets every read through the log.
    pub read_policy: ReadPolicy,
    /// Send `ReadIndex` and `Lease` reads to every member in turn, not only
    /// the leader: followers serve them (after asking the leader for the
    /// read index), adding their capacity. `Log` reads still go to the
    /// leader.
    pub follower_reads: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attempt_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(30),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
            frame_bytes_max: 64 << 20,
            connections_per_server_max: 4,
            requests_in_flight_per_connection_max: 256,
            read_policy: ReadPolicy::ReadIndex,
            follower_reads: false,
        }
    }
}
