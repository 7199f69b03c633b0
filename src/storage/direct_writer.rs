//! Appends to the open segment through direct I/O (`O_DIRECT`): whole
//! aligned blocks from an aligned buffer, bypassing the page cache.
//!
//! Why: on the disks measured (see `benches/storage_append.rs`) one
//! `pwrite` + `fdatasync` of a batch costs less without the page cache — no
//! copy into it, no writeback of its pages at the sync, one request to the
//! device.
//!
//! A batch rarely starts or ends on a block boundary, so the writer keeps
//! the bytes of the last partial block it wrote (the tail) and writes each
//! batch from that block's start: the tail, the new records, then zeros up
//! to the next boundary, at least a record header's worth (recovery reads
//! them as the end of the records).
//! Rewriting the tail is safe against a torn write: a sector is written
//! whole or not at all, and every sector before the new records holds the
//! same bytes either way.

use std::io;
use std::path::Path;
use std::sync::Arc;

use super::fs::{DIRECT_IO_ALIGN, File, FileSystem};
use super::segment::END_MARK_BYTES;

const ALIGN: usize = DIRECT_IO_ALIGN;

/// The direct-I/O handle of an open segment and what it needs to write
/// whole blocks.
#[derive(Debug)]
pub(crate) struct DirectWriter {
    file: Box<dyn File>,
    /// The bytes of the last partial block on disk: `[written - tail.len(),
    /// written)`, shorter than a block.
    tail: Vec<u8>,
    /// Backing store of the aligned write buffer (over-allocated by a block
    /// so that an aligned start exists inside it).
    scratch: Vec<u8>,
}

impl DirectWriter {
    /// Opens `path` for direct I/O; `written` bytes of records are already
    /// there, and the tail is read back through `reader` (a buffered
    /// handle). `None` when the file system has no direct I/O.
    pub(crate) fn open(
        fs: &Arc<dyn FileSystem>,
        path: &Path,
        reader: &dyn File,
        written: u64,
    ) -> io::Result<Option<DirectWriter>> {
        let file = match fs.open_direct(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => return Ok(None),
            Err(e) => return Err(e),
        };
        let tail_len = written % ALIGN as u64;
        let mut tail = vec![0u8; tail_len as usize];
        reader.read_exact_at(&mut tail, written - tail_len)?;
        Ok(Some(DirectWriter {
            file,
            tail,
            scratch: Vec::new(),
        }))
    }

    /// Writes `records` right after the `written` bytes already on disk and
    /// makes them durable (`fdatasync`).
    pub(crate) fn write_and_sync(&mut self, records: &[u8], written: u64) -> io::Result<()> {
        let start = written - self.tail.len() as u64;
        let used = self.tail.len() + records.len();
        // At least END_MARK_BYTES zeros after the records, to the block end.
        let len = (used + END_MARK_BYTES).div_ceil(ALIGN) * ALIGN;
        if self.scratch.len() < len + ALIGN {
            self.scratch = vec![0u8; len + ALIGN];
        }
        let skew = self.scratch.as_ptr() as usize % ALIGN;
        let at = (ALIGN - skew) % ALIGN;
        let buf = &mut self.scratch[at..at + len];
        buf[..self.tail.len()].copy_from_slice(&self.tail);
        buf[self.tail.len()..used].copy_from_slice(records);
        buf[used..].fill(0);
        self.file.write_all_at(buf, start)?;
        self.file.sync_data()?;
        let tail_len = used % ALIGN;
        self.tail.clear();
        self.tail.extend_from_slice(&buf[used - tail_len..used]);
        Ok(())
    }
}
