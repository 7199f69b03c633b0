//! What a group's driver needs from durable storage: recover at start, then
//! execute the core's ordered writes in batches with one sync per batch.
//! [`DiskStorage`] is the real one (segment log + meta file over a
//! [`FileSystem`]); [`MemStorage`](super::mem_storage::MemStorage) keeps
//! everything in memory.

use std::path::Path;
use std::sync::Arc;

use super::blocking::run_blocking_unwinding;
use super::snapshot_storage::{DiskSnapshots, SnapshotStorage};
use crate::core::{EntriesLoad, Entry};
use crate::storage::{
    Durable, FileSystem, LogOptions, LogWriter, Recovered, StorageError, WriteOp,
};

/// A storage failure, as the runtime reports it.
pub type StorageFailure = Box<dyn std::error::Error + Send + Sync>;

/// The completions of a batch queued by [`GroupStorage::persist_queued`].
pub type PersistFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Durable>, StorageFailure>> + Send>,
>;

/// Durable storage of one group.
pub trait GroupStorage: Send + 'static {
    /// Reads back what is durable. Called once, at start.
    ///
    /// # Errors
    /// Any failure to read or validate the stored state.
    fn recover(&mut self) -> Result<Recovered, StorageFailure>;

    /// Executes `ops` in order and makes them durable (one sync for the
    /// batch where possible), then returns their completions in order.
    ///
    /// # Errors
    /// Any failure: the runtime then stops the group (fail-stop), because
    /// it can no longer vouch for what is durable.
    fn persist(&mut self, ops: Vec<WriteOp>) -> Result<Vec<Durable>, StorageFailure>;

    /// How long the device takes before the next batch is durable. The log
    /// writer waits this long (in the runtime's time) before `persist`:
    /// real devices answer at once here and spend their time inside
    /// `persist`; a simulated device uses it to open the window in which a
    /// crash loses a write that is not yet durable (feature `testing`).
    #[cfg(feature = "testing")]
    fn device_latency(&mut self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// The group's snapshot storage, shared with the apply task and the
    /// file service.
    fn snapshots(&self) -> Arc<dyn SnapshotStorage>;

    /// Whether `persist` may block (on a disk, a lock held across I/O). A
    /// blocking `persist` runs in the group's log writer task, on the
    /// blocking pool, so that a slow disk stalls only its own group. One
    /// that never blocks is called by the group task itself, in the
    /// wake-up that produced the batch (no writer task, no thread
    /// hand-off; `device_latency` is not consulted): it must then really
    /// never block, or its group stops answering while it does.
    fn persist_may_block(&self) -> bool {
        true
    }

    /// Queues `ops` with storage that makes them durable on its own
    /// schedule (a server's [`SharedLog`](super::SharedLog), flushing for
    /// many groups at once): `Ok` with the future of their completions,
    /// which the group's log writer awaits without holding a blocking-pool
    /// thread; `Err(ops)` (the default) to have [`persist`](Self::persist)
    /// called instead. Never blocks. Called in order with `persist`, with
    /// at most one batch in flight.
    fn persist_queued(&mut self, ops: Vec<WriteOp>) -> Result<PersistFuture, Vec<WriteOp>> {
        Err(ops)
    }

    /// Whether [`read_entries`](Self::read_entries) reads durable entries
    /// back. Only then may the core evict applied entries from memory
    /// (`RaftOptions::log_cache_bytes_max`; ignored otherwise).
    fn reads_entries(&self) -> bool {
        false
    }

    /// Reads back the durable entries `load` asks for (`[lo, hi)`, within
    /// its count and byte bounds), checksums verified. Called in order with
    /// `persist` (after every batch submitted before it), in the same
    /// place: on the blocking pool when `persist` may block.
    ///
    /// # Errors
    /// Any failure (corruption included): the read fails, and the core
    /// tries again later; wrong bytes are never returned.
    fn read_entries(&mut self, load: &EntriesLoad) -> Result<Vec<Entry>, StorageFailure> {
        let _ = load;
        Err("this storage does not read entries back".into())
    }
}

/// A boxed storage is one, so that callers holding a `Box<dyn
/// GroupStorage>` (chosen at run time) pass it as it is.
impl<S: GroupStorage + ?Sized> GroupStorage for Box<S> {
    fn recover(&mut self) -> Result<Recovered, StorageFailure> {
        (**self).recover()
    }

    fn persist(&mut self, ops: Vec<WriteOp>) -> Result<Vec<Durable>, StorageFailure> {
        (**self).persist(ops)
    }

    #[cfg(feature = "testing")]
    fn device_latency(&mut self) -> std::time::Duration {
        (**self).device_latency()
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStorage> {
        (**self).snapshots()
    }

    fn persist_may_block(&self) -> bool {
        (**self).persist_may_block()
    }

    fn reads_entries(&self) -> bool {
        (**self).reads_entries()
    }

    fn read_entries(&mut self, load: &EntriesLoad) -> Result<Vec<Entry>, StorageFailure> {
        (**self).read_entries(load)
    }
}

/// The real storage: braft's SegmentLogStorage and LocalRaftMetaStorage in
/// one directory per group.
#[derive(Debug)]
pub struct DiskStorage {
    writer: LogWriter,
    recovered: Option<Recovered>,
    snapshots: Arc<DiskSnapshots>,
}

impl DiskStorage {
    /// Opens (creating) a group's storage directory and recovers it: the
    /// log and meta as [`LogWriter`] lays them out, snapshots in
    /// `dir/snapshot`. Locking, reading back and repairing the directory
    /// (fsyncs included) runs on tokio's blocking pool, so that a server
    /// opening many groups at once keeps serving the ones already open.
    ///
    /// # Errors
    /// [`StorageError::Locked`] if another instance has `dir` open,
    /// [`StorageError::Corruption`] for damage recovery may not repair, or
    /// [`StorageError::Io`].
    ///
    /// # Example
    /// ```
    /// # use std::sync::Arc;
    /// # use oar::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("oar-doc-{}", std::process::id()));
    /// let fs = Arc::new(StdFileSystem);
    /// let storage = DiskStorage::open(fs.clone(), &dir, LogOptions::default()).await?;
    /// // One instance at a time: a second open is refused, typed.
    /// let again = DiskStorage::open(fs, &dir, LogOptions::default()).await;
    /// assert!(matches!(again, Err(StorageError::Locked { .. })));
    /// drop(storage);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: LogOptions,
    ) -> Result<Self, StorageError> {
        let dir = dir.to_path_buf();
        run_blocking_unwinding(move || Self::open_blocking(fs, &dir, options)).await
    }

    /// [`open`](Self::open) on the calling thread, for a caller outside an
    /// async runtime (a tool, a test's set-up). Blocks for the reads and
    /// fsyncs of recovery.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_blocking(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: LogOptions,
    ) -> Result<Self, StorageError> {
        let (writer, recovered) = LogWriter::open(Arc::clone(&fs), dir, options)?;
        let snapshots = Arc::new(DiskSnapshots::open(fs, &dir.join(SNAPSHOT_DIR_NAME))?);
        Ok(DiskStorage {
            writer,
            recovered: Some(recovered),
            snapshots,
        })
    }
}

impl GroupStorage for DiskStorage {
    fn recover(&mut self) -> Result<Recovered, StorageFailure> {
        self.recovered
            .take()
            .ok_or_else(|| "storage already recovered".into())
    }

    fn persist(&mut self, ops: Vec<WriteOp>) -> Result<Vec<Durable>, StorageFailure> {
        Ok(self.writer.write(ops)?)
    }

    fn reads_entries(&self) -> bool {
        true
    }

    fn read_entries(&mut self, load: &EntriesLoad) -> Result<Vec<Entry>, StorageFailure> {
        let log = self.writer.log();
        Ok(log.read_range(load.lo, load.hi, load.count_max, load.bytes_max)?)
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStorage> {
        self.snapshots.clone()
    }
}

/// The snapshot subdirectory of a group's storage directory.
pub const SNAPSHOT_DIR_NAME: &str = "snapshot";
