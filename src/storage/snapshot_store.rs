//! Snapshot directories (braft's `LocalSnapshotStorage`).
//!
//! ```text
//! <dir>/snapshot_{last_index:020}/__raft_snapshot_meta   the newest snapshot
//! <dir>/snapshot_{last_index:020}/<data files>
//! <dir>/temp/                                            one being saved
//! <dir>/temp_install/                                    one being installed
//! ```
//! A snapshot is written into `temp/` (or `temp_install/` when copied from
//! the leader): data files, streamed and each fsynced, then the
//! meta (atomic, checksummed, listing each file's length and CRC32C), then
//! `temp/` itself is fsynced and renamed to `snapshot_{index}`, and the
//! parent fsynced. Older snapshots are removed only after that. After a
//! crash, both temp directories are discarded, so a half-written snapshot is
//! never visible.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::atomic_file;
use super::error::{CorruptionKind, Result, StorageError};
use super::fs::{self, FileSystem};
use super::segment_log::create_dir_durably;
use super::snapshot_file::{DetachedFileWriter, SyncedFile, checksum};
pub use super::snapshot_file::{SnapshotFileReader, SnapshotFileWriter};
use super::snapshot_meta::{SNAPSHOT_META_NAME, SnapshotFile, SnapshotMeta};
use crate::core::{LogId, Membership};

const TEMP_NAME: &str = "temp";
/// Where an install from the leader is written: apart from `temp/`, so that
/// a local save and an install never discard each other's files.
const INSTALL_TEMP_NAME: &str = "temp_install";
const PREFIX: &str = "snapshot_";
const META_MAGIC: [u8; 4] = *b"OARS";
/// A bound on the meta file, so a corrupt one is never read whole.
const META_BYTES_MAX: u64 = 16 << 20;

fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |e| StorageError::io(op, path, e)
}

/// The snapshot directory of one node.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
}

impl SnapshotStore {
    /// Opens the store in `dir`, discarding a half-written snapshot and
    /// finishing the removal of superseded ones. A missing `dir` is made
    /// by the first [`begin`](Self::begin), not here: a server creating
    /// thousands of groups pays no directory and no fsync for each until
    /// it saves or installs a snapshot (issue 15).
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<SnapshotStore> {
        let store = SnapshotStore {
            fs,
            dir: dir.to_path_buf(),
        };
        if !store.fs.exists(dir).map_err(io("exists", dir))? {
            return Ok(store);
        }
        let mut indexes = store.list()?;
        for name in [TEMP_NAME, INSTALL_TEMP_NAME] {
            store.discard(&dir.join(name))?;
        }
        indexes.pop();
        for index in indexes {
            let path = store.snapshot_dir(index);
            store
                .fs
                .remove_dir_all(&path)
                .map_err(io("remove_dir_all", &path))?;
        }
        // Always, not only after a change here: a process that died between
        // a snapshot's rename and its directory sync left a snapshot the
        // kernel shows but the disk may not hold, and it must be durable
        // before the log is compacted behind it.
        store.fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
        Ok(store)
    }

    fn discard(&self, temp: &Path) -> Result<()> {
        if self.fs.exists(temp).map_err(io("exists", temp))? {
            self.fs
                .remove_dir_all(temp)
                .map_err(io("remove_dir_all", temp))?;
        }
        Ok(())
    }

    fn snapshot_dir(&self, index: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{index:020}"))
    }

    /// Indexes of the complete snapshots, ascending.
    fn list(&self) -> Result<Vec<u64>> {
        let mut indexes = Vec::new();
        let names = match self.fs.list_dir(&self.dir) {
            Ok(names) => names,
            // No snapshot was ever begun here.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(indexes),
            Err(e) => return Err(io("list_dir", &self.dir)(e)),
        };
        for name in names {
            if name == TEMP_NAME || name == INSTALL_TEMP_NAME {
                continue;
            }
            let index = name
                .strip_prefix(PREFIX)
                .filter(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse().ok());
            match index {
                Some(index) => indexes.push(index),
                None => {
                    let kind = CorruptionKind::UnexpectedFileName;
                    return Err(StorageError::corruption(self.dir.join(name), 0, kind));
                }
            }
        }
        indexes.sort_unstable();
        Ok(indexes)
    }

    /// The newest complete snapshot, if any.
    ///
    /// # Errors
    /// [`StorageError::Corruption`] naming the meta file if it is missing,
    /// fails its checksum, or names another index than its directory.
    pub fn latest(&self) -> Result<Option<SnapshotReader>> {
        let Some(&index) = self.list()?.last() else {
            return Ok(None);
        };
        let dir = self.snapshot_dir(index);
        let meta_path = dir.join(SNAPSHOT_META_NAME);
        let corrupt = |kind| StorageError::corruption(&meta_path, 0, kind);
        let payload = atomic_file::read(
            &*self.fs,
            &dir,
            SNAPSHOT_META_NAME,
            META_MAGIC,
            META_BYTES_MAX,
        )?
        .ok_or_else(|| corrupt(CorruptionKind::FileLength))?;
        let meta =
            SnapshotMeta::decode(&payload).ok_or_else(|| corrupt(CorruptionKind::FileLength))?;
        if meta.last_included.index.0 != index {
            return Err(corrupt(CorruptionKind::UnexpectedFileName));
        }
        Ok(Some(SnapshotReader {
            fs: Arc::clone(&self.fs),
            dir,
            meta,
        }))
    }

    /// Starts writing a new snapshot in `temp/` (discarding any there), or
    /// in `temp_install/` if `install` (a copy from the leader). One writer
    /// of each kind at a time: a second would discard the first's files
    /// (`DiskSnapshots` serializes its saves, and installs are one at a time).
    pub fn begin(&self, install: bool) -> Result<SnapshotWriter> {
        let temp = self.dir.join(if install {
            INSTALL_TEMP_NAME
        } else {
            TEMP_NAME
        });
        create_dir_durably(&*self.fs, &self.dir)?;
        self.discard(&temp)?;
        self.fs
            .create_dir_all(&temp)
            .map_err(io("create_dir_all", &temp))?;
        Ok(SnapshotWriter {
            store: self.clone(),
            temp,
            files: Vec::new(),
            pace: None,
        })
    }
}

/// A snapshot being written (braft's `LocalSnapshotWriter`).
pub struct SnapshotWriter {
    store: SnapshotStore,
    temp: PathBuf,
    /// Files written so far.
    files: Vec<SnapshotFile>,
    /// Called before each write into a file created here.
    pace: Option<WritePace>,
}

/// Called with a write's length before the write (see
/// [`SnapshotWriter::pace_writes`]).
pub type WritePace = Arc<dyn Fn(u64) + Send + Sync>;

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("store", &self.store)
            .field("temp", &self.temp)
            .field("files", &self.files)
            .field("paced", &self.pace.is_some())
            .finish()
    }
}

fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name != SNAPSHOT_META_NAME
        && !name.ends_with(atomic_file::TMP_SUFFIX)
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= usize::from(u16::MAX);
    match plain {
        true => Ok(()),
        false => Err(StorageError::InvalidFileName {
            name: name.to_owned(),
        }),
    }
}

impl SnapshotWriter {
    /// Writes the data file `name` with `data` and syncs it: the simple path
    /// for a state that fits in memory.
    ///
    /// # Errors
    /// [`StorageError::InvalidFileName`] for a name with a separator, empty,
    /// or reserved; an I/O error.
    pub fn write_file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut file = self.create_file(name)?;
        file.write_at_end(data)?;
        file.finish()
    }

    /// Creates the data file `name` to stream into (through
    /// [`std::io::Write`] or [`SnapshotFileWriter::write_at_end`]); it
    /// belongs to the snapshot once [`SnapshotFileWriter::finish`] returns.
    ///
    /// # Errors
    /// As [`write_file`](Self::write_file).
    pub fn create_file(&mut self, name: &str) -> Result<SnapshotFileWriter<'_>> {
        let file = self.create_detached_file(name)?;
        Ok(SnapshotFileWriter::new(self, file))
    }

    /// Creates the data file `name` to stream into, as
    /// [`create_file`](Self::create_file) does, through a writer that does
    /// not borrow this one; [`add_synced`](Self::add_synced) adds it.
    pub(crate) fn create_detached_file(&self, name: &str) -> Result<DetachedFileWriter> {
        check_name(name)?;
        let path = self.temp.join(name);
        let file = self.store.fs.create(&path).map_err(io("create", &path))?;
        Ok(DetachedFileWriter::new(name.to_owned(), path, file))
    }

    /// Adds a file from [`create_detached_file`](Self::create_detached_file),
    /// synced (replacing an earlier file of the same name).
    ///
    /// # Panics
    /// If `synced` was written for another snapshot writer's directory.
    pub(crate) fn add_synced(&mut self, synced: SyncedFile) {
        assert_eq!(
            synced.dir.as_deref(),
            Some(self.temp.as_path()),
            "a file of another snapshot"
        );
        self.add(synced.file);
    }

    /// Adds the existing file `from` as data file `name` without copying
    /// it (a hard link; a copy where links are impossible), then reads it
    /// once for its checksum. The application must not change `from` in
    /// place afterwards (write a new file and rename it over instead): the
    /// snapshot shares its bytes.
    ///
    /// # Errors
    /// As [`write_file`](Self::write_file).
    pub fn link_file(&mut self, name: &str, from: &Path) -> Result<()> {
        check_name(name)?;
        let path = self.temp.join(name);
        let fs = &self.store.fs;
        fs.hard_link(from, &path).map_err(io("hard_link", from))?;
        let file = fs.open(&path).map_err(io("open", &path))?;
        let (len, crc) = checksum(&*file, &path)?;
        self.add(SnapshotFile {
            name: name.to_owned(),
            len,
            crc,
        });
        Ok(())
    }

    /// Calls `pace(n)` before each write of `n` bytes into a file created
    /// by this writer (a save's byte rate: `pace` may block the writing
    /// thread). Linked files are not written, so not paced.
    pub fn pace_writes(&mut self, pace: WritePace) {
        self.pace = Some(pace);
    }

    /// Waits for `pace`, if any, before a write of `bytes`.
    pub(super) fn before_write(&self, bytes: usize) {
        if let Some(pace) = &self.pace {
            pace(bytes as u64);
        }
    }

    /// The names of the files written so far.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.name.as_str())
    }

    pub(super) fn add(&mut self, file: SnapshotFile) {
        self.files.retain(|f| f.name != file.name);
        self.files.push(file);
    }

    /// Publishes the snapshot: writes its meta, syncs `temp/`, renames it to
    /// `snapshot_{index}`, syncs the parent, then removes older snapshots.
    /// Durable on return.
    pub fn commit(mut self, last_included: LogId, membership: Membership) -> Result<SnapshotMeta> {
        self.files.sort_by(|a, b| a.name.cmp(&b.name));
        let meta = SnapshotMeta {
            last_included,
            membership,
            files: std::mem::take(&mut self.files),
        };
        let fs = &self.store.fs;
        let parent = &self.store.dir;
        atomic_file::write(
            &**fs,
            &self.temp,
            SNAPSHOT_META_NAME,
            META_MAGIC,
            &meta.encode(),
        )?;
        let index = last_included.index.0;
        let target = self.store.snapshot_dir(index);
        let older: Vec<u64> = self
            .store
            .list()?
            .into_iter()
            .filter(|&i| i != index)
            .collect();
        let superseded = older.iter().any(|&i| i > index);
        if superseded || fs.exists(&target).map_err(io("exists", &target))? {
            // The same snapshot point was published before, or a newer one
            // (installed while this one was written): keep that one.
            fs.remove_dir_all(&self.temp)
                .map_err(io("remove_dir_all", &self.temp))?;
        } else {
            fs.rename(&self.temp, &target)
                .map_err(io("rename", &self.temp))?;
        }
        fs.sync_dir(parent).map_err(io("sync_dir", parent))?;
        for old in older.into_iter().filter(|&i| i < index) {
            let path = self.store.snapshot_dir(old);
            fs.remove_dir_all(&path)
                .map_err(io("remove_dir_all", &path))?;
        }
        fs.sync_dir(parent).map_err(io("sync_dir", parent))?;
        Ok(meta)
    }
}

/// A complete snapshot, for loading or sending (braft's `LocalSnapshotReader`).
#[derive(Debug)]
pub struct SnapshotReader {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    meta: SnapshotMeta,
}

impl SnapshotReader {
    /// What the snapshot covers and holds.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The snapshot's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> Result<&SnapshotFile> {
        self.meta
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| StorageError::NoSuchFile {
                name: name.to_owned(),
            })
    }

    /// Reads the whole data file `name`, checked against the meta's length
    /// and CRC32C.
    ///
    /// # Errors
    /// [`StorageError::NoSuchFile`] if the meta does not list it;
    /// [`StorageError::Corruption`] if its bytes differ from the meta.
    pub fn read_file(&self, name: &str) -> Result<Vec<u8>> {
        let f = self.file(name)?;
        let path = self.dir.join(name);
        let mismatch = || StorageError::corruption(&path, 0, CorruptionKind::SnapshotFileMismatch);
        let data = match fs::read_all(&*self.fs, &path, f.len) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(mismatch()),
            Err(e) => return Err(StorageError::io("read", &path, e)),
        };
        if data.len() as u64 != f.len || crc32c::crc32c(&data) != f.crc {
            return Err(mismatch());
        }
        Ok(data)
    }

    /// Opens data file `name` to stream from; the reader fails with
    /// `InvalidData` at its end if the bytes differ from the meta.
    ///
    /// # Errors
    /// [`StorageError::NoSuchFile`] if the meta does not list it; an I/O
    /// error.
    pub fn open_file(&self, name: &str) -> Result<SnapshotFileReader> {
        let f = self.file(name)?.clone();
        let path = self.dir.join(name);
        let file = self.fs.open(&path).map_err(io("open", &path))?;
        Ok(SnapshotFileReader::new(file, f, path))
    }

    /// Reads `len` bytes of file `name` from `offset` (fewer at its end), for
    /// chunked copy to a follower, which checks the whole file's CRC32C.
    pub fn read_chunk(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let f = self.file(name)?;
        let path = self.dir.join(name);
        let n = len.min(f.len.saturating_sub(offset));
        let mut buf = vec![0u8; n as usize];
        let file = self.fs.open(&path).map_err(io("open", &path))?;
        file.read_exact_at(&mut buf, offset)
            .map_err(io("read", &path))?;
        Ok(buf)
    }
}

#[cfg(test)]
#[path = "snapshot_store_tests.rs"]
mod tests;
