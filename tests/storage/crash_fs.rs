//! A crashable wrapper over the real file system, for the recovery test on
//! real files. Each handle records the writes made since its last sync,
//! keeping the file's synced image; `crash` kills every handle and, as the
//! seed decides per write, reverts it (lost), keeps a prefix of it up to a
//! 512-byte boundary (torn) or keeps it — then rewrites the file and syncs.
//! `open_direct` writes through `O_DIRECT` like the real one.
//! Directory operations go straight to disk and are not undone: the real
//! kernel makes them durable or not on its own terms, which a test cannot
//! reach into.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use oar::storage::{File, FileSystem, StdFileSystem};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::driver::Disk;

const SECTOR: u64 = 512;

/// The real file system, with power failures.
#[derive(Debug, Clone)]
pub struct CrashFs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    epoch: u64,
    power_left: Option<u64>,
    tracked: Vec<Tracked>,
}

#[derive(Debug)]
struct Tracked {
    /// The handle writes go through (`O_DIRECT` for `open_direct`).
    file: Arc<fs::File>,
    /// A buffered handle for reads and for rewriting the image at a crash.
    plain: Arc<fs::File>,
    /// The bytes as of the last sync, once a write made them differ.
    synced: Option<Vec<u8>>,
    pending: Vec<(u64, Vec<u8>, bool)>, // (offset or new len, data, is_set_len)
}

#[derive(Debug)]
struct CrashFile {
    fs: CrashFs,
    id: usize,
    epoch: u64,
}

fn off() -> io::Error {
    io::Error::other("simulated power off")
}

impl CrashFs {
    /// A crashable real file system deciding crash outcomes by `seed`.
    pub fn new(seed: u64) -> Self {
        let state = State {
            rng: ChaCha8Rng::seed_from_u64(seed),
            epoch: 0,
            power_left: None,
            tracked: Vec::new(),
        };
        CrashFs {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn tick(&self, mutation: bool) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        match &mut st.power_left {
            Some(0) => Err(off()),
            Some(n) if mutation => {
                *n -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn track(&self, path: &Path, truncate: bool, direct: bool) -> io::Result<Box<dyn File>> {
        let plain = Arc::new(
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(truncate)
                .truncate(truncate)
                .open(path)?,
        );
        let file = match direct {
            true => Arc::new(oar::storage::fs_std::open_direct_file(path)?),
            false => Arc::clone(&plain),
        };
        let mut st = self.state.lock().unwrap();
        st.tracked.push(Tracked {
            file,
            plain,
            synced: None,
            pending: Vec::new(),
        });
        Ok(Box::new(CrashFile {
            fs: self.clone(),
            id: st.tracked.len() - 1,
            epoch: st.epoch,
        }))
    }
}

impl Disk for CrashFs {
    fn fs(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }

    fn power_off_after(&self, ops: u64) {
        self.state.lock().unwrap().power_left = Some(ops);
    }

    fn is_powered_off(&self) -> bool {
        self.state.lock().unwrap().power_left == Some(0)
    }

    fn crash(&self) {
        let mut st = self.state.lock().unwrap();
        st.epoch += 1;
        st.power_left = None;
        let State { rng, tracked, .. } = &mut *st;
        for t in tracked.drain(..) {
            let Some(mut image) = t.synced else { continue };
            for (at, data, is_set_len) in t.pending {
                if is_set_len {
                    if rng.random_bool(0.5) {
                        image.resize(at as usize, 0);
                    }
                    continue;
                }
                let keep = match rng.random_range(0..3u8) {
                    0 => 0,
                    1 => {
                        let end = at + data.len() as u64;
                        let cut = ((at / SECTOR + 1)..=(end / SECTOR))
                            .map(|s| s * SECTOR)
                            .collect::<Vec<_>>();
                        if cut.is_empty() {
                            0
                        } else {
                            (cut[rng.random_range(0..cut.len())] - at) as usize
                        }
                    }
                    _ => data.len(),
                };
                let end = at as usize + keep;
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[at as usize..end].copy_from_slice(&data[..keep]);
            }
            t.plain.set_len(image.len() as u64).unwrap();
            t.plain.write_all_at(&image, 0).unwrap();
            t.plain.sync_all().unwrap();
        }
    }
}

impl FileSystem for CrashFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.tick(true)?;
        StdFileSystem.create_dir_all(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        self.tick(true)?;
        self.track(path, true, false)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn File>> {
        self.tick(false)?;
        self.track(path, false, false)
    }
    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn File>> {
        self.tick(false)?;
        self.track(path, false, true)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.tick(false)?;
        StdFileSystem.exists(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.tick(false)?;
        StdFileSystem.list_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.tick(true)?;
        StdFileSystem.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.tick(true)?;
        StdFileSystem.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.tick(true)?;
        StdFileSystem.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.tick(true)?;
        StdFileSystem.sync_dir(path)
    }
}

impl CrashFile {
    fn with<T>(
        &self,
        mutation: bool,
        f: impl FnOnce(&mut Tracked) -> io::Result<T>,
    ) -> io::Result<T> {
        self.fs.tick(mutation)?;
        let mut st = self.fs.state.lock().unwrap();
        if st.epoch != self.epoch {
            return Err(io::Error::other("handle from before a crash"));
        }
        f(&mut st.tracked[self.id])
    }

    fn mutate(&mut self, at: u64, data: &[u8], is_set_len: bool) -> io::Result<()> {
        self.with(true, |t| {
            if t.synced.is_none() {
                let len = t.plain.metadata()?.len();
                let mut image = vec![0u8; len as usize];
                t.plain.read_exact_at(&mut image, 0)?;
                t.synced = Some(image);
            }
            t.pending.push((at, data.to_vec(), is_set_len));
            match is_set_len {
                true => t.file.set_len(at),
                false => t.file.write_all_at(data, at),
            }
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.with(true, |t| {
            t.file.sync_all()?;
            t.synced = None;
            t.pending.clear();
            Ok(())
        })
    }
}

impl File for CrashFile {
    fn len(&self) -> io::Result<u64> {
        self.with(false, |t| Ok(t.file.metadata()?.len()))
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(false, |t| t.plain.read_exact_at(buf, offset))
    }
    fn write_all_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.mutate(offset, data, false)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.mutate(len, &[], true)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.sync()
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.sync()
    }
}
