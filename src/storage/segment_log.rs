//! [`SegmentLog`]: the log as ordered segment files (braft's
//! `SegmentLogStorage`).
//!
//! Layout of the log directory:
//! ```text
//! log_meta                                       last purged LogId (atomic file)
//! log_00000000000000000001_00000000000000001000  closed segment [1, 1000]
//! log_inprogress_00000000000000001001            open segment, preallocated
//! ```
//! Appends are buffered until [`SegmentLog::flush`], which writes and syncs
//! them with one `fdatasync`. Truncations are durable when they return.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::atomic_file;
use super::error::{CorruptionKind, Result, StorageError};
use super::fs::{File, FileSystem};
use super::recovery::load_segment;
use super::recycle::RecyclePool;
use super::segment::Segment;
use super::segment_name::SegmentName;
use crate::core::{Entry, LogId, LogIndex, Term};

/// The name of the first-index marker in the log directory.
pub const LOG_META_NAME: &str = "log_meta";
const LOG_META_MAGIC: [u8; 4] = *b"OARL";

/// Tuning of the segment log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is closed once adding a record would take it past this many
    /// bytes (a single larger record gets a segment of its own). braft's
    /// default, 8 MiB.
    pub segment_bytes_max: u64,
    /// The size bound of a new log's first segment; each segment after it
    /// gets twice its predecessor's, up to `segment_bytes_max`. A log that
    /// stays small (an idle group of thousands on a server) preallocates
    /// this, not the full bound. Default 64 KiB; equal to
    /// `segment_bytes_max` for every segment at the full bound.
    pub segment_bytes_first: u64,
    /// Whether a new segment is filled with zeros up to `segment_bytes_max`
    /// when created, so that each later `fdatasync` is an overwrite that
    /// commits no file-size metadata.
    pub preallocate: bool,
    /// Whether batches are written with direct I/O (`O_DIRECT`) where the
    /// file system has it (through the page cache where it has not).
    pub direct_io: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes_max: 8 << 20,
            segment_bytes_first: 64 << 10,
            preallocate: true,
            direct_io: true,
        }
    }
}

/// What recovery found in the log directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveredLog {
    /// The last entry removed by prefix truncation (`(0, 0)` if none): the
    /// log starts at `last_purged.index + 1`.
    pub last_purged: LogId,
    /// Every entry after `last_purged`, in order, contiguous.
    pub entries: Vec<Entry>,
}

/// The durable log: ordered segment files plus the first-index marker.
///
/// Invariant: segments are contiguous and ascending; only the last may be
/// open; every entry after `last_purged` is in some segment.
#[derive(Debug)]
pub struct SegmentLog {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    options: LogOptions,
    /// Segments ascending; the last one may be open.
    segments: Vec<Segment>,
    /// The last entry removed by prefix truncation.
    last_purged: LogId,
    /// Purged segment files kept for reuse.
    pool: RecyclePool,
    /// The open segment's size bound (the last one's while none is open);
    /// 0 before the first.
    open_limit: u64,
}

/// `bytes` as a segment's size bound: at least the first segment's, at
/// most `segment_bytes_max` (both at least 1).
fn segment_limit(options: &LogOptions, bytes: u64) -> u64 {
    let max = options.segment_bytes_max.max(1);
    bytes.clamp(options.segment_bytes_first.clamp(1, max), max)
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |e| StorageError::io(op, path, e)
}

/// The file of the closed segment a range read is in, opened once.
#[derive(Default)]
struct Opened {
    /// That segment's first index (`None`: no segment read yet).
    first: Option<u64>,
    /// Its file, once a read needed it (the open segment reads through its
    /// own).
    file: Option<Box<dyn File>>,
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir` and recovers it: cuts a
    /// torn tail of the open segment, finishes interrupted truncations, and
    /// returns every entry.
    ///
    /// # Errors
    /// [`StorageError::Corruption`] for any invalid byte that is not the open
    /// segment's unsynced tail, unknown file names, or missing entries;
    /// [`StorageError::Io`] when the disk fails.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: LogOptions,
    ) -> Result<(SegmentLog, RecoveredLog)> {
        create_dir_durably(&*fs, dir)?;
        atomic_file::remove_leftover(&*fs, dir, LOG_META_NAME)?;
        let last_purged = read_log_meta(&*fs, dir)?;
        let (names, pool) = list_segments(&*fs, dir)?;
        let mut log = SegmentLog {
            fs,
            dir: dir.to_path_buf(),
            options,
            segments: Vec::new(),
            last_purged,
            pool,
            open_limit: 0,
        };
        let mut entries = Vec::new();
        let bytes_max = options.segment_bytes_max;
        for name in names.into_values() {
            if let SegmentName::Closed { last, .. } = name
                && last <= last_purged.index.0
            {
                // Left over by a prefix truncation a crash interrupted.
                log.remove_file(&dir.join(name.to_string()))?;
                continue;
            }
            let loaded = load_segment(&log.fs, dir, name, bytes_max)?;
            let segment = loaded.segment;
            let expected = log.last_index().0 + 1;
            if segment.last() <= last_purged.index.0
                || (segment.is_empty() && segment.first != expected)
            {
                // An open segment whose entries were all purged, or one created
                // but never written to: it holds nothing needed.
                log.remove_file(&segment.path())?;
                continue;
            }
            if segment.first > expected {
                let kind = CorruptionKind::MissingSegment { expected };
                return Err(StorageError::corruption(segment.path(), 0, kind));
            }
            let skip = (expected - segment.first) as usize;
            entries.extend(loaded.entries.into_iter().skip(skip));
            log.segments.push(segment);
        }
        log.fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
        if let Some(open) = log.segments.last_mut().filter(|s| s.is_open()) {
            // A preallocated file's length is the bound it was made for.
            log.open_limit = match options.preallocate {
                true => segment_limit(&options, open.file_len()?),
                false => options.segment_bytes_max,
            };
            if options.direct_io {
                open.use_direct_io(&log.fs)?;
            }
        }
        Ok((
            log,
            RecoveredLog {
                last_purged,
                entries,
            },
        ))
    }

    /// The index of the first entry (`last_purged.index + 1`).
    pub fn first_index(&self) -> LogIndex {
        self.last_purged.index.next()
    }

    /// The index of the last entry, buffered ones included; `last_purged`'s
    /// index when the log is empty.
    pub fn last_index(&self) -> LogIndex {
        match self.segments.last() {
            Some(s) if s.last() > self.last_purged.index.0 => LogIndex(s.last()),
            _ => self.last_purged.index,
        }
    }

    /// The last entry removed by prefix truncation.
    pub fn last_purged(&self) -> LogId {
        self.last_purged
    }

    /// The term of entry `index` (`last_purged`'s term at its index).
    ///
    /// # Errors
    /// [`StorageError::Compacted`] below it, [`StorageError::Unavailable`]
    /// past the last index.
    pub fn term(&self, index: LogIndex) -> Result<Term> {
        if index == self.last_purged.index {
            return Ok(self.last_purged.term);
        }
        let segment = self.segment_of(index)?;
        Ok(segment.term(index.0).expect("segment_of found it"))
    }

    /// Entries `[lo, hi)`, read from disk (or the write buffer).
    ///
    /// # Errors
    /// [`StorageError::Compacted`] / [`StorageError::Unavailable`] when the
    /// range leaves the log; [`StorageError::Corruption`] if bytes changed
    /// since they were validated.
    pub fn entries(&self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>> {
        let mut out = Vec::with_capacity(hi.0.saturating_sub(lo.0) as usize);
        let mut opened = Opened::default();
        for index in lo.0..hi.0 {
            out.push(self.read_entry(index, &mut opened)?);
        }
        Ok(out)
    }

    /// Entries from `lo` up to `hi` (exclusive) or the last index, at most
    /// `count_max` of them and, past the first, at most `bytes_max` bytes
    /// (`Entry::size_bytes`) in total: what a leader reads back for a peer
    /// whose entries left its memory. Every record's checksums are checked
    /// again (bytes rot on disk after recovery validated them).
    ///
    /// # Errors
    /// [`StorageError::Compacted`] when `lo` was purged,
    /// [`StorageError::Unavailable`] when `lo` is past the last index (or
    /// the range is empty), [`StorageError::Corruption`] for a record that fails its
    /// checks, [`StorageError::Io`] when the disk fails: never wrong bytes.
    pub fn read_range(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        count_max: usize,
        bytes_max: u64,
    ) -> Result<Vec<Entry>> {
        let end = hi.0.min(self.last_index().0 + 1);
        if lo.0 >= end || count_max == 0 {
            return Err(StorageError::Unavailable { index: lo });
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut opened = Opened::default();
        for index in lo.0..end {
            if out.len() == count_max {
                break;
            }
            let entry = self.read_entry(index, &mut opened)?;
            let size = entry.size_bytes();
            if !out.is_empty() && bytes + size > bytes_max {
                break;
            }
            bytes += size;
            out.push(entry);
        }
        Ok(out)
    }

    /// Reads entry `index` through `opened`, the file of the segment the
    /// range read last (reopened when the range crosses into the next).
    fn read_entry(&self, index: u64, opened: &mut Opened) -> Result<Entry> {
        let segment = self.segment_of(LogIndex(index))?;
        if opened.first != Some(segment.first) {
            *opened = Opened {
                first: Some(segment.first),
                file: None,
            };
        }
        segment.read(&self.fs, index, &mut opened.file)
    }

    fn segment_of(&self, index: LogIndex) -> Result<&Segment> {
        if index <= self.last_purged.index {
            let first_index = self.first_index();
            return Err(StorageError::Compacted { first_index });
        }
        let i = self.segments.partition_point(|s| s.last() < index.0);
        match self.segments.get(i) {
            Some(s) if s.first <= index.0 => Ok(s),
            _ => Err(StorageError::Unavailable { index }),
        }
    }

    /// Buffers `entries` after the last entry; durable after [`flush`](Self::flush).
    /// May close a full segment and create the next one (those steps sync).
    ///
    /// # Errors
    /// [`StorageError::NotContiguous`] if `entries` do not start right after
    /// the last index or are not consecutive.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        for entry in entries {
            let expected = self.last_index().next();
            if entry.id.index != expected {
                let found = entry.id.index;
                return Err(StorageError::NotContiguous { expected, found });
            }
            self.maybe_rotate(entry)?;
            let open = self.segments.last_mut().expect("maybe_rotate opened one");
            open.append(entry)?;
        }
        Ok(())
    }

    /// The next segment's size bound: the first one's (no segment yet:
    /// `open_limit` is 0), then twice the last.
    fn next_limit(&self) -> u64 {
        segment_limit(&self.options, self.open_limit.saturating_mul(2))
    }

    /// Ensures the last segment is open and has room for `entry`.
    fn maybe_rotate(&mut self, entry: &Entry) -> Result<()> {
        let need = super::record::encoded_len(entry) as u64;
        if let Some(open) = self.segments.last_mut().filter(|s| s.is_open()) {
            if open.is_empty() || open.bytes() + need <= self.open_limit {
                return Ok(());
            }
            open.flush()?;
            open.close(&self.fs)?;
        }
        let first = entry.id.index.0;
        let max = self.options.segment_bytes_max;
        // A recycled file has its blocks already: it is used at the full bound.
        let recycled = match self.options.preallocate {
            true => self.pool.take(&self.fs, &self.dir, first, max)?,
            false => None,
        };
        let mut segment = match recycled {
            Some(segment) => {
                self.open_limit = max;
                segment
            }
            None => {
                self.open_limit = self.next_limit();
                let prealloc = if self.options.preallocate {
                    self.open_limit
                } else {
                    0
                };
                Segment::create(&self.fs, &self.dir, first, prealloc)?
            }
        };
        if self.options.direct_io {
            segment.use_direct_io(&self.fs)?;
        }
        self.segments.push(segment);
        Ok(())
    }

    /// Writes buffered entries with one write and one `fdatasync`. Returns
    /// whether anything was written.
    pub fn flush(&mut self) -> Result<bool> {
        match self.segments.last_mut() {
            Some(open) if open.is_open() => open.flush(),
            _ => Ok(false),
        }
    }

    /// Removes entries after `last_kept`, durably (buffered ones simply
    /// vanish). Later segments are removed newest first, so that a crash
    /// midway leaves a contiguous log.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] if `last_kept` is before the purged prefix.
    pub fn truncate_suffix(&mut self, last_kept: LogIndex) -> Result<()> {
        if last_kept < self.last_purged.index {
            return Err(StorageError::Compacted {
                first_index: self.first_index(),
            });
        }
        let mut removed = false;
        while let Some(s) = self.segments.last().filter(|s| s.first > last_kept.0) {
            let path = s.path();
            self.segments.pop();
            self.fs
                .remove_file(&path)
                .map_err(io("remove_file", &path))?;
            removed = true;
        }
        if removed {
            // The removals must be durable before the rename below commits
            // the shorter segment, or a crash could bring back a later segment
            // after a gap.
            self.fs
                .sync_dir(&self.dir)
                .map_err(io("sync_dir", &self.dir))?;
        }
        if let Some(s) = self.segments.last_mut() {
            s.truncate_suffix(&self.fs, last_kept.0)?;
        }
        Ok(())
    }

    /// Removes entries up to and including `last_purged` (after a snapshot):
    /// the marker is made durable first, then whole segments are removed;
    /// entries of a segment that still holds later ones stay on disk but are
    /// no longer served. Purging past the last index empties the log, which
    /// then continues at `last_purged.index + 1` (braft's `reset`).
    pub fn truncate_prefix(&mut self, last_purged: LogId) -> Result<()> {
        if last_purged.index <= self.last_purged.index {
            return Ok(());
        }
        let payload = encode_log_id(last_purged);
        atomic_file::write(
            &*self.fs,
            &self.dir,
            LOG_META_NAME,
            LOG_META_MAGIC,
            &payload,
        )?;
        self.last_purged = last_purged;
        let mut keep_from = self
            .segments
            .partition_point(|s| s.last() <= last_purged.index.0);
        // An empty open segment that starts right after the purge point
        // still continues the log: keep it rather than recycle a file whose
        // name (salt) the next segment would reuse.
        if keep_from == self.segments.len()
            && self
                .segments
                .last()
                .is_some_and(|s| s.is_empty() && s.first == last_purged.index.0 + 1)
        {
            keep_from -= 1;
        }
        // The renames and removals below need no directory sync of their
        // own: one a crash undoes brings back a segment wholly below the
        // durable marker, which recovery removes; the next directory sync
        // (the next segment's creation) makes them durable with it.
        for segment in self.segments.drain(..keep_from) {
            let path = segment.path();
            drop(segment);
            match self.options.preallocate {
                true => self.pool.recycle_or_remove(&*self.fs, &self.dir, &path)?,
                false => self
                    .fs
                    .remove_file(&path)
                    .map_err(io("remove_file", &path))?,
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        tracing::info!(path = %path.display(), "removing leftover segment");
        self.fs.remove_file(path).map_err(io("remove_file", path))
    }
}

/// Creates `dir` and any missing ancestors, syncing each new directory's
/// parent so that the whole path survives a crash.
pub(crate) fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty()) {
        if fs.exists(d).map_err(io("exists", d))? {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        fs.create_dir_all(d).map_err(io("create_dir_all", d))?;
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(io("sync_dir", parent))?;
        }
    }
    Ok(())
}

type Listing = (BTreeMap<u64, SegmentName>, RecyclePool);

fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Listing> {
    let mut names = BTreeMap::new();
    let mut pool = RecyclePool::default();
    for file_name in fs.list_dir(dir).map_err(io("list_dir", dir))? {
        if file_name == LOG_META_NAME {
            continue;
        }
        if let Some(seq) = RecyclePool::parse(&file_name) {
            pool.add_existing(seq);
            continue;
        }
        let path = dir.join(&file_name);
        let Some(name) = SegmentName::parse(&file_name) else {
            return Err(StorageError::corruption(
                path,
                0,
                CorruptionKind::UnexpectedFileName,
            ));
        };
        if names.insert(name.first(), name).is_some() {
            // Two segments with one first index: not written by this code.
            return Err(StorageError::corruption(
                path,
                0,
                CorruptionKind::MisplacedOpenSegment,
            ));
        }
    }
    only_the_last_is_open(dir, &names)?;
    Ok((names, pool))
}

/// Only the last of a log's segments (by first index) may be open: any
/// other open one is `MisplacedOpenSegment` corruption.
pub(crate) fn only_the_last_is_open(dir: &Path, names: &BTreeMap<u64, SegmentName>) -> Result<()> {
    let last = names.keys().next_back().copied();
    for (&first, name) in names {
        if matches!(name, SegmentName::Open { .. }) && Some(first) != last {
            let path = dir.join(name.to_string());
            return Err(StorageError::corruption(
                path,
                0,
                CorruptionKind::MisplacedOpenSegment,
            ));
        }
    }
    Ok(())
}

fn read_log_meta(fs: &dyn FileSystem, dir: &Path) -> Result<LogId> {
    let Some(payload) = atomic_file::read(fs, dir, LOG_META_NAME, LOG_META_MAGIC, 16)? else {
        return Ok(LogId::default());
    };
    decode_log_id(&payload).ok_or_else(|| {
        StorageError::corruption(dir.join(LOG_META_NAME), 0, CorruptionKind::FileLength)
    })
}

/// A LogId as 16 bytes: term u64 LE, index u64 LE.
pub(crate) fn encode_log_id(id: LogId) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.term.0.to_le_bytes());
    b[8..].copy_from_slice(&id.index.0.to_le_bytes());
    b
}

/// The inverse of [`encode_log_id`]; `None` unless exactly 16 bytes.
pub(crate) fn decode_log_id(b: &[u8]) -> Option<LogId> {
    let b: &[u8; 16] = b.try_into().ok()?;
    let term = u64::from_le_bytes(b[..8].try_into().ok()?);
    let index = u64::from_le_bytes(b[8..].try_into().ok()?);
    Some(LogId::new(term, index))
}

#[cfg(test)]
#[path = "segment_log_tests.rs"]
mod tests;
