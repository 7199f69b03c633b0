//! How a server lives with slow disks and a failing state machine: a stalled
//! disk stalls only its own group (storage calls run off the runtime's
//! workers), a slow recovery holds no server-wide lock, shutdown waits until
//! storage is quiet, and a panicking state machine stops its group.

mod runtime;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oar::core::NodeId;
use oar::runtime::{
    GroupId, GroupOptions, GroupStorage, MemStorage, Node, NodeManager, SnapshotStorage,
    StorageFailure,
};
use oar::storage::{Durable, Recovered, WriteOp};
use runtime::*;

/// Memory storage whose `persist` blocks its thread while the gate is shut
/// (at most 10 s, so that a broken runtime fails the test instead of
/// hanging it).
struct GatedStorage {
    inner: MemStorage,
    shut: Arc<(Mutex<bool>, Condvar)>,
    /// What it claims through `persist_may_block` (a lie when `true`).
    claims_never_blocks: bool,
}

impl GatedStorage {
    fn new(shut: &Arc<(Mutex<bool>, Condvar)>, claims_never_blocks: bool) -> Self {
        GatedStorage {
            inner: MemStorage::new(),
            shut: Arc::clone(shut),
            claims_never_blocks,
        }
    }

    fn wait_for_the_gate(&self) {
        let (lock, opened) = &*self.shut;
        let shut = lock.lock().unwrap();
        let _ = opened
            .wait_timeout_while(shut, Duration::from_secs(10), |shut| *shut)
            .unwrap();
    }
}

impl GroupStorage for GatedStorage {
    fn recover(&mut self) -> Result<Recovered, StorageFailure> {
        self.wait_for_the_gate();
        self.inner.recover()
    }

    fn persist(&mut self, ops: Vec<WriteOp>) -> Result<Vec<Durable>, StorageFailure> {
        self.wait_for_the_gate();
        self.inner.persist(ops)
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStorage> {
        self.inner.snapshots()
    }

    fn persist_may_block(&self) -> bool {
        !self.claims_never_blocks
    }
}

/// `group` with `server` its only member (fast timers, a recording state
/// machine) over `storage`.
fn start_group(server: &NodeManager, group: GroupId, storage: Box<dyn GroupStorage>) -> Node {
    let peers = BTreeMap::from([(NodeId(1), server.local_addr())]);
    let mut options = GroupOptions::new(group, NodeId(1), peers);
    options.raft = fast_raft(NodeId(1), group);
    let record = Arc::new(Mutex::new(Record::default()));
    server
        .add_group(options, storage, Box::new(Recorder(record)))
        .unwrap()
}

/// One worker thread: a storage call that blocked it would stop everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_stalled_disk_stalls_only_its_own_group() {
    let server = servers(1).await.remove(0);
    let shut = Arc::new((Mutex::new(false), Condvar::new()));
    let gated = GatedStorage::new(&shut, false);
    let slow = start_group(&server, GroupId(1), Box::new(gated));
    let fast = start_group(&server, GroupId(2), Box::new(MemStorage::new()));
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
    let shut = Arc::new((Mutex::new(false), Condvar::new()));
    let storage = GatedStorage::new(&shut, false);
    let node = start_group(&server, GroupId(1), Box::new(storage));
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

/// Applies commands, and panics on `boom` (a bug in user code).
struct Fragile;

impl oar::runtime::StateMachine for Fragile {
    fn on_apply(&mut self, commands: &[oar::runtime::Committed]) -> Vec<Bytes> {
        commands
            .iter()
            .map(|c| {
                assert!(&c.data[..] != b"boom", "the state machine's own bug");
                Bytes::from_static(b"ok")
            })
            .collect()
    }
}

/// A state machine that panics cannot apply anything more: the group stops
/// (fail-stop) instead of leading on, and clients get errors, not silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_state_machine_stops_its_group() {
    let server = servers(1).await.remove(0);
    let peers = BTreeMap::from([(NodeId(1), server.local_addr())]);
    let mut options = GroupOptions::new(GroupId(1), NodeId(1), peers);
    options.raft = fast_raft(NodeId(1), GroupId(1));
    let node = server
        .add_group(options, Box::new(MemStorage::new()), Box::new(Fragile))
        .unwrap();
    wait_for_leader(&[&node]).await;
    node.apply(Bytes::from_static(b"fine")).await.unwrap();

    let boom = tokio::time::timeout(
        Duration::from_secs(5),
        node.apply(Bytes::from_static(b"boom")),
    )
    .await
    .expect("the client hears back");
    assert!(boom.is_err(), "{boom:?}");
    let stopped = tokio::time::timeout(Duration::from_secs(5), async {
        while server.group(GroupId(1)).is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(stopped.is_ok(), "the group stopped");
    let after = node.apply(Bytes::from_static(b"fine")).await;
    assert!(after.is_err(), "{after:?}");
    tokio::time::timeout(Duration::from_secs(1), node.shutdown())
        .await
        .expect("shutdown of the stopped group returns");
}

/// A group whose recovery is slow (a big log or snapshot) must not hold the
/// server's routing table meanwhile: every incoming message needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_recovery_blocks_neither_lookups_nor_a_second_claim() {
    let server = servers(1).await.remove(0);
    let peers = BTreeMap::from([(NodeId(1), server.local_addr())]);
    let shut = Arc::new((Mutex::new(true), Condvar::new()));
    let options = |group| {
        let mut options = GroupOptions::new(group, NodeId(1), peers.clone());
        options.raft = fast_raft(NodeId(1), group);
        options
    };
    let starting = std::thread::spawn({
        let (server, options, shut) = (server.clone(), options(GroupId(1)), Arc::clone(&shut));
        let runtime = tokio::runtime::Handle::current();
        move || {
            // `add_group` is synchronous but starts the group's tasks.
            let _in_runtime = runtime.enter();
            let storage = GatedStorage::new(&shut, false);
            let record = Arc::new(Mutex::new(Record::default()));
            server
                .add_group(options, Box::new(storage), Box::new(Recorder(record)))
                .map(|_| ())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Meanwhile: lookups answer, and the same group cannot be claimed twice.
    let asked = std::time::Instant::now();
    assert!(server.group(GroupId(7)).is_none());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "a lookup waited for a recovery"
    );
    let record = Arc::new(Mutex::new(Record::default()));
    let twice = server.add_group(
        options(GroupId(1)),
        Box::new(MemStorage::new()),
        Box::new(Recorder(record)),
    );
    assert!(
        matches!(twice, Err(oar::runtime::Error::GroupExists(GroupId(1)))),
        "{:?}",
        twice.map(|_| ())
    );

    *shut.0.lock().unwrap() = false;
    shut.1.notify_all();
    starting.join().unwrap().expect("the slow start completes");
    assert!(server.group(GroupId(1)).is_some());
}

/// Storage that says it never blocks is called by the group task itself
/// (no log writer task, no thread hand-off): were such a storage to block
/// after all, its group would stop answering until it returns. Seen here
/// through a status request, which only the group task answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_that_never_blocks_is_called_by_the_group_task() {
    let server = servers(1).await.remove(0);
    let shut = Arc::new((Mutex::new(false), Condvar::new()));
    let storage = GatedStorage::new(&shut, true);
    let node = start_group(&server, GroupId(1), Box::new(storage));
    wait_for_leader(&[&node]).await;
    node.status().await.expect("answers while the disk is open");

    *shut.0.lock().unwrap() = true;
    let write = tokio::spawn({
        let node = node.clone();
        async move { node.apply(Bytes::from_static(b"set a 1")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = tokio::time::timeout(Duration::from_millis(300), node.status()).await;
    assert!(
        status.is_err(),
        "the group task answered while its inline storage call was stalled: {status:?}"
    );

    *shut.0.lock().unwrap() = false;
    shut.1.notify_all();
    let applied = tokio::time::timeout(Duration::from_secs(5), write).await;
    assert!(matches!(applied, Ok(Ok(Ok(_)))), "{applied:?}");
    tokio::time::timeout(Duration::from_secs(5), node.status())
        .await
        .expect("answers again")
        .expect("status");
}

/// Memory storage whose `persist` panics once `armed` (a bug in storage
/// code that runs in the group task, or in the log writer task when it
/// says it may block).
struct PanickingStorage {
    inner: MemStorage,
    armed: Arc<std::sync::atomic::AtomicBool>,
    may_block: bool,
}

impl GroupStorage for PanickingStorage {
    fn recover(&mut self) -> Result<Recovered, StorageFailure> {
        self.inner.recover()
    }

    fn persist(&mut self, ops: Vec<WriteOp>) -> Result<Vec<Durable>, StorageFailure> {
        assert!(
            !self.armed.load(std::sync::atomic::Ordering::Relaxed),
            "the storage's own bug"
        );
        self.inner.persist(ops)
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStorage> {
        self.inner.snapshots()
    }

    fn persist_may_block(&self) -> bool {
        self.may_block
    }
}

/// A storage call that panics in the group task stops the group with a
/// storage error (fail-stop), as one on the blocking pool does: the client
/// hears back and the group leaves the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_inline_storage_stops_its_group() {
    a_panicking_storage_stops_its_group(false).await;
}

/// A storage call that panics in the log writer task (under
/// `block_in_place`, on a multi-thread runtime) stops the group with a
/// storage error too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_blocking_storage_stops_its_group() {
    a_panicking_storage_stops_its_group(true).await;
}

async fn a_panicking_storage_stops_its_group(may_block: bool) {
    let server = servers(1).await.remove(0);
    let peers = BTreeMap::from([(NodeId(1), server.local_addr())]);
    let mut options = GroupOptions::new(GroupId(1), NodeId(1), peers);
    options.raft = fast_raft(NodeId(1), GroupId(1));
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storage = PanickingStorage {
        inner: MemStorage::new(),
        armed: Arc::clone(&armed),
        may_block,
    };
    let record = Arc::new(Mutex::new(Record::default()));
    let node = server
        .add_group(options, Box::new(storage), Box::new(Recorder(record)))
        .unwrap();
    wait_for_leader(&[&node]).await;
    node.apply(Bytes::from_static(b"set a 1")).await.unwrap();

    armed.store(true, std::sync::atomic::Ordering::Relaxed);
    let write = tokio::time::timeout(
        Duration::from_secs(5),
        node.apply(Bytes::from_static(b"set b 2")),
    )
    .await
    .expect("the client hears back");
    assert!(
        matches!(write, Err(oar::runtime::Error::Storage(_))),
        "{write:?}"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(5), async {
        while server.group(GroupId(1)).is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(stopped.is_ok(), "the group left the server");
}
