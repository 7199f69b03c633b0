//! Everything a service embedding oar needs, in one import:
//!
//! ```
//! use oar::prelude::*;
//! ```
//!
//! The server side ([`NodeManager`], [`Node`], [`GroupOptions`],
//! [`StateMachine`], [`DiskStorage`]), its security ([`Security`],
//! [`TlsAuthenticator`]), the client ([`Client`]), the ids and the errors,
//! and [`Bytes`] (commands and responses), so that the embedder needs no
//! `bytes` dependency of its own. `examples/embed.rs` uses nothing else.
//!
//! The runtime runs on tokio 1 (through `madsim-tokio`, which is plain
//! tokio outside the simulator): the embedder depends on
//! `tokio = { version = "1", features = ["macros", "rt-multi-thread"] }`.

pub use bytes::Bytes;

pub use crate::client::{Client, ClientError, ClientOptions, Session};
pub use crate::core::{LogId, LogIndex, Membership, NodeId, ReadPolicy, Role, Term};
pub use crate::runtime::{
    Applied, Committed, Dialer, DiskStorage, Error, GroupId, GroupOptions, GroupStatus,
    GroupStorage, Insecure, MemStorage, Node, NodeManager, QueryError, Security, SessionOptions,
    SnapshotError, SnapshotFiles, StateMachine, TlsAuthenticator, TransportOptions, WaitError,
};
pub use crate::storage::{CorruptionKind, FileSystem, LogOptions, StdFileSystem, StorageError};
