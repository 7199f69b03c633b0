//! Copying snapshots between servers (braft's `FileService` and
//! `RemoteFileCopier`): a follower that must install a snapshot pulls its
//! meta and files in checksummed chunks from the leader's server, which
//! answers from the group's [`SnapshotStorage`](super::SnapshotStorage).
//! Both servers pace the bytes with their [`Throttle`](super::Throttle).
//!
//! ```text
//!   follower server                          leader server
//!   fetch_snapshot ── GetFileRequest(meta) ──► NodeManager ─► FileService
//!        │        ◄── GetFileResponse(meta) ──        (group ─► SnapshotStorage)
//!        └─ per file, ≤ window chunks in flight, resume at the first
//!           missing byte after a broken connection or a timeout
//! ```

mod client;
mod connection;
mod server;

pub use client::{CopyError, CopyOptions, SnapshotSource, fetch_snapshot};
pub use server::SERVE_CHUNK_BYTES_MAX;
pub(crate) use server::{FileHandler, FileService};
