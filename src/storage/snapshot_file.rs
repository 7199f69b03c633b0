//! Streaming one data file of a snapshot: [`SnapshotFileWriter`] writes it
//! in pieces (never holding it whole) and records its length and CRC32C in
//! the snapshot's meta when finished; [`SnapshotFileReader`] reads it back in
//! pieces and checks it against the meta at its end.

use std::io;
use std::path::{Path, PathBuf};

use super::error::{CorruptionKind, Result, StorageError};
use super::fs::File;
use super::snapshot_meta::SnapshotFile;
use super::snapshot_store::SnapshotWriter;

/// Bytes read at a time when checksumming a linked file.
const CHECKSUM_CHUNK_BYTES: u64 = 1 << 20;

/// A data file being streamed into a snapshot (from
/// [`SnapshotWriter::create_file`]). Dropped without
/// [`finish`](Self::finish), the file is left out of the snapshot.
#[derive(Debug)]
pub struct SnapshotFileWriter<'a> {
    snapshot: &'a mut SnapshotWriter,
    file: DetachedFileWriter,
}

impl<'a> SnapshotFileWriter<'a> {
    pub(super) fn new(snapshot: &'a mut SnapshotWriter, file: DetachedFileWriter) -> Self {
        SnapshotFileWriter { snapshot, file }
    }

    /// Appends `data`.
    ///
    /// # Errors
    /// An I/O error.
    pub fn write_at_end(&mut self, data: &[u8]) -> Result<()> {
        self.snapshot.before_write(data.len());
        self.file.write_at_end(data)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.file.len
    }

    /// The CRC32C of the bytes written so far.
    pub fn crc(&self) -> u32 {
        self.file.crc
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.file.len == 0
    }

    /// Syncs the file and adds it to the snapshot (replacing an earlier
    /// file of the same name).
    ///
    /// # Errors
    /// An I/O error; the file is then not part of the snapshot.
    pub fn finish(self) -> Result<()> {
        let synced = self.file.sync()?;
        self.snapshot.add_synced(synced);
        Ok(())
    }
}

/// A data file being streamed into a snapshot that does not borrow the
/// snapshot's writer (from [`SnapshotWriter::create_detached_file`]), so
/// that its writes and its sync can be moved to another thread: the
/// runtime's copier runs them on the blocking pool. It joins the snapshot
/// through [`SnapshotWriter::add_synced`] once synced.
#[derive(Debug)]
pub(crate) struct DetachedFileWriter {
    name: String,
    path: PathBuf,
    file: Box<dyn File>,
    /// Bytes written so far; the next write goes here.
    len: u64,
    /// CRC32C of those bytes.
    crc: u32,
}

impl DetachedFileWriter {
    pub(super) fn new(name: String, path: PathBuf, file: Box<dyn File>) -> Self {
        DetachedFileWriter {
            name,
            path,
            file,
            len: 0,
            crc: 0,
        }
    }

    /// Appends `data`.
    pub(crate) fn write_at_end(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all_at(data, self.len)
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        self.len += data.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, data);
        Ok(())
    }

    /// Appends `data`, whose CRC32C the caller already computed (a
    /// copier checks each chunk's): the file's CRC32C then extends by
    /// combining, without a second pass over the bytes.
    pub(crate) fn write_checked_at_end(&mut self, data: &[u8], crc: u32) -> Result<()> {
        self.file
            .write_all_at(data, self.len)
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        self.len += data.len() as u64;
        self.crc = crc32c::crc32c_combine(self.crc, crc, data.len());
        Ok(())
    }

    /// The CRC32C of the bytes written so far.
    pub(crate) fn crc(&self) -> u32 {
        self.crc
    }

    /// Syncs the file; what it returns is the file's entry in the meta.
    pub(crate) fn sync(mut self) -> Result<SyncedFile> {
        self.file
            .sync_all()
            .map_err(|e| StorageError::io("sync_all", &self.path, e))?;
        Ok(SyncedFile {
            dir: self.path.parent().map(Path::to_path_buf),
            file: SnapshotFile {
                name: std::mem::take(&mut self.name),
                len: self.len,
                crc: self.crc,
            },
        })
    }
}

/// A data file written and synced, ready to join its snapshot; only
/// [`DetachedFileWriter::sync`] makes one, so a meta entry always stands
/// for durable bytes.
#[derive(Debug)]
pub(crate) struct SyncedFile {
    /// The directory it was written in, checked against the snapshot's.
    pub(super) dir: Option<PathBuf>,
    pub(super) file: SnapshotFile,
}

impl io::Write for SnapshotFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_at_end(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    /// Nothing is buffered here; durability comes with `finish`.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A data file of a complete snapshot, read in pieces (from
/// [`SnapshotReader::open_file`](super::SnapshotReader::open_file)). The
/// read that reaches the end fails with `InvalidData` if the bytes differ
/// from the meta's CRC32C, so a reader that reads to the end never accepts
/// wrong bytes (it may have used some before: check before acting on them
/// irrevocably, or read the file twice).
#[derive(Debug)]
pub struct SnapshotFileReader {
    file: Box<dyn File>,
    meta: SnapshotFile,
    path: PathBuf,
    /// Bytes read so far.
    offset: u64,
    /// CRC32C of those bytes.
    crc: u32,
}

impl SnapshotFileReader {
    pub(super) fn new(file: Box<dyn File>, meta: SnapshotFile, path: PathBuf) -> Self {
        SnapshotFileReader {
            file,
            meta,
            path,
            offset: 0,
            crc: 0,
        }
    }

    /// The file's length, as the meta gives it.
    pub fn len(&self) -> u64 {
        self.meta.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.meta.len == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn mismatch(&self) -> io::Error {
        let error = StorageError::corruption(
            &self.path,
            self.offset,
            CorruptionKind::SnapshotFileMismatch,
        );
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

impl io::Read for SnapshotFileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.meta.len - self.offset;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(left) as usize;
        match self.file.read_exact_at(&mut buf[..n], self.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(self.mismatch()),
            Err(e) => return Err(e),
        }
        self.offset += n as u64;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        if self.offset == self.meta.len
            && (self.crc != self.meta.crc || self.file.len()? != self.meta.len)
        {
            return Err(self.mismatch());
        }
        Ok(n)
    }
}

/// The length and CRC32C of `file`, read in bounded chunks.
pub(super) fn checksum(file: &dyn File, path: &Path) -> Result<(u64, u32)> {
    let len = file.len().map_err(|e| StorageError::io("len", path, e))?;
    let mut buf = vec![0u8; CHECKSUM_CHUNK_BYTES.min(len) as usize];
    let (mut offset, mut crc) = (0, 0);
    while offset < len {
        let n = CHECKSUM_CHUNK_BYTES.min(len - offset) as usize;
        file.read_exact_at(&mut buf[..n], offset)
            .map_err(|e| StorageError::io("read", path, e))?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        offset += n as u64;
    }
    Ok((len, crc))
}
