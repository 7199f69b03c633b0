//! On-disk state machines: a machine that keeps its state (with its applied
//! point) in a store of its own tells the runtime where it stands at a
//! restart; the runtime then skips the snapshot and replays only the log
//! after that point, falls back to the snapshot when the store is behind
//! it (or lost), and refuses a point its log does not hold.

mod runtime;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use oar::core::{LogId, LogIndex, NodeId};
use oar::runtime::{
    Committed, Error, GroupId, GroupOptions, MemStorage, Node, NodeManager, SnapshotError,
    SnapshotReader, SnapshotView, StateMachine, snapshot_file,
};
use runtime::*;

/// A sum and the last entry added to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sum {
    applied: LogId,
    total: u64,
}

impl Sum {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(24);
        bytes.extend_from_slice(&self.applied.term.0.to_le_bytes());
        bytes.extend_from_slice(&self.applied.index.0.to_le_bytes());
        bytes.extend_from_slice(&self.total.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<Sum, SnapshotError> {
        let word = |at: usize| {
            bytes
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| SnapshotError::Invalid("short sum".into()))
        };
        Ok(Sum {
            applied: LogId::new(word(0)?, word(8)?),
            total: word(16)?,
        })
    }
}

/// What the test sees of the machine: its "disk" and what it was handed.
#[derive(Default)]
struct Disk {
    /// The durable state (`None`: an empty store).
    stored: Option<Sum>,
    /// Whether applies are made durable (off: they stay in memory, lost at
    /// the restart).
    persisting: bool,
    /// The indexes of the commands `on_apply` saw.
    seen: Vec<LogIndex>,
    /// The snapshots loaded.
    loaded: Vec<LogId>,
}

/// A summing state machine on a simulated disk shared with the test.
struct DiskSum {
    live: Sum,
    disk: Arc<Mutex<Disk>>,
}

impl DiskSum {
    fn new(disk: &Arc<Mutex<Disk>>) -> Self {
        DiskSum {
            live: Sum::default(),
            disk: Arc::clone(disk),
        }
    }
}

impl StateMachine for DiskSum {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut disk = self.disk.lock().unwrap();
        let answers = commands
            .iter()
            .map(|c| {
                let value: u64 = std::str::from_utf8(&c.data).unwrap().parse().unwrap();
                self.live.total += value;
                self.live.applied = c.id;
                disk.seen.push(c.id.index);
                Bytes::from(self.live.total.to_string())
            })
            .collect();
        if disk.persisting {
            disk.stored = Some(self.live);
        }
        answers
    }

    fn durable_applied(&mut self) -> Result<Option<LogId>, SnapshotError> {
        let stored = self.disk.lock().unwrap().stored;
        self.live = stored.unwrap_or_default();
        Ok(stored.map(|s| s.applied))
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        Ok(snapshot_file("sum", self.live.encode()))
    }

    fn on_snapshot_load(
        &mut self,
        last: LogId,
        snapshot: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        self.live = Sum::decode(&snapshot.read_file("sum")?)?;
        let mut disk = self.disk.lock().unwrap();
        // The loaded state replaces the store, durably.
        disk.stored = Some(self.live);
        disk.loaded.push(last);
        Ok(())
    }

    fn may_block(&self) -> bool {
        true
    }
}

/// A one-member group, its storage and the machine's disk after: 10
/// commands (1..=10), a snapshot, 5 more made durable, then 3 applied but
/// not made durable. Returns the snapshot's point and the indexes of the 8
/// commands after it and of the 3 unpersisted ones.
struct History {
    options: GroupOptions,
    store: MemStorage,
    disk: Arc<Mutex<Disk>>,
    snapshot: LogId,
    after_snapshot: Vec<LogIndex>,
    unpersisted: Vec<LogIndex>,
}

/// 1 + 2 + ... + 18.
const TOTAL: u64 = 171;

async fn history(server: &NodeManager, group: GroupId) -> History {
    let options = GroupOptions {
        raft: fast_raft(NodeId(1), group),
        snapshot_interval: None,
        ..GroupOptions::new(group, NodeId(1), [(NodeId(1), server.local_addr())].into())
    };
    let store = MemStorage::new();
    let disk = Arc::new(Mutex::new(Disk {
        persisting: true,
        ..Disk::default()
    }));
    let node = server
        .add_group(options.clone(), store.clone(), DiskSum::new(&disk))
        .unwrap();
    wait_for_leader(&[&node]).await;
    for value in 1..=10u64 {
        node.apply(value.to_string().into()).await.unwrap();
    }
    let snapshot = node.snapshot().await.unwrap();
    let mut after_snapshot = Vec::new();
    for value in 11..=15u64 {
        after_snapshot.push(node.apply(value.to_string().into()).await.unwrap().index);
    }
    disk.lock().unwrap().persisting = false;
    let mut unpersisted = Vec::new();
    for value in 16..=18u64 {
        unpersisted.push(node.apply(value.to_string().into()).await.unwrap().index);
    }
    after_snapshot.extend(&unpersisted);
    node.shutdown().await;
    let mut disk_now = disk.lock().unwrap();
    disk_now.seen.clear();
    disk_now.persisting = true;
    drop(disk_now);
    History {
        options,
        store,
        disk,
        snapshot,
        after_snapshot,
        unpersisted,
    }
}

/// Restarts the group on `history`'s storage and disk, once it leads.
async fn restart(server: &NodeManager, history: &History) -> Node {
    let node = server
        .add_group(
            history.options.clone(),
            history.store.clone(),
            DiskSum::new(&history.disk),
        )
        .unwrap();
    wait_for_leader(&[&node]).await;
    node
}

/// Restarts the group on `history`'s storage and disk; returns the total
/// after one more command (19), which is applied after everything before.
async fn restart_and_sum(server: &NodeManager, history: &History) -> u64 {
    let node = restart(server, history).await;
    let applied = node.apply("19".into()).await.unwrap();
    node.shutdown().await;
    history.disk.lock().unwrap().seen.pop();
    std::str::from_utf8(&applied.response)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replays_only_what_the_store_had_not_persisted() {
    let server = servers(1).await.remove(0);
    let history = history(&server, GroupId(1)).await;
    let total = restart_and_sum(&server, &history).await;
    let (loaded, seen) = {
        let disk = history.disk.lock().unwrap();
        (disk.loaded.clone(), disk.seen.clone())
    };
    assert_eq!(loaded, Vec::<LogId>::new(), "the snapshot is not loaded");
    assert_eq!(
        seen, history.unpersisted,
        "only the commands after the durable point are applied again"
    );
    assert_eq!(total, TOTAL + 19, "nothing is lost or applied twice");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_the_snapshot_or_lost_loads_the_snapshot_and_ends_whole() {
    let server = servers(1).await.remove(0);
    for (group, stale) in [(GroupId(2), true), (GroupId(3), false)] {
        let history = history(&server, group).await;
        history.disk.lock().unwrap().stored = match stale {
            // Durable through the 5th command only, behind the snapshot.
            true => Some(Sum {
                applied: LogId::new(history.snapshot.term.0, history.snapshot.index.0 - 5),
                total: 15,
            }),
            false => None,
        };
        let total = restart_and_sum(&server, &history).await;
        let (loaded, seen) = {
            let disk = history.disk.lock().unwrap();
            (disk.loaded.clone(), disk.seen.clone())
        };
        assert_eq!(loaded, vec![history.snapshot], "stale: {stale}");
        assert_eq!(seen, history.after_snapshot, "stale: {stale}");
        assert_eq!(total, TOTAL + 19, "stale: {stale}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_the_log_does_not_hold_is_refused() {
    let server = servers(1).await.remove(0);
    let history = history(&server, GroupId(4)).await;
    let last = *history.unpersisted.last().unwrap();
    let term = history.snapshot.term.0;
    for claimed in [
        // Past the log's end.
        LogId::new(term, last.0 + 100),
        // An entry the log holds, but of another term.
        LogId::new(term + 1, last.0),
        // The snapshot's index, of another term.
        LogId::new(term + 1, history.snapshot.index.0),
    ] {
        history.disk.lock().unwrap().stored = Some(Sum {
            applied: claimed,
            total: 0,
        });
        let started = server.add_group(
            history.options.clone(),
            history.store.clone(),
            DiskSum::new(&history.disk),
        );
        match started {
            Err(Error::AppliedNotInLog {
                claimed: c,
                log_last,
            }) => {
                assert_eq!(c, claimed);
                assert_eq!(log_last.index, last);
            }
            Err(e) => panic!("{claimed}: wrong error {e}"),
            Ok(_) => panic!("{claimed}: the group started"),
        }
    }
    // The store removed, the same storage starts from the snapshot.
    history.disk.lock().unwrap().stored = None;
    assert_eq!(restart_and_sum(&server, &history).await, TOTAL + 19);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_the_snapshot_by_no_ops_only_is_not_reloaded() {
    let server = servers(1).await.remove(0);
    let history = history(&server, GroupId(5)).await;
    // Restarted, the leader's no-op follows the last command; a snapshot
    // taken then is past the store's point, by that no-op only.
    let node = restart(&server, &history).await;
    let last_command = *history.unpersisted.last().unwrap();
    wait_until(|| node.applied_index() > last_command).await;
    let snapshot = node.snapshot().await.unwrap();
    node.shutdown().await;
    let stored = {
        let mut disk = history.disk.lock().unwrap();
        disk.seen.clear();
        disk.stored.unwrap().applied
    };
    assert_eq!(stored.index, last_command);
    assert!(snapshot.index > stored.index, "{snapshot} after {stored}");

    let total = restart_and_sum(&server, &history).await;
    let (loaded, seen) = {
        let disk = history.disk.lock().unwrap();
        (disk.loaded.clone(), disk.seen.clone())
    };
    assert_eq!(loaded, Vec::<LogId>::new(), "the snapshot is not loaded");
    assert_eq!(seen, Vec::<LogIndex>::new(), "nothing is applied again");
    assert_eq!(total, TOTAL + 19);
    server.shutdown().await;
}
