//! Where a group's snapshots live (braft's `SnapshotStorage`): saved by the
//! apply task, loaded at start, served in chunks to lagging followers and
//! written whole by an installing follower. [`DiskSnapshots`] keeps them in
//! the storage layer's snapshot directories; [`MemSnapshots`] in memory.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::group_storage::StorageFailure;
use super::state_machine::SnapshotFiles;
use crate::core::{LogId, Membership};
use crate::storage::{FileSystem, SnapshotFile, SnapshotMeta, SnapshotStore, StorageError};

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
    Storage(String),
}

/// A group's snapshot storage. Every method is durable or consistent on
/// return; callers may be on different tasks.
pub trait SnapshotStorage: Send + Sync + 'static {
    /// The newest complete snapshot's meta, if any.
    ///
    /// # Errors
    /// A corrupt or unreadable snapshot.
    fn latest(&self) -> Result<Option<SnapshotMeta>, StorageFailure>;

    /// The newest snapshot with every file, checked against its meta.
    ///
    /// # Errors
    /// A corrupt or unreadable snapshot.
    fn load(&self) -> Result<Option<(SnapshotMeta, SnapshotFiles)>, StorageFailure>;

    /// Makes a snapshot durable and the newest, replacing older ones.
    ///
    /// # Errors
    /// Any write failure; nothing changed that a reader could see.
    fn save(
        &self,
        last_included: LogId,
        membership: Membership,
        files: &SnapshotFiles,
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
}

/// Snapshots in a directory, through the storage layer's [`SnapshotStore`]
/// (temp directory, fsync, atomic rename).
#[derive(Debug)]
pub struct DiskSnapshots {
    store: SnapshotStore,
    /// One operation at a time: held for a whole save (the store has one
    /// temp directory, and the apply task and the installer may save at the
    /// same time) and for each read (a save's commit removes the snapshot it
    /// supersedes, which a read must not see half gone).
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
}

impl SnapshotStorage for DiskSnapshots {
    fn latest(&self) -> Result<Option<SnapshotMeta>, StorageFailure> {
        let _exclusive = self.exclusive.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.store.latest()?.map(|r| r.meta().clone()))
    }

    fn load(&self) -> Result<Option<(SnapshotMeta, SnapshotFiles)>, StorageFailure> {
        let _exclusive = self.exclusive.lock().unwrap_or_else(|e| e.into_inner());
        let Some(reader) = self.store.latest()? else {
            return Ok(None);
        };
        let mut files = SnapshotFiles::new();
        for f in &reader.meta().files {
            files.insert(f.name.clone(), Bytes::from(reader.read_file(&f.name)?));
        }
        Ok(Some((reader.meta().clone(), files)))
    }

    fn save(
        &self,
        last_included: LogId,
        membership: Membership,
        files: &SnapshotFiles,
    ) -> Result<SnapshotMeta, StorageFailure> {
        // A save that panicked left nothing the next one's `begin` does not
        // discard, so a poisoned lock is still usable (here and in reads).
        let _exclusive = self.exclusive.lock().unwrap_or_else(|e| e.into_inner());
        let mut writer = self.store.begin()?;
        for (name, data) in files {
            writer.write_file(name, data)?;
        }
        Ok(writer.commit(last_included, membership)?)
    }

    fn read_chunk(
        &self,
        snapshot: LogId,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SnapshotReadError> {
        let storage = |e: StorageError| SnapshotReadError::Storage(e.to_string());
        let _exclusive = self.exclusive.lock().unwrap_or_else(|e| e.into_inner());
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

/// Snapshots in memory: durable for the life of the value (clones share
/// them), like [`MemStorage`](super::MemStorage).
#[derive(Clone, Debug, Default)]
pub struct MemSnapshots {
    newest: Arc<Mutex<Option<(SnapshotMeta, SnapshotFiles)>>>,
}

impl MemSnapshots {
    /// No snapshot yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn newest(&self) -> Option<(SnapshotMeta, SnapshotFiles)> {
        self.newest.lock().expect("snapshot lock").clone()
    }
}

impl SnapshotStorage for MemSnapshots {
    fn latest(&self) -> Result<Option<SnapshotMeta>, StorageFailure> {
        Ok(self.newest().map(|(meta, _)| meta))
    }

    fn load(&self) -> Result<Option<(SnapshotMeta, SnapshotFiles)>, StorageFailure> {
        Ok(self.newest())
    }

    fn save(
        &self,
        last_included: LogId,
        membership: Membership,
        files: &SnapshotFiles,
    ) -> Result<SnapshotMeta, StorageFailure> {
        let meta = SnapshotMeta {
            last_included,
            membership,
            files: files
                .iter()
                .map(|(name, data)| SnapshotFile {
                    name: name.clone(),
                    len: data.len() as u64,
                    crc: crc32c::crc32c(data),
                })
                .collect(),
        };
        let mut newest = self.newest.lock().expect("snapshot lock");
        let older = newest
            .as_ref()
            .is_none_or(|(m, _)| m.last_included.index < last_included.index);
        if older {
            *newest = Some((meta.clone(), files.clone()));
        }
        Ok(meta)
    }

    fn read_chunk(
        &self,
        snapshot: LogId,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SnapshotReadError> {
        let newest = self.newest.lock().expect("snapshot lock");
        let Some((_, files)) = newest.as_ref().filter(|(m, _)| m.last_included == snapshot) else {
            return Err(SnapshotReadError::NotFound {
                asked: snapshot,
                newest: newest.as_ref().map(|(m, _)| m.last_included),
            });
        };
        let data = files
            .get(name)
            .ok_or_else(|| SnapshotReadError::NoSuchFile(name.to_owned()))?;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len as usize).min(data.len());
        Ok(data.slice(start..end))
    }
}
