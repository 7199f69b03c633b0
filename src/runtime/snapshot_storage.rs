//! Where a group's snapshots live (braft's `SnapshotStorage`): saved by the
//! apply task, loaded at start, served in chunks to lagging followers and
//! streamed in by an installing follower. Every snapshot is a directory of
//! files (the storage layer's [`SnapshotStore`]): [`DiskSnapshots`] keeps
//! them on a file system, [`MemSnapshots`] on an in-memory one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::group_storage::StorageFailure;
use crate::core::{LogId, Membership};
use crate::storage::{
    FileSystem, MemFileSystem, SnapshotMeta, SnapshotReader, SnapshotStore, SnapshotWriter,
    StorageError,
};

/// A snapshot's content held in memory: named files. Only for small states
/// and tests ([`SnapshotStorage::save`]); state machines write through a
/// [`SnapshotWriter`].
pub type SnapshotFiles = BTreeMap<String, Bytes>;

/// Why a chunk of a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotReadError {
    /// The snapshot asked for is not the newest one here (it was replaced,
    /// or never existed). The reader should start over with the newest.
    #[error("snapshot {asked} is not served here (newest: {newest:?})")]
    NotFound {
        /// The snapshot asked for.
        asked: LogId,
        /// The newest snapshot here, if any.
        newest: Option<LogId>,
    },
    /// The snapshot has no file of that name.
    #[error("snapshot has no file {0:?}")]
    NoSuchFile(String),
    /// Reading failed.
    #[error("reading the snapshot failed: {0}")]
    Storage(StorageError),
}

/// A group's snapshot storage. Every method is durable or consistent on
/// return; callers may be on different tasks.
pub trait SnapshotStorage: Send + Sync + 'static {
    /// The newest complete snapshot's meta, if any.
    ///
    /// # Errors
    /// A corrupt or unreadable snapshot.
    fn latest(&self) -> Result<Option<SnapshotMeta>, StorageFailure>;

    /// The newest complete snapshot, to read its files from. A later
    /// commit may remove it: read it while nothing else saves (at start,
    /// or right after installing it), and expect an error otherwise.
    ///
    /// # Errors
    /// A corrupt or unreadable snapshot.
    fn open(&self) -> Result<Option<SnapshotReader>, StorageFailure>;

    /// Starts a new snapshot, in the install area if `install` (a copy from
    /// the leader) or the save area otherwise; one writer of each kind at a
    /// time (a second discards the first's files).
    ///
    /// # Errors
    /// An I/O error.
    fn begin(&self, install: bool) -> Result<SnapshotWriter, StorageFailure>;

    /// Makes the snapshot `writer` wrote durable and the newest (unless a
    /// newer one is there), replacing older ones.
    ///
    /// # Errors
    /// Any write failure; nothing changed that a reader could see.
    fn commit(
        &self,
        writer: SnapshotWriter,
        last_included: LogId,
        membership: Membership,
    ) -> Result<SnapshotMeta, StorageFailure>;

    /// Up to `len` bytes of file `name` of snapshot `snapshot` from
    /// `offset` (fewer at the file's end).
    ///
    /// # Errors
    /// [`SnapshotReadError`].
    fn read_chunk(
        &self,
        snapshot: LogId,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SnapshotReadError>;

    /// Saves a snapshot of files held in memory (tests, small states):
    /// `begin`, one `write_file` each, `commit`.
    ///
    /// # Errors
    /// As [`begin`](Self::begin) and [`commit`](Self::commit).
    fn save(
        &self,
        last_included: LogId,
        membership: Membership,
        files: &SnapshotFiles,
    ) -> Result<SnapshotMeta, StorageFailure> {
        let mut writer = self.begin(false)?;
        for (name, data) in files {
            writer.write_file(name, data)?;
        }
        self.commit(writer, last_included, membership)
    }
}

/// Snapshots in a directory, through the storage layer's [`SnapshotStore`]
/// (temp directory, fsync, atomic rename).
#[derive(Debug)]
pub struct DiskSnapshots {
    store: SnapshotStore,
    /// Held for each commit and each read: a commit removes the snapshot it
    /// supersedes, which a read must not see half gone. Not held while a
    /// snapshot's files are written, so a long save or install does not
    /// stop the file service.
    exclusive: Mutex<()>,
}

impl DiskSnapshots {
    /// Opens (creating) the snapshot directory `dir`.
    ///
    /// # Errors
    /// An I/O error, or a corrupt directory listing.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Self, StorageError> {
        Ok(DiskSnapshots {
            store: SnapshotStore::open(fs, dir)?,
            exclusive: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic under the lock left nothing the next `begin` or `open`
        // does not handle, so a poisoned lock is still usable.
        self.exclusive.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SnapshotStorage for DiskSnapshots {
    fn latest(&self) -> Result<Option<SnapshotMeta>, StorageFailure> {
        let _exclusive = self.lock();
        Ok(self.store.latest()?.map(|r| r.meta().clone()))
    }

    fn open(&self) -> Result<Option<SnapshotReader>, StorageFailure> {
        let _exclusive = self.lock();
        Ok(self.store.latest()?)
    }

    fn begin(&self, install: bool) -> Result<SnapshotWriter, StorageFailure> {
        Ok(self.store.begin(install)?)
    }

    fn commit(
        &self,
        writer: SnapshotWriter,
        last_included: LogId,
        membership: Membership,
    ) -> Result<SnapshotMeta, StorageFailure> {
        let _exclusive = self.lock();
        Ok(writer.commit(last_included, membership)?)
    }

    fn read_chunk(
        &self,
        snapshot: LogId,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SnapshotReadError> {
        let storage = SnapshotReadError::Storage;
        let _exclusive = self.lock();
        let reader = self.store.latest().map_err(storage)?;
        let newest = reader.as_ref().map(|r| r.meta().last_included);
        let reader = reader
            .filter(|r| r.meta().last_included == snapshot)
            .ok_or(SnapshotReadError::NotFound {
                asked: snapshot,
                newest,
            })?;
        match reader.read_chunk(name, offset, len) {
            Ok(data) => Ok(Bytes::from(data)),
            Err(StorageError::NoSuchFile { name }) => Err(SnapshotReadError::NoSuchFile(name)),
            Err(e) => Err(storage(e)),
        }
    }
}

/// Snapshots on an in-memory file system that never fails: durable for the
/// life of the value (clones share them), like
/// [`MemStorage`](super::MemStorage).
#[derive(Clone, Debug)]
pub struct MemSnapshots {
    inner: Arc<DiskSnapshots>,
}

impl MemSnapshots {
    /// No snapshot yet.
    pub fn new() -> Self {
        let fs = Arc::new(MemFileSystem::new(0));
        let dir = Path::new("/snapshot");
        let inner = DiskSnapshots::open(fs, dir).expect("an in-memory file system without faults");
        MemSnapshots {
            inner: Arc::new(inner),
        }
    }
}

impl Default for MemSnapshots {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotStorage for MemSnapshots {
    fn latest(&self) -> Result<Option<SnapshotMeta>, StorageFailure> {
        self.inner.latest()
    }

    fn open(&self) -> Result<Option<SnapshotReader>, StorageFailure> {
        self.inner.open()
    }

    fn begin(&self, install: bool) -> Result<SnapshotWriter, StorageFailure> {
        self.inner.begin(install)
    }

    fn commit(
        &self,
        writer: SnapshotWriter,
        last_included: LogId,
        membership: Membership,
    ) -> Result<SnapshotMeta, StorageFailure> {
        self.inner.commit(writer, last_included, membership)
    }

    fn read_chunk(
        &self,
        snapshot: LogId,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SnapshotReadError> {
        self.inner.read_chunk(snapshot, name, offset, len)
    }
}
