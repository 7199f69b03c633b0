//! The file-system trait the storage layer is written against.
//!
//! Two implementations: [`StdFileSystem`](super::StdFileSystem) over real
//! files, and `MemFileSystem` (feature `testing`), a simulated disk that
//! loses, tears and corrupts data as a seed decides. The trait is small and
//! synchronous on purpose: every durability decision (what to sync, in what
//! order) lives in the storage code above it, so the simulator exercises the
//! very code that runs in production.
//!
//! Durability contract (what a caller may rely on after a crash):
//! - bytes written to a file are durable only after [`File::sync_data`] or
//!   [`File::sync_all`] on that file returned;
//! - a directory entry (a created, renamed or removed name) is durable only
//!   after [`FileSystem::sync_dir`] on its parent directory returned;
//! - [`FileSystem::rename`] is atomic: after a crash the target names either
//!   the old or the new file, never neither and never a mix.

use std::fmt;
use std::io;
use std::path::Path;

/// A directory tree of files, real or simulated.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates `path` and any missing parents (not durable until the parents
    /// are synced).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a new empty file at `path` (replacing an existing one) and
    /// opens it for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn File>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn File>>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// The names of the entries of directory `path`, sorted ascending.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Atomically renames a file or directory, replacing a file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of directory `path` (creations, renames, removals)
    /// durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Opens an existing file for direct I/O (`O_DIRECT`): writes bypass the
    /// page cache, and each write's buffer address, offset and length must be
    /// multiples of [`DIRECT_IO_ALIGN`]. Only written through; reads use a
    /// handle from [`open`](Self::open). Durability is unchanged: data is
    /// durable after `sync_data` (the device may cache writes).
    ///
    /// # Errors
    /// `Unsupported` where the file system has no direct I/O (the default);
    /// callers then write through the page cache.
    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let _ = path;
        Err(io::Error::new(io::ErrorKind::Unsupported, "no direct I/O"))
    }
    /// Takes an exclusive lock on directory `path` (creating the lock file
    /// [`DIR_LOCK_NAME`] in it), held until the returned guard is dropped or
    /// the process dies; another holder, in this process or another, makes
    /// it fail with `WouldBlock`. The default takes no lock, for wrappers
    /// used in tests.
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let _ = path;
        Ok(Box::new(NoLock))
    }
    /// Makes `to` a new name of the file at `from` (a hard link), so that a
    /// snapshot can hold a file the application already has without copying
    /// it. Not durable until `to`'s directory is synced. The default copies
    /// the bytes (in bounded chunks) and syncs the copy, for file systems
    /// without links.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        copy_file(self, from, to)
    }
}

/// Copies the file at `from` to a new file `to`, `COPY_CHUNK_BYTES` at a
/// time, and syncs it.
pub fn copy_file<F: FileSystem + ?Sized>(fs: &F, from: &Path, to: &Path) -> io::Result<()> {
    const COPY_CHUNK_BYTES: u64 = 1 << 20;
    let source = fs.open(from)?;
    let len = source.len()?;
    let mut target = fs.create(to)?;
    let mut buf = vec![0u8; COPY_CHUNK_BYTES.min(len) as usize];
    let mut offset = 0;
    while offset < len {
        let n = COPY_CHUNK_BYTES.min(len - offset) as usize;
        source.read_exact_at(&mut buf[..n], offset)?;
        target.write_all_at(&buf[..n], offset)?;
        offset += n as u64;
    }
    target.sync_all()
}

/// The name of the lock file [`FileSystem::lock_dir`] creates.
pub const DIR_LOCK_NAME: &str = "LOCK";

/// A held directory lock; dropping it releases the lock.
pub trait DirLock: Send + Sync + fmt::Debug {}

/// What file systems without locks hand out.
#[derive(Debug)]
struct NoLock;

impl DirLock for NoLock {}

/// The alignment direct I/O asks of buffer addresses, file offsets and
/// lengths: a page, a multiple of every common logical block size.
pub const DIRECT_IO_ALIGN: usize = 4096;

/// An open file with positional reads and writes.
pub trait File: Send + fmt::Debug {
    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `data` at `offset`, growing the file if needed.
    fn write_all_at(&mut self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes written data (and the length, if it changed) durable
    /// (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes data and all metadata durable (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;
}

/// Reads the whole file at `path`, refusing files longer than `len_max`
/// bytes (`InvalidData`) so a damaged file never makes us allocate its size.
pub fn read_all(fs: &dyn FileSystem, path: &Path, len_max: u64) -> io::Result<Vec<u8>> {
    let file = fs.open(path)?;
    let len = file.len()?;
    if len > len_max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
    }
    let len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
