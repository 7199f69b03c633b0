//! A client of an oar cluster (braft's `route_table`, and exactly-once
//! writes): given a few server addresses it learns every group's members
//! and leader, keeps them in a route table, follows `NotLeader` hints,
//! waits out elections, and retries through sessions so that a write is
//! applied once however often it is retried.
//!
//! ```text
//!   Client::open_session(group) ─► Session::apply(command)
//!      │                                 │ seq, first_unacked
//!      ▼                                 ▼
//!   RouteTable (group → leader, members)   retry loop until the deadline:
//!      ▲  refresh from any server            NotLeader(hint) → ask the hinted leader
//!      └───────────────────────────────────  connection lost / timeout / no leader
//!                                              → jittered backoff, refresh, retry (same seq)
//! ```
//!
//! It lives beside `runtime` rather than inside it: it is the other side of
//! the wire, what an application outside the cluster links, and it uses
//! only the runtime's authenticated [`Dialer`](crate::runtime::Dialer) and
//! wire types, never a server's groups.

mod admin;
mod connection;
mod error;
mod options;
mod read;
mod retry;
mod route_table;
mod session;

pub use error::ClientError;
pub use options::ClientOptions;
pub use retry::Client;
pub use route_table::{GroupRoute, RouteTable};
pub use session::Session;
