//! The production driver on tokio and TCP (through `madsim-tokio`, so the
//! same code runs in the simulator).
//!
//! ```text
//!   peers ──TCP──► NodeManager ──route by group id──► group task (RaftNode)
//!                                                    │   ├─► log writer task ─► GroupStorage
//!   clients ── Node::apply ─────────────────────────►│   └─► apply task ─────► StateMachine
//!   oar::client ──TCP──► client_service ──► Node ────┘         (session table first,
//!                                                    │          if the group keeps sessions)
//!                                                    └─► Transport (one connection per peer server)
//! ```

mod admin;
pub mod admin_client;
mod admin_service;
mod admin_verbs;
mod apply_loop;
pub mod auth;
pub(crate) mod backoff;
mod blocking;
mod client_connection;
mod client_service;
pub mod clock;
pub mod error;
mod group;
pub mod group_id;
pub mod group_storage;
pub mod inbound;
mod liveness;
pub mod mem_storage;
mod metrics;
mod node;
mod node_manager;
mod observer;
pub mod options;
mod peer_lives;
mod pending;
mod queue;
mod read_barrier;
mod read_batch;
mod read_lease;
pub mod session;
pub mod shared_log;
pub mod snapshot_copy;
mod snapshot_install;
mod snapshot_policy;
pub mod snapshot_storage;
mod snapshot_view;
mod socket_options;
mod start_point;
pub mod state_machine;
mod status_http;
mod status_json;
pub mod throttle;
pub mod transport;
mod watch;
#[doc(hidden)]
pub mod wire;
mod write_task;

pub use crate::core::ReadPolicy;
/// The snapshot writer and reader a state machine saves through and loads
/// from (the storage layer's, re-exported).
pub use crate::storage::{SnapshotFileReader, SnapshotFileWriter, SnapshotReader, SnapshotWriter};
pub use admin_service::status_text;
pub use apply_loop::Applied;
pub use auth::{
    Authenticator, ClusterKeyAuthenticator, Credential, DialError, Dialer, Insecure, Security,
    TlsAuthenticator, TlsError,
};
pub use clock::{Clock, MonotonicClock, SkewedClock};
pub use error::Error;
pub use group_id::GroupId;
pub use group_storage::{DiskStorage, GroupStorage, PersistFuture, StorageFailure};
pub use mem_storage::MemStorage;
pub use metrics::METRIC_NAMES;
pub use node::Node;
pub use node_manager::{NodeManager, ServerStats};
pub use observer::GroupDetails;
pub use options::GroupOptions;
pub use session::{SessionError, SessionId, SessionOptions};
pub use shared_log::{SharedLog, SharedLogStats, SharedLogStorage};
pub use snapshot_copy::{CopyError, CopyOptions, SnapshotSource, fetch_snapshot};
pub use snapshot_storage::{
    DiskSnapshots, MemSnapshots, SnapshotFiles, SnapshotReadError, SnapshotStorage,
};
pub use snapshot_view::{SnapshotView, snapshot_file};
pub use state_machine::{Committed, QueryError, SnapshotError, StateMachine};
pub use throttle::Throttle;
pub use transport::{LocalNetwork, Router, Transport, TransportOptions};
pub use watch::{GroupStatus, WaitError};
