//! A snapshot copy's file calls run off the runtime's workers: an fsync
//! that blocks on the copier's side does not hold up the tasks sharing its
//! thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use oar::core::{LogId, Membership, NodeId};
use oar::runtime::{
    CopyOptions, Dialer, DiskSnapshots, GroupId, MemSnapshots, NodeManager, Security,
    SnapshotFiles, SnapshotSource, SnapshotStorage, Throttle, TransportOptions, fetch_snapshot,
};
use tokio::sync::{oneshot, watch};

#[path = "runtime/gated_fs.rs"]
mod gated_fs;
use gated_fs::{Gate, GatePoint, GatedFs};

const GROUP: GroupId = GroupId(1);
const SNAPSHOT: LogId = LogId::new(2, 100);
const CLUSTER: &str = "copy-blocking-tests";

/// A server serving `files` as the snapshot, and a copier's side whose
/// file system holds the first `sync_all` until `go` is sent
/// (`fsync_entered` fires when it is reached).
struct GatedCopy {
    server: NodeManager,
    meta: oar::storage::SnapshotMeta,
    into: DiskSnapshots,
    dir: tempfile::TempDir,
    fsync_entered: Option<oneshot::Receiver<()>>,
    go: Option<mpsc::Sender<()>>,
}

impl GatedCopy {
    async fn new(files: SnapshotFiles) -> Self {
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
        let fs = GatedFs::new(
            GatePoint::FileSyncAll,
            Gate {
                entered: Some(entered),
                go: gate,
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let into = DiskSnapshots::open(Arc::new(fs), dir.path()).unwrap();
        GatedCopy {
            server,
            meta,
            into,
            dir,
            fsync_entered: Some(fsync_entered),
            go: Some(go),
        }
    }

    /// Copies the served snapshot into `into` and commits it: the meta
    /// committed.
    async fn fetch_and_commit(&self) -> oar::storage::SnapshotMeta {
        let writer = self.into.begin(true).unwrap();
        let (_keep, never) = watch::channel(false);
        let throttle = Throttle::new(None);
        let options = CopyOptions::default();
        let copied = fetch_snapshot(
            self.source(),
            GROUP,
            SNAPSHOT,
            &throttle,
            &options,
            never,
            writer,
        )
        .await;
        let (got, writer) = copied.expect("the copy completes");
        assert_eq!(got, self.meta);
        self.into
            .commit(writer, got.last_included, got.membership.clone())
            .unwrap()
    }

    fn source(&self) -> SnapshotSource {
        let security = Security::insecure(CLUSTER);
        SnapshotSource::Tcp {
            addr: self.server.local_addr(),
            dialer: Dialer::server(
                &security,
                "127.0.0.1:1".parse().unwrap(),
                Duration::from_secs(5),
            ),
        }
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
    let mut copy = GatedCopy::new(files).await;
    let (fsync_entered, go) = (copy.fsync_entered.take().unwrap(), copy.go.take().unwrap());
    // Runs only if the runtime's one thread is free while the fsync blocks.
    tokio::spawn(async move {
        if fsync_entered.await.is_ok() {
            go.send(()).unwrap();
        }
    });
    let committed = copy.fetch_and_commit().await;
    assert_eq!(committed, copy.meta, "the file synced is the file served");
    copy.server.shutdown().await;
}

/// A file's fsync runs while the next file is fetched: with the first
/// file's fsync held, the second file arrives whole in the install
/// directory; the copy completes once the fsync is let go. (Awaiting each
/// fsync before the next file, as the copier once did, the second file
/// never appears while the first's fsync is held.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_file_is_fetched_while_a_file_syncs() {
    let second = vec![9u8; 300_000];
    let files = SnapshotFiles::from([
        ("a".to_string(), Bytes::from(vec![7u8; 300_000])),
        ("b".to_string(), Bytes::from(second.clone())),
    ]);
    let mut copy = GatedCopy::new(files).await;
    let (fsync_entered, go) = (copy.fsync_entered.take().unwrap(), copy.go.take().unwrap());
    let partial = copy.dir.path().join("temp_install").join("b");
    // With "a"'s fsync held: whether "b" arrives whole within 3 s.
    let watching = tokio::spawn(async move {
        fsync_entered.await.expect("the first fsync starts");
        let mut arrived = false;
        for _ in 0..300 {
            if std::fs::read(&partial).is_ok_and(|b| b == second) {
                arrived = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        go.send(()).unwrap();
        arrived
    });
    let committed = copy.fetch_and_commit().await;
    assert!(
        watching.await.unwrap(),
        "the second file arrives while the first syncs"
    );
    assert_eq!(committed, copy.meta);
    copy.server.shutdown().await;
}
