//! Durable storage: segmented log, term/vote meta and snapshot directories.
//!
//! Everything is written against the small [`FileSystem`] trait, so the
//! simulator runs this very code over `MemFileSystem` (feature `testing`),
//! a disk that loses, tears and corrupts unsynced data as a seed decides.
//! The on-disk format is described in `docs/on_disk_format.md`, the fault
//! model in `docs/fault_model.md`.
//!
//! Layout of a node's storage directory:
//! ```text
//! <dir>/log/log_meta                       first-index marker (atomic file)
//! <dir>/log/log_{first:020}_{last:020}     closed segments
//! <dir>/log/log_inprogress_{first:020}     the open segment
//! <dir>/log/log_recycle_{seq:020}          a purged segment kept for reuse
//! <dir>/raft_meta                          term and vote (atomic file)
//! <dir>/snapshot/snapshot_{index:020}/     the newest snapshot
//! <dir>/snapshot/temp/                     a snapshot being written
//! ```
//!
//! The runtime opens a node's storage with [`LogWriter::open`], which
//! returns what restart needs ([`Recovered`]), then drives it with
//! [`LogWriter::submit`] and [`LogWriter::flush`] (one sync a batch);
//! snapshots go through [`SnapshotStore`].
//!
//! A server may instead keep one log for all its groups ([`ServerLog`],
//! `server_log/`): frames of every group in one segment sequence, one
//! `fdatasync` for all the batches that arrived together.

pub mod atomic_file;
mod direct_writer;
pub mod error;
pub mod fs;
#[cfg(any(test, feature = "testing"))]
pub mod fs_mem;
// Without `testing`, only `MemSnapshots` (the memory storage's snapshots)
// uses the in-memory file system; its fault injection goes unused.
#[cfg(not(any(test, feature = "testing")))]
#[allow(dead_code, unreachable_pub)]
mod fs_mem;
pub mod fs_std;
pub mod log_writer;
pub mod meta;
pub mod record;
mod recovery;
mod recycle;
mod segment;
pub mod segment_log;
pub mod segment_name;
pub mod server_log;
mod snapshot_file;
pub mod snapshot_meta;
pub mod snapshot_store;

pub use error::{CorruptionKind, StorageError};
pub use fs::{DIR_LOCK_NAME, DIRECT_IO_ALIGN, DirLock, File, FileSystem};
#[cfg(not(any(test, feature = "testing")))]
pub(crate) use fs_mem::MemFileSystem;
#[cfg(any(test, feature = "testing"))]
pub use fs_mem::{FsOp, MemFileSystem};
pub use fs_std::StdFileSystem;
pub use log_writer::{Durable, LogWriter, Recovered, WriteOp};
pub use meta::MetaStorage;
pub use segment_log::{LogOptions, RecoveredLog, SegmentLog};
pub use segment_name::SegmentName;
pub use server_log::{ServerLog, ServerLogOptions};
pub(crate) use snapshot_file::{DetachedFileWriter, SyncedFile};
pub use snapshot_meta::{SnapshotFile, SnapshotMeta};
pub use snapshot_store::{
    SnapshotFileReader, SnapshotFileWriter, SnapshotReader, SnapshotStore, SnapshotWriter,
    WritePace,
};
