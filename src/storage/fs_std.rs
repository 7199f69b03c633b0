//! [`StdFileSystem`]: the [`FileSystem`] trait over real files (`std::fs`).

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::fs::{DIR_LOCK_NAME, DirLock, File, FileSystem};

/// The real file system. `sync_data` is `fdatasync`, `sync_all` is `fsync`,
/// `sync_dir` opens the directory and fsyncs it, which is what makes a
/// create, rename or remove durable on Linux, and `open_direct` opens with
/// `O_DIRECT`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFileSystem;

/// Opens an existing file for reading and writing with `O_DIRECT`.
///
/// # Errors
/// `Unsupported` where the file system refuses `O_DIRECT` (tmpfs and some
/// others answer `EINVAL`); any other open error as is.
pub fn open_direct_file(path: &Path) -> io::Result<fs::File> {
    let opened = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    match opened {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Err(io::Error::new(io::ErrorKind::Unsupported, e))
        }
        other => other,
    }
}

/// A held `flock` on a directory's lock file.
#[derive(Debug)]
struct StdDirLock {
    _file: fs::File,
}

impl DirLock for StdDirLock {}

/// A real open file.
#[derive(Debug)]
struct StdFile {
    file: fs::File,
}

impl FileSystem for StdFileSystem {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let file = fs::OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let name = entry?.file_name();
            // A name that is not UTF-8 is kept lossily so that the caller
            // sees it and reports it as unexpected, rather than skipping it.
            names.push(name.to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        match fs::hard_link(from, to) {
            // Across file systems a link is impossible: copy instead.
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                super::fs::copy_file(self, from, to)
            }
            other => other,
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(DIR_LOCK_NAME))?;
        // `flock`: released when the file closes, so also when the process
        // dies; one holder per open file, so two instances in one process
        // exclude each other too.
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdDirLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "directory locked by another instance",
            )),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let file = open_direct_file(path)?;
        Ok(Box::new(StdFile { file }))
    }
}

impl File for StdFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }

    fn write_all_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.file, data, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}
