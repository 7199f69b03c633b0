//! A snapshot copy's file calls run off the runtime's workers: an fsync
//! that blocks on the copier's side does not hold up the tasks sharing its
//! thread.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oar::core::{LogId, Membership, NodeId};
use oar::runtime::{
    CopyOptions, Dialer, DiskSnapshots, GroupId, MemSnapshots, NodeManager, Security,
    SnapshotFiles, SnapshotSource, SnapshotStorage, Throttle, TransportOptions, fetch_snapshot,
};
use oar::storage::{File, FileSystem, StdFileSystem};
use tokio::sync::{oneshot, watch};

const GROUP: GroupId = GroupId(1);
const SNAPSHOT: LogId = LogId::new(2, 100);
const CLUSTER: &str = "copy-blocking-tests";

/// The gate of [`GatedFs`]: the first file sync says it started on
/// `entered`, then waits for `go`, or fails after a while.
#[derive(Debug)]
struct Gate {
    entered: oneshot::Sender<()>,
    go: mpsc::Receiver<()>,
}

/// `StdFileSystem`, except that the first `sync_all` of a file it created
/// blocks its thread on the [`Gate`].
#[derive(Debug)]
struct GatedFs {
    gate: Arc<Mutex<Option<Gate>>>,
}

/// A file of [`GatedFs`].
#[derive(Debug)]
struct GatedFile {
    inner: Box<dyn File>,
    gate: Arc<Mutex<Option<Gate>>>,
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
        if let Some(gate) = self.gate.lock().unwrap().take() {
            let _ = gate.entered.send(());
            gate.go
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| io::Error::other("no task ran while the fsync blocked"))?;
        }
        self.inner.sync_all()
    }
}

impl FileSystem for GatedFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.create_dir_all(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let inner = StdFileSystem.create(path)?;
        let gate = Arc::clone(&self.gate);
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

/// On a runtime with one thread, the copier's fsync at a file's end blocks
/// inside the file system until another task on that thread opens the
/// gate: the copy completes only if the fsync runs off the thread. (Run
/// inline, as it once was, the gate's task never runs, the fsync fails
/// after the gate's five seconds and so does the copy: checked by calling
/// `target.sync()` directly in the copier.)
#[tokio::test(flavor = "current_thread")]
async fn an_fsync_that_blocks_does_not_block_the_runtime() {
    let files = SnapshotFiles::from([("data".to_string(), Bytes::from(vec![7u8; 300_000]))]);
    let served = MemSnapshots::new();
    let membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    let meta = served.save(SNAPSHOT, membership, &files).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = NodeManager::bind(
        addr,
        Security::insecure(CLUSTER),
        TransportOptions::default(),
    )
    .await
    .unwrap();
    server.serve_snapshots(GROUP, Arc::new(served));

    let (entered, fsync_entered) = oneshot::channel();
    let (go, gate) = mpsc::channel();
    let fs = GatedFs {
        gate: Arc::new(Mutex::new(Some(Gate { entered, go: gate }))),
    };
    let dir = tempfile::tempdir().unwrap();
    let into = DiskSnapshots::open(Arc::new(fs), dir.path()).unwrap();
    let writer = into.begin(true).unwrap();
    let security = Security::insecure(CLUSTER);
    let source = SnapshotSource::Tcp {
        addr: server.local_addr(),
        dialer: Dialer::server(
            &security,
            "127.0.0.1:1".parse().unwrap(),
            Duration::from_secs(5),
        ),
    };
    let (_keep, never) = watch::channel(false);
    let throttle = Throttle::new(None);
    let options = CopyOptions::default();
    // Runs only if the runtime's one thread is free while the fsync blocks.
    tokio::spawn(async move {
        if fsync_entered.await.is_ok() {
            go.send(()).unwrap();
        }
    });
    let copied = fetch_snapshot(source, GROUP, SNAPSHOT, &throttle, &options, never, writer).await;
    let (got, writer) = copied.expect("the copy completes");
    assert_eq!(got, meta);
    let committed = into
        .commit(writer, got.last_included, got.membership.clone())
        .unwrap();
    assert_eq!(committed, meta, "the file synced is the file served");
    server.shutdown().await;
}
