//! Opening a group's on-disk storage from a service: `DiskStorage::open`
//! runs its blocking, fsyncing recovery off the runtime's workers, and its
//! failures are typed.

use std::sync::Arc;
use std::sync::mpsc;

use oar::prelude::*;

#[path = "runtime/gated_fs.rs"]
mod gated_fs;
use gated_fs::{Gate, GatePoint, GatedFs};

/// On a runtime with a single thread, an open that blocks inside the file
/// system still lets another task run: the open is off the runtime's
/// thread. (Run inline, as `open` once did, the gate's task never runs
/// and the open fails after the gate's five seconds: checked by making
/// `open` call `open_blocking` directly.)
#[tokio::test(flavor = "current_thread")]
async fn an_open_that_blocks_does_not_block_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (go, gate) = mpsc::channel();
    let fs = Arc::new(GatedFs::new(
        GatePoint::CreateDirAll,
        Gate {
            entered: None,
            go: gate,
        },
    ));
    let opener = tokio::spawn({
        let dir = dir.path().join("group");
        async move { DiskStorage::open(fs, &dir, LogOptions::default()).await }
    });
    // Runs only if the runtime's one thread is free while the open blocks.
    tokio::spawn(async move { go.send(()).unwrap() });
    let opened = opener.await.unwrap();
    assert!(opened.is_ok(), "{:?}", opened.err());
}

/// An embedder tells a directory in use from a damaged one by the error's
/// type, not its text: a second open of a directory is `Locked`; a
/// term/vote file of garbage is `Corruption` naming it; and through
/// `add_group`, the runtime's `Error::Storage` carries the storage's error
/// as it was.
#[tokio::test]
async fn a_locked_directory_and_corruption_are_told_apart_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let open = |path: std::path::PathBuf| async move {
        DiskStorage::open(Arc::new(StdFileSystem), &path, LogOptions::default()).await
    };
    let first = open(dir.path().join("a")).await.expect("opens");
    let second = open(dir.path().join("a")).await;
    assert!(
        matches!(&second, Err(StorageError::Locked { path }) if path.ends_with("a")),
        "{second:?}"
    );
    drop(first);

    let damaged = dir.path().join("b");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(damaged.join("raft_meta"), b"not a meta file at all").unwrap();
    let opened = open(damaged).await;
    assert!(
        matches!(&opened, Err(StorageError::Corruption { path, .. }) if path.ends_with("raft_meta")),
        "{opened:?}"
    );

    // The runtime's error keeps the type: a storage whose recovery fails
    // with `Locked` fails `add_group` with `Error::Storage(Locked)`.
    let server = NodeManager::bind(
        "127.0.0.1:0".parse().unwrap(),
        Security::insecure("storage-open"),
        TransportOptions::default(),
    )
    .await
    .unwrap();
    let peers = [(NodeId(1), server.local_addr())].into();
    let locked = StorageError::Locked {
        path: dir.path().join("c"),
    };
    let added = server.add_group(
        GroupOptions::new(GroupId(1), NodeId(1), peers),
        FailingRecovery(locked.clone()),
        Sink,
    );
    assert_eq!(added.err(), Some(Error::Storage(locked)));
    server.shutdown().await;
}

/// An embedder's own storage failure comes back as `StorageError::Other`,
/// downcastable to its own type.
#[tokio::test]
async fn a_foreign_storage_failure_keeps_its_type() {
    #[derive(Debug, thiserror::Error)]
    #[error("the bucket is gone")]
    struct BucketGone;

    let failure: Box<dyn std::error::Error + Send + Sync> = Box::new(BucketGone);
    let error = StorageError::from_failure(failure);
    let StorageError::Other(inner) = &error else {
        panic!("{error:?}")
    };
    assert!(inner.downcast_ref::<BucketGone>().is_some(), "{error:?}");
    assert_eq!(error.clone(), error, "Clone, and equal to its clone");
}

/// A storage whose recovery fails with a given error.
struct FailingRecovery(StorageError);

impl GroupStorage for FailingRecovery {
    fn recover(&mut self) -> Result<oar::storage::Recovered, oar::runtime::StorageFailure> {
        Err(Box::new(self.0.clone()))
    }
    fn persist(
        &mut self,
        _: Vec<oar::storage::WriteOp>,
    ) -> Result<Vec<oar::storage::Durable>, oar::runtime::StorageFailure> {
        unreachable!("never recovered")
    }
    fn snapshots(&self) -> Arc<dyn oar::runtime::SnapshotStorage> {
        MemStorage::new().snapshots()
    }
}

/// A state machine that answers nothing.
struct Sink;

impl StateMachine for Sink {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        vec![Bytes::new(); commands.len()]
    }
}
