//! Reuse of purged segment files as new open segments (as raft-engine
//! recycles log files).
//!
//! On this class of disk, writing into blocks a file already owns and
//! `fdatasync`-ing is several times cheaper than writing into new blocks
//! (zero-filling a fresh segment, or growing a file), because new blocks
//! mean an allocation the journal must commit. A purged segment's blocks are
//! already allocated, so renaming it to `log_recycle_{seq:020}` and later to
//! the next `log_inprogress_{first:020}` keeps a compacted log's writes
//! overwrites.
//!
//! Safe because of the record salt: the stale records left in a recycled
//! file were salted with its old first index, which is at or below the purge
//! point, while every later segment starts after it — so stale bytes never
//! decode as records of the new segment, and recovery treats them as the
//! unwritten tail. Segments removed by a suffix truncation are deleted, never
//! recycled: a later segment may start at the same index.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Result, StorageError};
use super::fs::FileSystem;
use super::segment::Segment;
use super::segment_name::SegmentName;

const PREFIX: &str = "log_recycle_";

/// How many purged files are kept for reuse; more are removed.
pub(crate) const RECYCLED_MAX: usize = 4;

/// Purged segment files waiting for reuse, by sequence number.
#[derive(Debug, Default)]
pub(crate) struct RecyclePool {
    seqs: Vec<u64>,
    next_seq: u64,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |e| StorageError::io(op, path, e)
}

impl RecyclePool {
    /// The sequence number of a pool file name, if it is one.
    pub(crate) fn parse(name: &str) -> Option<u64> {
        let digits = name.strip_prefix(PREFIX)?;
        let valid = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
        valid.then(|| digits.parse().ok()).flatten()
    }

    /// Adds a pool file found at open.
    pub(crate) fn add_existing(&mut self, seq: u64) {
        self.seqs.push(seq);
        self.seqs.sort_unstable();
        self.next_seq = self.next_seq.max(seq + 1);
    }

    fn path(dir: &Path, seq: u64) -> PathBuf {
        dir.join(format!("{PREFIX}{seq:020}"))
    }

    /// Moves the purged segment file at `path` into the pool, or removes it
    /// when the pool is full; durable with the next sync of the directory.
    pub(crate) fn recycle_or_remove(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
        path: &Path,
    ) -> Result<()> {
        if self.seqs.len() >= RECYCLED_MAX {
            return fs.remove_file(path).map_err(io("remove_file", path));
        }
        let to = Self::path(dir, self.next_seq);
        fs.rename(path, &to).map_err(io("rename", path))?;
        self.seqs.push(self.next_seq);
        self.next_seq += 1;
        Ok(())
    }

    /// Takes a pool file as the new open segment starting at `first`, at
    /// least `bytes_min` long, its name made durable; `None` if the pool is
    /// empty.
    pub(crate) fn take(
        &mut self,
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        first: u64,
        bytes_min: u64,
    ) -> Result<Option<Segment>> {
        let Some(seq) = self.seqs.pop() else {
            return Ok(None);
        };
        let from = Self::path(dir, seq);
        let to = dir.join(SegmentName::Open { first }.to_string());
        fs.rename(&from, &to).map_err(io("rename", &from))?;
        let mut file = fs.open(&to).map_err(io("open", &to))?;
        if file.len().map_err(io("len", &to))? < bytes_min {
            // A file from a smaller size bound (or an older version, which
            // trimmed closed segments): the short tail becomes a hole,
            // allocated by the first writes that reach it.
            file.set_len(bytes_min).map_err(io("set_len", &to))?;
            file.sync_all().map_err(io("sync_all", &to))?;
        }
        fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
        Ok(Some(Segment::loaded(dir, first, Vec::new(), 0, Some(file))))
    }
}
