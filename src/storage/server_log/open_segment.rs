//! The server log's open segment: frames are buffered, then written with
//! one write and made durable with one `fdatasync` a batch, whichever
//! groups they belong to.
//!
//! As in the per-group log (`segment.rs`): the file is preallocated with
//! zeros so that each `fdatasync` is an overwrite, each batch is followed by
//! a zero end mark, and closing renames the file to `log_{first}_{last}`
//! (first and last LSN), the commit point that bounds what is read back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::error::{Result, StorageError};
use super::super::fs::{File, FileSystem};
use super::super::segment::{END_MARK_BYTES, create_open_segment};
use super::super::segment_name::SegmentName;

pub(super) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |e| StorageError::io(op, path, e)
}

/// The segment frames are appended to.
///
/// Invariant: it holds frames `[first, next_lsn)`; bytes below `written`
/// are on disk and synced, the rest are in `buffer`.
#[derive(Debug)]
pub(crate) struct OpenSegment {
    /// The first LSN (also the frames' salt and the segment's name).
    pub(crate) first: u64,
    /// The LSN the next frame gets.
    pub(crate) next_lsn: u64,
    /// Bytes of frames on disk (synced).
    written: u64,
    /// Encoded frames not yet written.
    pub(crate) buffer: Vec<u8>,
    file: Box<dyn File>,
    path: PathBuf,
}

impl OpenSegment {
    /// Creates `log_inprogress_{first}` in `dir`, preallocated with
    /// `preallocate_bytes` zeros, synced, its name durable.
    pub(crate) fn create(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        first: u64,
        preallocate_bytes: u64,
    ) -> Result<OpenSegment> {
        let file = create_open_segment(fs, dir, first, preallocate_bytes)?;
        Ok(OpenSegment::recovered(dir, first, first, 0, file))
    }

    /// The open segment as recovery found it.
    pub(crate) fn recovered(
        dir: &Path,
        first: u64,
        next_lsn: u64,
        written: u64,
        file: Box<dyn File>,
    ) -> OpenSegment {
        OpenSegment {
            first,
            next_lsn,
            written,
            buffer: Vec::new(),
            file,
            path: dir.join(SegmentName::Open { first }.to_string()),
        }
    }

    /// Bytes of frames, written or buffered.
    pub(crate) fn bytes(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    /// Whether the segment holds no frame.
    pub(crate) fn is_empty(&self) -> bool {
        self.next_lsn == self.first
    }

    /// Writes the buffered frames with one write and makes them durable
    /// with one `fdatasync`. Returns whether anything was written.
    pub(crate) fn flush(&mut self) -> Result<bool> {
        if self.buffer.is_empty() {
            return Ok(false);
        }
        // Zeros after the frames: the end mark recovery stops at.
        let frames = self.buffer.len();
        self.buffer.resize(frames + END_MARK_BYTES, 0);
        let written = self.file.write_all_at(&self.buffer, self.written);
        self.buffer.truncate(frames);
        written.map_err(io("write", &self.path))?;
        self.file.sync_data().map_err(io("sync_data", &self.path))?;
        self.written += frames as u64;
        self.buffer.clear();
        Ok(true)
    }

    /// Reads `len` bytes at `offset`, from the file or the buffer.
    pub(crate) fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if offset >= self.written {
            let from = (offset - self.written) as usize;
            return Ok(self.buffer[from..from + len].to_vec());
        }
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(io("read", &self.path))?;
        Ok(buf)
    }

    /// Closes the segment (flushed, not empty): renames it to its closed
    /// name, durably. Returns its last LSN.
    pub(crate) fn close(self, fs: &Arc<dyn FileSystem>, dir: &Path) -> Result<u64> {
        assert!(self.buffer.is_empty() && !self.is_empty());
        let last = self.next_lsn - 1;
        let closed = SegmentName::Closed {
            first: self.first,
            last,
        };
        let to = dir.join(closed.to_string());
        drop(self.file);
        fs.rename(&self.path, &to)
            .map_err(io("rename", &self.path))?;
        fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
        Ok(last)
    }
}
