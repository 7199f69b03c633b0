//! Group members whose storage is their server's one shared log
//! (`SharedLog`): a restart of every server recovers each group from it,
//! and a group removed for good releases its records.

mod runtime;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oar::runtime::{GroupId, Node, NodeManager, SharedLog};
use oar::storage::{ServerLogOptions, StdFileSystem, StorageError};
use runtime::*;

const GROUPS: u64 = 12;

fn options() -> ServerLogOptions {
    ServerLogOptions {
        segment_bytes_max: 64 << 10,
        preallocate: true,
        closed_segments_max: 2,
    }
}

/// Opens server `i`'s shared log, waiting for a previous holder's lock to
/// go (its last blocking call may still be ending).
async fn open_log(dir: &Path, i: usize) -> SharedLog {
    let dir = dir.join(format!("n{i}"));
    for _ in 0..200 {
        match SharedLog::open(Arc::new(StdFileSystem), &dir, options()).await {
            Err(StorageError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(25)).await,
            other => return other.expect("shared log opens"),
        }
    }
    panic!("shared log {i} still locked after 5 s");
}

async fn start(dir: &Path) -> (Vec<NodeManager>, Vec<SharedLog>, Vec<Vec<Member>>) {
    let servers = servers(3).await;
    let mut logs = Vec::new();
    for i in 0..3 {
        logs.push(open_log(dir, i).await);
    }
    let groups = (1..=GROUPS)
        .map(|g| {
            start_group(&servers, GroupId(g), |i| {
                Store::Shared(logs[i].clone(), GroupId(g))
            })
        })
        .collect();
    (servers, logs, groups)
}

async fn stop(servers: Vec<NodeManager>, logs: Vec<SharedLog>, groups: Vec<Vec<Member>>) {
    for server in &servers {
        server.shutdown().await;
    }
    drop(groups);
    drop(logs);
}

fn command(g: u64, k: u64) -> Bytes {
    Bytes::from(format!("set k{k} g{g}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_recovers_from_its_servers_shared_log_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, logs, groups) = start(dir.path()).await;
    for (g, members) in (1..).zip(&groups) {
        let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
        for k in 0..5 {
            apply_anywhere(&nodes, command(g, k)).await;
        }
    }
    stop(servers, logs, groups).await;

    let (servers, logs, groups) = start(dir.path()).await;
    for log in &logs {
        assert_eq!(log.groups(), (1..=GROUPS).map(GroupId).collect::<Vec<_>>());
    }
    for (g, members) in (1..).zip(&groups) {
        let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
        // The restarted members apply their recovered log again.
        wait_applied(&records, 5).await;
        for record in &records {
            let applied: Vec<Bytes> = record
                .lock()
                .unwrap()
                .log
                .iter()
                .map(|(_, c)| c.clone())
                .collect();
            assert_eq!(
                applied[..5],
                (0..5).map(|k| command(g, k)).collect::<Vec<_>>()[..],
                "group {g}"
            );
        }
    }
    stop(servers, logs, groups).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_removed_for_good_releases_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, logs, mut groups) = start(dir.path()).await;
    for (g, members) in (1..).zip(&groups) {
        let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
        apply_anywhere(&nodes, command(g, 0)).await;
    }
    // Group 1 leaves every server for good.
    let removed = GroupId(1);
    for server in &servers {
        server.remove_group(removed).await.unwrap();
    }
    drop(groups.remove(0));
    for log in &logs {
        // The member's storage is released once its tasks ended.
        let mut result = log.remove_group(removed).await;
        for _ in 0..200 {
            if !matches!(result, Err(StorageError::Locked { .. })) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            result = log.remove_group(removed).await;
        }
        result.unwrap();
        assert!(!log.groups().contains(&removed));
    }
    // Enough writes to the other groups to fill segments past the bound.
    let nodes: Vec<&Node> = groups[0].iter().map(|m| &m.node).collect();
    let big = Bytes::from(vec![b'x'; 4000]);
    for _ in 0..100 {
        apply_anywhere(&nodes, big.clone()).await;
    }
    for log in &logs {
        let segments = log.segment_count().unwrap_or(0);
        assert!(
            segments <= options().closed_segments_max + 2,
            "{segments} segments"
        );
    }
    stop(servers, logs, groups).await;
    for i in 0..3 {
        let log = open_log(dir.path(), i).await;
        assert!(!log.groups().contains(&removed), "server {i}");
        assert_eq!(log.groups().len() as u64, GROUPS - 1);
        assert!(!dir.path().join(format!("n{i}/groups/1")).exists());
    }
}

#[test]
fn a_failed_flush_fails_every_later_batch_of_every_group() {
    use oar::core::{Entry, EntryPayload, LogId};
    use oar::runtime::GroupStorage;
    use oar::storage::{FsOp, MemFileSystem, WriteOp};
    let fs = MemFileSystem::new(1);
    let log = SharedLog::open_blocking(Arc::new(fs.clone()), Path::new("/s"), options()).unwrap();
    let mut one = log.storage(GroupId(1)).unwrap();
    let mut two = log.storage(GroupId(2)).unwrap();
    let entry = |i| Entry {
        id: LogId::new(1, i),
        payload: EntryPayload::Command(Bytes::from("x")),
    };
    one.persist(vec![WriteOp::Entries(vec![entry(1)].into())])
        .unwrap();
    // A second member of a group is refused while the first holds it.
    assert!(matches!(
        log.storage(GroupId(1)),
        Err(StorageError::Locked { .. })
    ));
    fs.inject_error(FsOp::Sync, 0);
    let failed = one.persist(vec![WriteOp::Entries(vec![entry(2)].into())]);
    let failed = StorageError::from_failure(failed.unwrap_err());
    assert!(
        matches!(
            failed,
            StorageError::Io {
                op: "sync_data",
                ..
            }
        ),
        "{failed:?}"
    );
    // The disk works again, but nothing written after the failure may be
    // vouched for: every group's next batch fails with the same error.
    let later = two.persist(vec![WriteOp::Entries(vec![entry(1)].into())]);
    assert_eq!(StorageError::from_failure(later.unwrap_err()), failed);
}

#[test]
fn members_persisting_at_once_each_get_their_own_completions_and_all_is_recovered() {
    use oar::core::{Entry, EntryPayload, LogId};
    use oar::runtime::GroupStorage;
    use oar::storage::{Durable, MemFileSystem, WriteOp};
    const MEMBERS: u64 = 48;
    const WRITES: u64 = 40;
    let fs = MemFileSystem::new(7);
    let log = SharedLog::open_blocking(Arc::new(fs.clone()), Path::new("/s"), options()).unwrap();
    // In each round every member's thread persists one entry at once:
    // the first flush carries a few of them, and the members queued behind
    // it have no later caller to flush for them (all wait at the next
    // round's barrier), so the turn to flush must pass from member to
    // member. Each must be answered exactly its own entry.
    let round = Arc::new(std::sync::Barrier::new(MEMBERS as usize));
    let (finished, all_finished) = std::sync::mpsc::channel();
    for g in 1..=MEMBERS {
        let mut storage = log.storage(GroupId(g)).unwrap();
        let (round, finished) = (Arc::clone(&round), finished.clone());
        std::thread::spawn(move || {
            for i in 1..=WRITES {
                round.wait();
                let entry = Entry {
                    id: LogId::new(1, i),
                    payload: EntryPayload::Command(Bytes::from(format!("g{g}i{i}"))),
                };
                let done = storage
                    .persist(vec![WriteOp::Entries(vec![entry].into())])
                    .unwrap();
                assert_eq!(done, vec![Durable::Entries(LogId::new(1, i))], "g{g}");
            }
            // The member's storage holds the log open: gone before the
            // reopen below.
            drop(storage);
            finished.send(g).unwrap();
        });
    }
    for _ in 1..=MEMBERS {
        let g = all_finished
            .recv_timeout(Duration::from_secs(30))
            .expect("every member answered (a member left waiting hangs its round)");
        assert!(g <= MEMBERS);
    }
    drop(log);
    let log = SharedLog::open_blocking(Arc::new(fs), Path::new("/s"), options()).unwrap();
    for g in 1..=MEMBERS {
        let recovered = log.storage(GroupId(g)).unwrap().recover().unwrap();
        assert_eq!(recovered.entries.len() as u64, WRITES, "g{g}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_batches_are_answered_without_a_thread_each_and_a_failed_flush_fails_them_all() {
    use oar::core::{Entry, EntryPayload, LogId};
    use oar::runtime::GroupStorage;
    use oar::storage::{Durable, FsOp, MemFileSystem, WriteOp};
    const MEMBERS: u64 = 64;
    let fs = MemFileSystem::new(3);
    let log = SharedLog::open_blocking(Arc::new(fs.clone()), Path::new("/s"), options()).unwrap();
    let mut members: Vec<_> = (1..=MEMBERS)
        .map(|g| log.storage(GroupId(g)).unwrap())
        .collect();
    // Every member queues entry `i` at once; flushes carry them in batches.
    let queue_all = |members: &mut Vec<_>, i| -> Vec<oar::runtime::PersistFuture> {
        members
            .iter_mut()
            .map(|m: &mut oar::runtime::SharedLogStorage| {
                let entry = Entry {
                    id: LogId::new(1, i),
                    payload: EntryPayload::Command(Bytes::from("x")),
                };
                m.persist_queued(vec![WriteOp::Entries(vec![entry].into())])
                    .unwrap_or_else(|_| panic!("the shared log queues"))
            })
            .collect()
    };
    for i in 1..=10 {
        let answers = queue_all(&mut members, i);
        for answer in answers {
            let done = tokio::time::timeout(Duration::from_secs(30), answer)
                .await
                .expect("answered")
                .unwrap();
            assert_eq!(done, vec![Durable::Entries(LogId::new(1, i))]);
        }
    }
    fs.inject_error(FsOp::Sync, 0);
    for answer in queue_all(&mut members, 11) {
        let failed = tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .expect("answered");
        let failed = StorageError::from_failure(failed.unwrap_err());
        assert!(matches!(failed, StorageError::Io { .. }), "{failed:?}");
    }
}
