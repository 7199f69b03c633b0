//! A group whose disk stalls must not stall the other groups of its server:
//! the log writer's storage calls run off the runtime's workers.

mod runtime;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oar::core::NodeId;
use oar::runtime::{
    GroupId, GroupOptions, GroupStorage, MemStorage, SnapshotStorage, StorageFailure,
};
use oar::storage::{Durable, Recovered, WriteOp};
use runtime::*;

/// Memory storage whose `persist` blocks its thread while the gate is shut
/// (at most 10 s, so that a broken runtime fails the test instead of
/// hanging it).
struct GatedStorage {
    inner: MemStorage,
    shut: Arc<(Mutex<bool>, Condvar)>,
}

impl GroupStorage for GatedStorage {
    fn recover(&mut self) -> Result<Recovered, StorageFailure> {
        self.inner.recover()
    }

    fn persist(&mut self, ops: Vec<WriteOp>) -> Result<Vec<Durable>, StorageFailure> {
        let (lock, opened) = &*self.shut;
        let shut = lock.lock().unwrap();
        let _ = opened
            .wait_timeout_while(shut, Duration::from_secs(10), |shut| *shut)
            .unwrap();
        self.inner.persist(ops)
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStorage> {
        self.inner.snapshots()
    }
}

/// One worker thread: a storage call that blocked it would stop everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_stalled_disk_stalls_only_its_own_group() {
    let server = servers(1).await.remove(0);
    let peers = BTreeMap::from([(NodeId(1), server.local_addr())]);
    let shut = Arc::new((Mutex::new(false), Condvar::new()));
    let start = |group: GroupId, storage: Box<dyn GroupStorage>| {
        let mut options = GroupOptions::new(group, NodeId(1), peers.clone());
        options.raft = fast_raft(NodeId(1), group);
        let record = Arc::new(Mutex::new(Record::default()));
        server
            .add_group(options, storage, Box::new(Recorder(record)))
            .unwrap()
    };
    let gated = GatedStorage {
        inner: MemStorage::new(),
        shut: Arc::clone(&shut),
    };
    let slow = start(GroupId(1), Box::new(gated));
    let fast = start(GroupId(2), Box::new(MemStorage::new()));
    wait_for_leader(&[&slow]).await;
    wait_for_leader(&[&fast]).await;

    *shut.0.lock().unwrap() = true;
    let stalled = tokio::spawn({
        let slow = slow.clone();
        async move { slow.apply(Bytes::from_static(b"set a 1")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let applied = tokio::time::timeout(
        Duration::from_secs(3),
        fast.apply(Bytes::from_static(b"set b 2")),
    )
    .await;
    assert!(
        matches!(applied, Ok(Ok(_))),
        "the other group's write must complete while the disk is stalled: {applied:?}"
    );
    assert!(
        !stalled.is_finished(),
        "the stalled group's write waits for its disk"
    );

    *shut.0.lock().unwrap() = false;
    shut.1.notify_all();
    let applied = tokio::time::timeout(Duration::from_secs(5), stalled).await;
    assert!(matches!(applied, Ok(Ok(Ok(_)))), "{applied:?}");
}

/// Every `shutdown` call, concurrent ones included, resolves only once the
/// group's storage is quiet, so that the caller may reopen it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shutdown_waits_until_the_disk_is_quiet() {
    let server = servers(1).await.remove(0);
    let peers = BTreeMap::from([(NodeId(1), server.local_addr())]);
    let shut = Arc::new((Mutex::new(false), Condvar::new()));
    let mut options = GroupOptions::new(GroupId(1), NodeId(1), peers);
    options.raft = fast_raft(NodeId(1), GroupId(1));
    let storage = GatedStorage {
        inner: MemStorage::new(),
        shut: Arc::clone(&shut),
    };
    let record = Arc::new(Mutex::new(Record::default()));
    let node = server
        .add_group(options, Box::new(storage), Box::new(Recorder(record)))
        .unwrap();
    wait_for_leader(&[&node]).await;

    *shut.0.lock().unwrap() = true;
    let write = tokio::spawn({
        let node = node.clone();
        async move { node.apply(Bytes::from_static(b"set a 1")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let first = tokio::spawn({
        let node = node.clone();
        async move { node.shutdown().await }
    });
    let second = tokio::spawn({
        let node = node.clone();
        async move { node.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !first.is_finished() && !second.is_finished(),
        "a shutdown returned while a disk write was still running"
    );
    assert!(
        server.group(GroupId(1)).is_some(),
        "still registered while stopping"
    );

    *shut.0.lock().unwrap() = false;
    shut.1.notify_all();
    tokio::time::timeout(Duration::from_secs(5), async {
        first.await.unwrap();
        second.await.unwrap();
    })
    .await
    .expect("both shutdowns finish once the disk is quiet");
    assert!(server.group(GroupId(1)).is_none());
    let _ = write.await;
    // A third call on the stopped member returns at once.
    tokio::time::timeout(Duration::from_secs(1), node.shutdown())
        .await
        .expect("shutdown of a stopped member returns");
}
