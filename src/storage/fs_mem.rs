//! [`MemFileSystem`]: a simulated disk that fails the way real disks do.
//!
//! All data lives in memory. Each file keeps two images: what reads see now
//! and what is durable, plus the list of writes made since its last sync.
//! Each directory keeps its current entries and its durable entries. On
//! [`MemFileSystem::crash`], as the seed decides:
//! - every unsynced write is **lost** wholly, **torn** (a prefix of it up to a
//!   sector boundary survives) or **kept**, independently;
//! - every directory with unsynced changes (creations, renames, removals)
//!   keeps none, all, or a prefix of them in the order they were made (a
//!   journaling file system commits directory operations in order);
//! - open handles die (any use errors), files no name reaches are freed.
//!
//! Also on command: [`flip_bit`](MemFileSystem::flip_bit) (latent
//! corruption of stored bytes, durable image included),
//! [`inject_error`](MemFileSystem::inject_error) (the n-th call of an
//! operation fails), [`set_error_probability`](MemFileSystem::set_error_probability)
//! (random I/O errors) and [`power_off_after`](MemFileSystem::power_off_after)
//! (every call fails after n more mutating calls: a crash in the middle of a
//! sequence). A file opened with `open_direct` refuses unaligned writes, as
//! `O_DIRECT` does, so the simulator checks the log's alignment. Not modelled: sectors of one write persisting out of order,
//! misdirected writes, reads returning other sectors. See
//! `docs/fault_model.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::fs::{DIRECT_IO_ALIGN, DirLock, File, FileSystem};

/// The torn-write granularity: a torn write survives up to a multiple of this.
pub const SECTOR_BYTES: u64 = 512;

/// A file-system operation, for [`MemFileSystem::inject_error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FsOp {
    /// `create_dir_all`.
    CreateDir,
    /// `create`.
    Create,
    /// `open`.
    Open,
    /// `list_dir`.
    ListDir,
    /// `rename`.
    Rename,
    /// `remove_file` and `remove_dir_all`.
    Remove,
    /// `sync_dir`.
    SyncDir,
    /// `read_exact_at`.
    Read,
    /// `write_all_at`.
    Write,
    /// `set_len`.
    SetLen,
    /// `sync_data` and `sync_all`.
    Sync,
}

impl FsOp {
    /// Whether the operation changes the disk (counts for `power_off_after`).
    fn is_mutation(self) -> bool {
        !matches!(self, FsOp::Open | FsOp::ListDir | FsOp::Read)
    }
}

/// The simulated disk. Cloning gives another handle to the same disk.
#[derive(Clone, Debug)]
pub struct MemFileSystem {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    /// Bumped by every crash; handles from an older epoch are dead.
    epoch: u64,
    /// Mutating calls left before the power goes off; `None` = on for good.
    power_left: Option<u64>,
    /// Injected failures: (operation, calls of it to let pass first).
    injected: Vec<(FsOp, u64)>,
    error_probability: f64,
    /// Calls made of each operation, for tests that count syncs.
    calls: BTreeMap<FsOp, u64>,
    /// Directories locked by `lock_dir` (a crash releases them all, as the
    /// process holding them died).
    locked: BTreeSet<PathBuf>,
}

#[derive(Debug)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug, Default)]
struct FileNode {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct DirNode {
    entries: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    /// Changes since the last sync, oldest first; each persists whole (a
    /// rename within the directory is one change). A crash keeps a prefix,
    /// as a journaling file system commits directory operations in order.
    unsynced: Vec<DirChange>,
}

/// One directory operation: names set (`Some`) or removed (`None`).
type DirChange = Vec<(String, Option<u64>)>;

impl DirNode {
    fn change(&mut self, change: DirChange) {
        for (name, ino) in &change {
            match ino {
                Some(ino) => self.entries.insert(name.clone(), *ino),
                None => self.entries.remove(name),
            };
        }
        self.unsynced.push(change);
    }

    fn sync(&mut self) {
        self.durable = self.entries.clone();
        self.unsynced.clear();
    }

    /// Keeps the first `kept` unsynced changes and loses the rest.
    fn crash(&mut self, kept: usize) {
        for change in self.unsynced.drain(..).take(kept) {
            for (name, ino) in change {
                match ino {
                    Some(ino) => self.durable.insert(name, ino),
                    None => self.durable.remove(&name),
                };
            }
        }
        self.entries = self.durable.clone();
    }
}

const ROOT: u64 = 0;

fn err(kind: io::ErrorKind, msg: &'static str) -> io::Error {
    io::Error::new(kind, msg)
}

fn apply(image: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        Pending::SetLen(len) => image.resize(*len as usize, 0),
    }
}

impl MemFileSystem {
    /// An empty disk whose crash outcomes and random errors follow `seed`.
    pub fn new(seed: u64) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        let state = State {
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes,
            next_ino: ROOT + 1,
            epoch: 0,
            power_left: None,
            injected: Vec::new(),
            error_probability: 0.0,
            calls: BTreeMap::new(),
            locked: BTreeSet::new(),
        };
        MemFileSystem {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves no half-applied state that
        // matters to a test, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Power failure: unsynced writes and directory changes are lost, torn or
    /// kept as the seed decides; open handles die; the power comes back on.
    pub fn crash(&self) {
        let mut st = self.lock();
        st.epoch += 1;
        st.locked.clear();
        st.power_left = None;
        st.injected.clear();
        st.crash_files();
        st.crash_dirs();
        st.free_unreachable();
    }

    /// The process using the disk died, but the power stayed on: its open
    /// handles die and its directory locks are released, while everything
    /// it wrote, synced or not, stays (the kernel still holds it).
    pub fn process_died(&self) {
        let mut st = self.lock();
        st.epoch += 1;
        st.locked.clear();
    }

    /// After `ops` more mutating calls, every call fails until [`crash`](Self::crash).
    pub fn power_off_after(&self, ops: u64) {
        self.lock().power_left = Some(ops);
    }

    /// Whether the power is off (`power_off_after` ran out): every call
    /// fails until [`crash`](Self::crash).
    pub fn is_powered_off(&self) -> bool {
        self.lock().power_left == Some(0)
    }

    /// Makes the call of `op` after `skip` more calls of it fail once with an
    /// I/O error.
    pub fn inject_error(&self, op: FsOp, skip: u64) {
        self.lock().injected.push((op, skip));
    }

    /// Makes every call fail with probability `p` (drawn from the seed).
    pub fn set_error_probability(&self, p: f64) {
        self.lock().error_probability = p;
    }

    /// Flips bit `bit` (0..8) of the byte at `offset` of the file at `path`,
    /// in the durable image too: latent media corruption.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.resolve(path)?;
        let file = st.file_mut(ino)?;
        let i = offset as usize;
        if i >= file.data.len() {
            return Err(err(io::ErrorKind::InvalidInput, "offset past end of file"));
        }
        file.data[i] ^= 1 << (bit % 8);
        if i < file.durable.len() {
            file.durable[i] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    /// How many calls of `op` were made so far (failed ones included).
    pub fn calls(&self, op: FsOp) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// The bytes reads of `path` see now (for tests).
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut st = self.lock();
        let ino = st.resolve(path)?;
        Ok(st.file_mut(ino)?.data.clone())
    }

    /// Runs the power/injection checks for one call of `op`.
    fn check(&self, op: FsOp) -> io::Result<MutexGuard<'_, State>> {
        let mut st = self.lock();
        st.check(op)?;
        Ok(st)
    }
}

impl State {
    fn check(&mut self, op: FsOp) -> io::Result<()> {
        *self.calls.entry(op).or_default() += 1;
        match &mut self.power_left {
            Some(0) => return Err(err(io::ErrorKind::Other, "simulated power off")),
            Some(n) if op.is_mutation() => *n -= 1,
            _ => {}
        }
        let mut fire = false;
        self.injected.retain_mut(|(o, skip)| {
            if *o != op || fire {
                return true;
            }
            if *skip == 0 {
                fire = true;
                return false;
            }
            *skip -= 1;
            true
        });
        if fire {
            return Err(err(io::ErrorKind::Other, "injected i/o error"));
        }
        if self.error_probability > 0.0 && self.rng.random_bool(self.error_probability) {
            return Err(err(io::ErrorKind::Other, "random injected i/o error"));
        }
        Ok(())
    }

    fn crash_files(&mut self) {
        let State { rng, nodes, .. } = self;
        for node in nodes.values_mut() {
            let Node::File(file) = node else { continue };
            for op in std::mem::take(&mut file.pending) {
                match rng.random_range(0..3u8) {
                    0 => {} // lost
                    1 => {
                        if let Some(torn) = tear(rng, op) {
                            apply(&mut file.durable, &torn);
                        }
                    }
                    _ => apply(&mut file.durable, &op),
                }
            }
            file.data = file.durable.clone();
        }
    }

    fn crash_dirs(&mut self) {
        let State { rng, nodes, .. } = self;
        for node in nodes.values_mut() {
            let Node::Dir(dir) = node else { continue };
            // None, all, or a prefix in between, each a third of the time.
            let n = dir.unsynced.len();
            let kept = match rng.random_range(0..3) {
                0 => 0,
                1 => n,
                _ => rng.random_range(0..=n),
            };
            dir.crash(kept);
        }
    }

    fn free_unreachable(&mut self) {
        let mut reachable = BTreeSet::new();
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if reachable.insert(ino)
                && let Some(Node::Dir(dir)) = self.nodes.get(&ino)
            {
                todo.extend(dir.entries.values().copied());
            }
        }
        self.nodes.retain(|ino, _| reachable.contains(ino));
    }

    /// The directory inode and final name of `path`.
    fn parent_of(&self, path: &Path) -> io::Result<(u64, String)> {
        let parts = components(path)?;
        let (name, dirs) = parts
            .split_last()
            .ok_or_else(|| err(io::ErrorKind::InvalidInput, "empty path"))?;
        let mut ino = ROOT;
        for part in dirs {
            ino = self.lookup(ino, part)?;
        }
        self.dir(ino)?;
        Ok((ino, name.clone()))
    }

    fn resolve(&self, path: &Path) -> io::Result<u64> {
        let mut ino = ROOT;
        for part in components(path)? {
            ino = self.lookup(ino, &part)?;
        }
        Ok(ino)
    }

    fn lookup(&self, dir: u64, name: &str) -> io::Result<u64> {
        self.dir(dir)?
            .entries
            .get(name)
            .copied()
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such file or directory"))
    }

    fn dir(&self, ino: u64) -> io::Result<&DirNode> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            _ => Err(err(io::ErrorKind::NotADirectory, "not a directory")),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> io::Result<&mut DirNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            _ => Err(err(io::ErrorKind::NotADirectory, "not a directory")),
        }
    }

    fn file_mut(&mut self, ino: u64) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(err(io::ErrorKind::IsADirectory, "not a file")),
        }
    }

    fn new_node(&mut self, node: Node) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }
}

/// The surviving prefix of a torn write, cut at a sector boundary strictly
/// inside it; a write within one sector is atomic, so kept or lost whole.
fn tear(rng: &mut ChaCha8Rng, op: Pending) -> Option<Pending> {
    let Pending::Write { offset, mut data } = op else {
        return rng.random_bool(0.5).then_some(op);
    };
    let end = offset + data.len() as u64;
    let first_cut = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
    if first_cut >= end {
        return rng
            .random_bool(0.5)
            .then_some(Pending::Write { offset, data });
    }
    let cuts = (end - 1 - first_cut) / SECTOR_BYTES + 1;
    let cut = first_cut + rng.random_range(0..cuts) * SECTOR_BYTES;
    data.truncate((cut - offset) as usize);
    Some(Pending::Write { offset, data })
}

fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::RootDir | Component::CurDir => {}
            _ => return Err(err(io::ErrorKind::InvalidInput, "unsupported path")),
        }
    }
    Ok(parts)
}

impl FileSystem for MemFileSystem {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.check(FsOp::CreateDir)?;
        let mut ino = ROOT;
        for part in components(path)? {
            ino = match st.dir(ino)?.entries.get(&part) {
                Some(&child) => {
                    st.dir(child)?;
                    child
                }
                None => {
                    let child = st.new_node(Node::Dir(DirNode::default()));
                    st.dir_mut(ino)?.change(vec![(part, Some(child))]);
                    child
                }
            };
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let mut st = self.check(FsOp::Create)?;
        let (dir, name) = st.parent_of(path)?;
        let ino = match st.dir(dir)?.entries.get(&name).copied() {
            Some(ino) => {
                // Truncating an existing file is itself an unsynced change.
                let file = st.file_mut(ino)?;
                file.data.clear();
                file.pending.push(Pending::SetLen(0));
                ino
            }
            None => {
                let ino = st.new_node(Node::File(FileNode::default()));
                st.dir_mut(dir)?.change(vec![(name, Some(ino))]);
                ino
            }
        };
        Ok(Box::new(self.handle(&st, ino)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let mut st = self.check(FsOp::Open)?;
        let ino = st.resolve(path)?;
        st.file_mut(ino)?;
        Ok(Box::new(self.handle(&st, ino)))
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut st = self.check(FsOp::Open)?;
        st.dir(st.resolve(path)?)?;
        if !st.locked.insert(path.to_path_buf()) {
            return Err(err(io::ErrorKind::WouldBlock, "directory locked"));
        }
        Ok(Box::new(MemDirLock {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
            epoch: st.epoch,
        }))
    }

    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let mut st = self.check(FsOp::Open)?;
        let ino = st.resolve(path)?;
        st.file_mut(ino)?;
        let mut file = self.handle(&st, ino);
        file.direct = true;
        Ok(Box::new(file))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let st = self.check(FsOp::Open)?;
        match st.resolve(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.check(FsOp::ListDir)?;
        let ino = st.resolve(path)?;
        Ok(st.dir(ino)?.entries.keys().cloned().collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.check(FsOp::Rename)?;
        let (from_dir, from_name) = st.parent_of(from)?;
        let (to_dir, to_name) = st.parent_of(to)?;
        let ino = st.lookup(from_dir, &from_name)?;
        if let Ok(target) = st.lookup(to_dir, &to_name)
            && matches!(st.nodes.get(&target), Some(Node::Dir(d)) if !d.entries.is_empty())
        {
            return Err(err(io::ErrorKind::DirectoryNotEmpty, "target not empty"));
        }
        if from_dir == to_dir {
            let change = vec![(from_name, None), (to_name, Some(ino))];
            st.dir_mut(from_dir)?.change(change);
        } else {
            // Across directories each side is its own change (this code
            // never renames across directories; real ones are atomic).
            st.dir_mut(from_dir)?.change(vec![(from_name, None)]);
            st.dir_mut(to_dir)?.change(vec![(to_name, Some(ino))]);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.check(FsOp::Remove)?;
        let (dir, name) = st.parent_of(path)?;
        let ino = st.lookup(dir, &name)?;
        st.file_mut(ino)?;
        st.dir_mut(dir)?.change(vec![(name, None)]);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.check(FsOp::Remove)?;
        let (dir, name) = st.parent_of(path)?;
        let ino = st.lookup(dir, &name)?;
        st.dir(ino)?;
        // Unlinking the top is enough: unreachable children are freed at the
        // next crash, and until the parent is synced a crash may bring the
        // whole tree back, as on a real disk.
        st.dir_mut(dir)?.change(vec![(name, None)]);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.check(FsOp::SyncDir)?;
        let ino = st.resolve(path)?;
        st.dir_mut(ino)?.sync();
        Ok(())
    }
}

impl MemFileSystem {
    fn handle(&self, st: &State, ino: u64) -> MemFile {
        MemFile {
            state: Arc::clone(&self.state),
            ino,
            epoch: st.epoch,
            direct: false,
        }
    }
}

/// A held lock on a directory of a [`MemFileSystem`].
#[derive(Debug)]
struct MemDirLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    /// A guard from before a crash must not release a later holder's lock.
    epoch: u64,
}

impl DirLock for MemDirLock {}

impl Drop for MemDirLock {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.epoch == self.epoch {
            st.locked.remove(&self.path);
        }
    }
}

/// An open file of a [`MemFileSystem`].
#[derive(Debug)]
struct MemFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    epoch: u64,
    /// Opened for direct I/O: unaligned writes fail, as with `O_DIRECT`.
    direct: bool,
}

impl MemFile {
    /// Locks the disk, checks the call, and runs `f` on this file's node.
    fn with<T>(&self, op: FsOp, f: impl FnOnce(&mut FileNode) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.epoch != self.epoch {
            return Err(err(io::ErrorKind::Other, "handle from before a crash"));
        }
        st.check(op)?;
        f(st.file_mut(self.ino)?)
    }
}

impl File for MemFile {
    fn len(&self) -> io::Result<u64> {
        self.with(FsOp::Read, |f| Ok(f.data.len() as u64))
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(FsOp::Read, |f| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(buf.len());
            if end > f.data.len() {
                return Err(err(io::ErrorKind::UnexpectedEof, "read past end of file"));
            }
            buf.copy_from_slice(&f.data[start..end]);
            Ok(())
        })
    }

    fn write_all_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        let align = DIRECT_IO_ALIGN;
        if self.direct
            && (!offset.is_multiple_of(align as u64)
                || !data.len().is_multiple_of(align)
                || !(data.as_ptr() as usize).is_multiple_of(align))
        {
            return Err(err(io::ErrorKind::InvalidInput, "unaligned direct write"));
        }
        self.with(FsOp::Write, |f| {
            let op = Pending::Write {
                offset,
                data: data.to_vec(),
            };
            apply(&mut f.data, &op);
            f.pending.push(op);
            Ok(())
        })
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.with(FsOp::SetLen, |f| {
            let op = Pending::SetLen(len);
            apply(&mut f.data, &op);
            f.pending.push(op);
            Ok(())
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with(FsOp::Sync, |f| {
            for op in std::mem::take(&mut f.pending) {
                apply(&mut f.durable, &op);
            }
            Ok(())
        })
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

#[cfg(test)]
#[path = "fs_mem_tests.rs"]
mod tests;
