//! [`LogWriter`]: the synchronous batching writer the runtime's log-writer
//! task drives (braft's `LogManager` disk thread, minus the thread).
//!
//! The runtime [`submit`](LogWriter::submit)s the core's persistence actions
//! as they come, then calls [`flush`](LogWriter::flush) once: every queued
//! entry is written with one write and one `fdatasync` of the open segment,
//! the term/vote meta is rewritten once if it changed, and the completions
//! come back in submission order. No threads: the caller is an async task
//! (madsim forbids OS threads), which may run the disk in parallel with
//! replication because the core acknowledges nothing before the completion.

use std::path::Path;
use std::sync::Arc;

use super::error::{Result, StorageError};
use super::fs::{DirLock, FileSystem};
use super::meta::MetaStorage;
use super::segment_log::{LogOptions, SegmentLog, create_dir_durably};
use crate::core::{Entry, EntryBatch, HardState, LogId};

/// A write the core asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// `PersistEntries`: drop the log suffix from `entries[0]`'s index (if the
    /// log reaches that far), then append `entries` (contiguous, ascending).
    Entries(EntryBatch),
    /// `PersistHardState`: make this term and vote durable.
    HardState(HardState),
    /// `CompactLog`: drop the entries through this one (a durable snapshot
    /// covers them).
    Compact(LogId),
    /// `ResetLog`: drop every entry; the log continues after this one (an
    /// installed snapshot's last entry).
    Reset(LogId),
}

/// A completed write, to report back to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durable {
    /// `EntriesPersisted { up_to }`: the log is durable up to this entry.
    Entries(LogId),
    /// `HardStatePersisted`: this term and vote are durable.
    HardState(HardState),
}

/// What a node recovers from its storage directory at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The durable term and vote.
    pub hard_state: HardState,
    /// The last entry removed by prefix truncation (after a snapshot); the
    /// log starts at `last_purged.index + 1`.
    pub last_purged: LogId,
    /// The durable entries after `last_purged`, in order, contiguous.
    pub entries: Vec<Entry>,
}

/// The log plus the term/vote meta of one node, written in batches.
#[derive(Debug)]
pub struct LogWriter {
    log: SegmentLog,
    meta: MetaStorage,
    /// Ops submitted since the last flush, in order.
    pending: Vec<WriteOp>,
    /// The lock on the storage directory: one writer at a time.
    _lock: Box<dyn DirLock>,
}

/// The log's subdirectory of a node's storage directory.
pub const LOG_DIR_NAME: &str = "log";

impl LogWriter {
    /// Opens (creating) the storage in `dir` — log in `dir/log`, meta in
    /// `dir/raft_meta` — and recovers it, holding the directory's lock
    /// (`dir/LOCK`) until dropped.
    ///
    /// # Errors
    /// [`StorageError::Locked`] while another instance has `dir` open;
    /// [`StorageError::Corruption`] for any damage recovery may not repair;
    /// [`StorageError::Io`].
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: LogOptions,
    ) -> Result<(LogWriter, Recovered)> {
        create_dir_durably(&*fs, dir)?;
        let lock = lock_log_dir(&*fs, dir)?;
        let (meta, hard_state) = MetaStorage::open(Arc::clone(&fs), dir)?;
        let (log, recovered) = SegmentLog::open(fs, &dir.join(LOG_DIR_NAME), options)?;
        let recovered = Recovered {
            hard_state,
            last_purged: recovered.last_purged,
            entries: recovered.entries,
        };
        let writer = LogWriter {
            log,
            meta,
            pending: Vec::new(),
            _lock: lock,
        };
        Ok((writer, recovered))
    }

    /// Queues `op` for the next [`flush`](Self::flush).
    pub fn submit(&mut self, op: WriteOp) {
        self.pending.push(op);
    }

    /// How many ops wait for a flush.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Executes every queued op and makes all durable: one atomic meta write
    /// first if the hard state changed (the last one queued), then one write
    /// and one `fdatasync` for the entries (more only when a segment fills
    /// or a suffix is truncated). Returns one completion per op, in order (none for an empty
    /// `Entries`).
    ///
    /// # Errors
    /// Any storage error; the queue is dropped and nothing may be reported
    /// durable: the caller must stop the group (fail-stop).
    pub fn flush(&mut self) -> Result<Vec<Durable>> {
        let ops = std::mem::take(&mut self.pending);
        let mut done = Vec::with_capacity(ops.len());
        // The term/vote goes first: an entry must never be durable ahead of
        // the term it was written in, or recovery after a crash between the
        // two writes would find an entry from a future term.
        let hard_state = ops.iter().rev().find_map(|op| match op {
            WriteOp::HardState(hs) => Some(*hs),
            _ => None,
        });
        if let Some(hs) = hard_state {
            self.meta.save(hs)?;
        }
        for op in ops {
            match op {
                WriteOp::Entries(entries) => {
                    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                        continue;
                    };
                    if first.id.index <= self.log.last_index() {
                        self.log.truncate_suffix(first.id.index.prev())?;
                    }
                    self.log.append(&entries)?;
                    done.push(Durable::Entries(last.id));
                }
                WriteOp::HardState(hs) => done.push(Durable::HardState(hs)),
                // The purge marker is durable before the call returns; the
                // entries it drops are covered by a durable snapshot.
                WriteOp::Compact(through) => self.log.truncate_prefix(through)?,
                WriteOp::Reset(snapshot) => {
                    if self.log.last_index() > snapshot.index {
                        self.log.truncate_suffix(snapshot.index)?;
                    }
                    self.log.truncate_prefix(snapshot)?;
                }
            }
        }
        self.log.flush()?;
        Ok(done)
    }

    /// Submits `ops` and flushes: the runtime's one call per batch.
    pub fn write(&mut self, ops: impl IntoIterator<Item = WriteOp>) -> Result<Vec<Durable>> {
        self.pending.extend(ops);
        self.flush()
    }

    /// The log, for reads (`entries`, `term`) and bounds.
    pub fn log(&self) -> &SegmentLog {
        &self.log
    }

    /// Removes entries up to and including `last_purged` after a snapshot
    /// covering them is durable. Durable on return.
    pub fn truncate_prefix(&mut self, last_purged: LogId) -> Result<()> {
        self.log.truncate_prefix(last_purged)
    }

    /// The durable term and vote.
    pub fn hard_state(&self) -> HardState {
        self.meta.hard_state()
    }
}

/// Takes `dir`'s lock: `Locked` if another log (another process, or
/// another open in this one) holds it.
pub(crate) fn lock_log_dir(fs: &dyn FileSystem, dir: &Path) -> Result<Box<dyn DirLock>> {
    fs.lock_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => StorageError::Locked {
            path: dir.to_path_buf(),
        },
        _ => StorageError::io("lock_dir", dir, e),
    })
}
