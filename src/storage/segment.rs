//! One segment file: a run of consecutive log entries.
//!
//! The open segment is preallocated with zeros at its size bound so that each
//! batch's `fdatasync` is an overwrite and commits no file-size metadata.
//! Appends are buffered in memory and written with one write and one
//! `fdatasync` per batch ([`Segment::flush`]): a crash can then tear only
//! the last batch, which is what recovery's tail rule relies on.
//!
//! Closing and truncating both rename the file to its closed name, and the
//! rename (made durable by syncing the directory) is the commit point: a
//! closed segment's name bounds its entries, so bytes after its last record
//! (the zero tail, stale records of a recycled file, records a truncation
//! dropped) are never read and need not be trimmed. Not trimming keeps a
//! rotation to one rename and one directory sync, and keeps the file at its
//! full size for reuse (see `recycle`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::direct_writer::DirectWriter;
use super::error::{Result, StorageError};
use super::fs::{File, FileSystem};
use super::record::{self, Decoded};
use super::segment_name::SegmentName;
use crate::core::{Entry, Term};

/// Zero bytes written after each batch's records (a whole record header),
/// so that recovery finds a clean end rather than a recycled file's stale
/// bytes.
pub(crate) const END_MARK_BYTES: usize = super::record::HEADER_BYTES;

/// Zeros are written in chunks of this size to bound memory.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// One segment of the log, open or closed.
///
/// Invariant: `index.len() == last + 1 - first`; `index[i]` is the offset and
/// term of entry `first + i`; offsets below `written` are on disk and synced,
/// the rest are in `buffer` (open segment only).
#[derive(Debug)]
pub(crate) struct Segment {
    /// The index of the first entry (also the record salt).
    pub(crate) first: u64,
    /// Offset and term of each entry.
    index: Vec<(u64, Term)>,
    /// Bytes of records on disk (synced).
    written: u64,
    /// Encoded records not yet written (open segment only).
    buffer: Vec<u8>,
    /// Whether this is the open segment (named `log_inprogress_`).
    is_open: bool,
    /// The open segment's file; closed segments open theirs for each
    /// read, or range of reads.
    file: Option<Box<dyn File>>,
    /// The open segment's direct-I/O writer, when in use: batches go
    /// through it, `file` serves reads.
    direct: Option<DirectWriter>,
    /// The log directory.
    dir: PathBuf,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |e| StorageError::io(op, path, e)
}

/// Creates the open segment file `log_inprogress_{first}` in `dir`,
/// preallocated with `preallocate_bytes` zeros, synced, and its name made
/// durable (for the per-group log and the server log alike).
pub(crate) fn create_open_segment(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    first: u64,
    preallocate_bytes: u64,
) -> Result<Box<dyn File>> {
    let path = dir.join(SegmentName::Open { first }.to_string());
    let mut file = fs.create(&path).map_err(io("create", &path))?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(preallocate_bytes as usize)];
    let mut at = 0;
    while at < preallocate_bytes {
        let n = zeros.len().min((preallocate_bytes - at) as usize);
        file.write_all_at(&zeros[..n], at)
            .map_err(io("preallocate", &path))?;
        at += n as u64;
    }
    file.sync_all().map_err(io("sync_all", &path))?;
    fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
    Ok(file)
}

impl Segment {
    /// Creates a new open segment starting at `first`, preallocated with
    /// `preallocate_bytes` zeros, synced, and its name made durable.
    pub(crate) fn create(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        first: u64,
        preallocate_bytes: u64,
    ) -> Result<Segment> {
        let file = create_open_segment(fs, dir, first, preallocate_bytes)?;
        Ok(Segment::loaded(dir, first, Vec::new(), 0, Some(file)))
    }

    /// A segment recovery validated: `index` and `written` as found on disk;
    /// `file` is `Some` for the open segment.
    pub(crate) fn loaded(
        dir: &Path,
        first: u64,
        index: Vec<(u64, Term)>,
        written: u64,
        file: Option<Box<dyn File>>,
    ) -> Segment {
        Segment {
            first,
            index,
            written,
            buffer: Vec::new(),
            is_open: file.is_some(),
            file,
            direct: None,
            dir: dir.to_path_buf(),
        }
    }

    /// Writes the open segment's batches with direct I/O from now on, if
    /// the file system has it (otherwise through the page cache, as before).
    pub(crate) fn use_direct_io(&mut self, fs: &Arc<dyn FileSystem>) -> Result<()> {
        let path = self.path();
        let Some(file) = self.file.as_deref() else {
            return Ok(());
        };
        self.direct =
            DirectWriter::open(fs, &path, file, self.written).map_err(io("open_direct", &path))?;
        Ok(())
    }

    /// The index of the last entry; `first - 1` when empty.
    pub(crate) fn last(&self) -> u64 {
        self.first + self.index.len() as u64 - 1
    }

    /// Whether the segment holds no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether this is the open segment.
    pub(crate) fn is_open(&self) -> bool {
        self.is_open
    }

    /// The open segment's file length (0 for a closed segment).
    pub(crate) fn file_len(&self) -> Result<u64> {
        match &self.file {
            Some(file) => file.len().map_err(io("len", &self.path())),
            None => Ok(0),
        }
    }

    /// Bytes of records, written or buffered.
    pub(crate) fn bytes(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    /// The term of entry `index`, if this segment holds it.
    pub(crate) fn term(&self, index: u64) -> Option<Term> {
        let i = index.checked_sub(self.first)?;
        self.index.get(i as usize).map(|&(_, term)| term)
    }

    /// The segment's current file name.
    pub(crate) fn name(&self) -> SegmentName {
        match self.is_open {
            true => SegmentName::Open { first: self.first },
            false => SegmentName::Closed {
                first: self.first,
                last: self.last(),
            },
        }
    }

    /// The segment's current path.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(self.name().to_string())
    }

    /// Buffers `entry`, which must be entry `last() + 1`, until [`flush`](Self::flush).
    pub(crate) fn append(&mut self, entry: &Entry) -> Result<()> {
        assert!(self.is_open, "append to a closed segment");
        assert_eq!(entry.id.index.0, self.last() + 1, "append out of order");
        let offset = self.bytes();
        record::encode(entry, self.first, &mut self.buffer)?;
        self.index.push((offset, entry.id.term));
        Ok(())
    }

    /// Writes buffered records with one write and makes them durable with
    /// one `fdatasync`. Returns whether anything was written.
    pub(crate) fn flush(&mut self) -> Result<bool> {
        if self.buffer.is_empty() {
            return Ok(false);
        }
        let path = self.path();
        if let Some(direct) = &mut self.direct {
            direct
                .write_and_sync(&self.buffer, self.written)
                .map_err(io("direct write", &path))?;
        } else {
            let file = self.file.as_mut().expect("the open segment has a file");
            // Zeros after the records: the end mark recovery stops at, over
            // whatever a recycled file held there.
            let records = self.buffer.len();
            self.buffer.resize(records + END_MARK_BYTES, 0);
            let written = file.write_all_at(&self.buffer, self.written);
            self.buffer.truncate(records);
            written.map_err(io("write", &path))?;
            file.sync_data().map_err(io("sync_data", &path))?;
        }
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(true)
    }

    /// Closes the open segment (after [`flush`](Self::flush)): renames it to
    /// its closed name, durably.
    pub(crate) fn close(&mut self, fs: &Arc<dyn FileSystem>) -> Result<()> {
        assert!(self.is_open && self.buffer.is_empty() && !self.is_empty());
        self.rename_closed(fs, self.last())
    }

    /// Keeps entries `≤ last_kept` (which must be `≥ first`), durably. A
    /// segment truncated below its written records becomes closed.
    pub(crate) fn truncate_suffix(
        &mut self,
        fs: &Arc<dyn FileSystem>,
        last_kept: u64,
    ) -> Result<()> {
        assert!(
            last_kept >= self.first,
            "truncate a whole segment by removing it"
        );
        if last_kept >= self.last() {
            return Ok(());
        }
        let end = self.index[(last_kept + 1 - self.first) as usize].0;
        if end >= self.written {
            // Only buffered records go: nothing on disk changes.
            self.buffer.truncate((end - self.written) as usize);
            self.index.truncate((last_kept + 1 - self.first) as usize);
            return Ok(());
        }
        self.rename_closed(fs, last_kept)?;
        self.buffer.clear();
        Ok(())
    }

    /// Renames to `log_{first}_{last_kept}` and syncs the directory: from
    /// then on the segment holds exactly the entries up to `last_kept`.
    fn rename_closed(&mut self, fs: &Arc<dyn FileSystem>, last_kept: u64) -> Result<()> {
        let from = self.path();
        let keep = (last_kept + 1 - self.first) as usize;
        let end = self.index.get(keep).map_or(self.written, |&(o, _)| o);
        let closed = SegmentName::Closed {
            first: self.first,
            last: last_kept,
        };
        let to = self.dir.join(closed.to_string());
        if from != to {
            fs.rename(&from, &to).map_err(io("rename", &from))?;
            fs.sync_dir(&self.dir).map_err(io("sync_dir", &self.dir))?;
        }
        self.is_open = false;
        self.index.truncate(keep);
        self.written = end;
        // Closed segments open their file for each read (or range).
        self.file = None;
        self.direct = None;
        Ok(())
    }

    /// Reads entry `index`, which this segment must hold. A closed
    /// segment's file is opened into `opened` on the first read that needs
    /// it and read through it after: a range opens it once, not per entry.
    pub(crate) fn read(
        &self,
        fs: &Arc<dyn FileSystem>,
        index: u64,
        opened: &mut Option<Box<dyn File>>,
    ) -> Result<Entry> {
        let i = (index - self.first) as usize;
        let start = self.index[i].0;
        let end = self.index.get(i + 1).map_or(self.bytes(), |&(o, _)| o);
        let path = self.path();
        let bytes = if start >= self.written {
            let from = (start - self.written) as usize;
            self.buffer[from..(end - self.written) as usize].to_vec()
        } else {
            let mut buf = vec![0u8; (end - start) as usize];
            let file = match (&self.file, opened) {
                (Some(file), _) => file,
                (None, Some(file)) => file,
                (None, opened) => opened.insert(fs.open(&path).map_err(io("read", &path))?),
            };
            file.read_exact_at(&mut buf, start)
                .map_err(io("read", &path))?;
            buf
        };
        // The bytes were valid at recovery or append; a mismatch now is
        // corruption that happened since (or a bug), never wrong data.
        match record::decode(&bytes, 0, self.first) {
            Decoded::Record { entry, .. } if entry.id.index.0 == index => Ok(entry),
            Decoded::Invalid(kind) => Err(StorageError::corruption(path, start, kind)),
            _ => Err(StorageError::corruption(
                path,
                start,
                super::error::CorruptionKind::IndexGap {
                    expected: index,
                    found: 0,
                },
            )),
        }
    }
}
