//! A file system whose one chosen call a test can hold: `StdFileSystem`,
//! except that the first call at the [`GatePoint`] blocks its thread on
//! the [`Gate`] until the test says go (or fails after five seconds). The
//! tests that off-load blocking file calls use it to show that a blocked
//! call leaves the runtime's thread free. Included by path by the tests
//! that use it.
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oar::storage::{File, FileSystem, StdFileSystem};
use tokio::sync::oneshot;

/// Which call the gate holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatePoint {
    /// The first `create_dir_all` (the first thing a storage open does).
    CreateDirAll,
    /// The first `sync_all` of a file the file system created.
    FileSyncAll,
}

/// What the held call waits on: it says it started on `entered` (if
/// given), then waits for `go`.
#[derive(Debug)]
pub struct Gate {
    pub entered: Option<oneshot::Sender<()>>,
    pub go: mpsc::Receiver<()>,
}

type SharedGate = Arc<Mutex<Option<Gate>>>;

/// Blocks on the gate the first time only; an error if nobody opened it.
fn pass(gate: &SharedGate) -> io::Result<()> {
    let Some(gate) = gate.lock().unwrap().take() else {
        return Ok(());
    };
    if let Some(entered) = gate.entered {
        let _ = entered.send(());
    }
    gate.go
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| io::Error::other("the runtime never ran the task that opens the gate"))
}

/// See the module's doc.
#[derive(Debug)]
pub struct GatedFs {
    at: GatePoint,
    gate: SharedGate,
}

impl GatedFs {
    /// Holds the first call at `at` on `gate`.
    pub fn new(at: GatePoint, gate: Gate) -> Self {
        GatedFs {
            at,
            gate: Arc::new(Mutex::new(Some(gate))),
        }
    }
}

/// A file of [`GatedFs`].
#[derive(Debug)]
struct GatedFile {
    inner: Box<dyn File>,
    gate: Option<SharedGate>,
}

impl File for GatedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(data, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&mut self) -> io::Result<()> {
        if let Some(gate) = &self.gate {
            pass(gate)?;
        }
        self.inner.sync_all()
    }
}

impl FileSystem for GatedFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if self.at == GatePoint::CreateDirAll {
            pass(&self.gate)?;
        }
        StdFileSystem.create_dir_all(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let inner = StdFileSystem.create(path)?;
        let gate = (self.at == GatePoint::FileSyncAll).then(|| Arc::clone(&self.gate));
        Ok(Box::new(GatedFile { inner, gate }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn File>> {
        StdFileSystem.open(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdFileSystem.exists(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        StdFileSystem.list_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFileSystem.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.sync_dir(path)
    }
}
