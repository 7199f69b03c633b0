//! Opening a group's on-disk storage from a service: `DiskStorage::open`
//! runs its blocking, fsyncing recovery off the runtime's workers, and its
//! failures are typed.

use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oar::prelude::*;
use oar::storage::File;

/// `StdFileSystem`, except that the first `create_dir_all` (the first
/// thing an open does) blocks its thread until the test says go, or gives
/// up after a while.
#[derive(Debug)]
struct GatedFs {
    go: Mutex<Option<mpsc::Receiver<()>>>,
}

impl FileSystem for GatedFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if let Some(go) = self.go.lock().unwrap().take() {
            go.recv_timeout(Duration::from_secs(5)).map_err(|_| {
                io::Error::other("the runtime never ran the task that opens the gate")
            })?;
        }
        StdFileSystem.create_dir_all(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        StdFileSystem.create(path)
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

/// On a runtime with a single thread, an open that blocks inside the file
/// system still lets another task run: the open is off the runtime's
/// thread. (Run inline, as `open` once did, the gate's task never runs
/// and the open fails after the gate's five seconds: checked by making
/// `open` call `open_blocking` directly.)
#[tokio::test(flavor = "current_thread")]
async fn an_open_that_blocks_does_not_block_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (go, gate) = mpsc::channel();
    let fs = Arc::new(GatedFs {
        go: Mutex::new(Some(gate)),
    });
    let opener = tokio::spawn({
        let dir = dir.path().join("group");
        async move { DiskStorage::open(fs, &dir, LogOptions::default()).await }
    });
    // Runs only if the runtime's one thread is free while the open blocks.
    tokio::spawn(async move { go.send(()).unwrap() });
    let opened = opener.await.unwrap();
    assert!(opened.is_ok(), "{:?}", opened.err());
}
