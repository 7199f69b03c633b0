//! Snapshots in the production runtime over loopback TCP and real files: a
//! node restarted after the others compacted their logs catches up by
//! installing the leader's snapshot (pulled in chunks through the file
//! service); a node restarts from its own snapshot and replays only the log
//! after it; a state machine without snapshots gets a typed error.

mod runtime;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use oar::core::{LogIndex, NodeId, RaftOptions};
use oar::runtime::{Committed, Error, GroupId, GroupOptions, Node, NodeManager, StateMachine};
use runtime::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Options of member `id`: snapshots only on request, a short margin.
fn options(group: GroupId, id: NodeId, servers: &[NodeManager]) -> GroupOptions {
    GroupOptions {
        raft: RaftOptions {
            compaction_margin: 10,
            ..fast_raft(id, group)
        },
        snapshot_interval: None,
        ..GroupOptions::new(group, id, peers_of(servers))
    }
}

/// Where member `i` keeps its storage.
fn disk(dir: &Path, i: usize) -> Store {
    Store::Disk(dir.join(format!("n{i}")))
}

/// Starts member `i + 1` of `group` on `servers[i]`, on disk under `dir`.
fn start(servers: &[NodeManager], group: GroupId, dir: &Path, i: usize) -> Member {
    let id = NodeId(i as u64 + 1);
    start_member_with_options(&servers[i], options(group, id, servers), disk(dir, i))
}

/// Starts three members on disk under `dir` and writes `count` commands,
/// applied everywhere. Returns the members and their handles.
async fn start_and_write(
    servers: &[NodeManager],
    group: GroupId,
    dir: &Path,
    count: usize,
) -> (Vec<Member>, Vec<Node>) {
    let members: Vec<Member> = (0..3).map(|i| start(servers, group, dir, i)).collect();
    let nodes: Vec<Node> = members.iter().map(|m| m.node.clone()).collect();
    write_range(&nodes.iter().collect::<Vec<_>>(), 0..count).await;
    let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
    wait_applied(&records, count).await;
    (members, nodes)
}

/// Has the leader and the other live member save snapshots; returns the
/// leader's.
async fn snapshot_both(members: &[Member], leader: usize) -> oar::core::LogId {
    let snapshot = members[leader]
        .node
        .snapshot()
        .await
        .expect("snapshot saved");
    members[1 - leader]
        .node
        .snapshot()
        .await
        .expect("snapshot saved");
    snapshot
}

async fn write_range(nodes: &[&Node], range: std::ops::Range<usize>) {
    for i in range {
        apply_anywhere(nodes, Bytes::from(format!("set k{} v{i}", i % 50))).await;
    }
}

/// Waits until `member` holds the leader's map and applied index.
async fn wait_converged(member: &Member, leader: &Member) {
    for _ in 0..400 {
        let same_map = member.record.lock().unwrap().map == leader.record.lock().unwrap().map;
        if same_map && member.node.applied_index() >= leader.node.applied_index() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = member.node.status().await;
    let leader_status = leader.node.status().await;
    panic!(
        "{} did not converge with the leader: {status:?} loaded {:?}; leader {leader_status:?}",
        member.node.id(),
        member.record.lock().unwrap().loaded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_compaction_catches_up_through_a_snapshot() {
    let servers = servers(3).await;
    let group = GroupId(7);
    let dir = tempfile::tempdir().unwrap();
    let (mut members, nodes) = start_and_write(&servers, group, dir.path(), 200).await;
    let refs: Vec<&Node> = nodes.iter().collect();

    members[2].node.shutdown().await;
    write_range(&refs[..2], 200..500).await;
    let leader = wait_for_leader(&refs[..2]).await;
    let snapshot = snapshot_both(&members, leader).await;
    let status = members[leader].node.status().await.unwrap();
    assert_eq!(status.snapshot, Some(snapshot));
    assert_eq!(
        status.first_index,
        LogIndex(snapshot.index.0 - 10 + 1),
        "compacted behind the margin"
    );
    assert!(status.first_index.0 > 250, "node 3's next entries are gone");

    members[2] = start(&servers, group, dir.path(), 2);
    wait_converged(&members[2], &members[leader]).await;
    let loaded = members[2].record.lock().unwrap().loaded.clone();
    assert_eq!(
        loaded.len(),
        1,
        "installed exactly one snapshot: {loaded:?}"
    );
    assert!(loaded[0] >= snapshot.index);
    let status = members[2].node.status().await.unwrap();
    assert!(
        status.first_index > snapshot.index,
        "its log restarts after the snapshot"
    );
    assert!(status.snapshot.is_some_and(|s| s.index >= snapshot.index));

    // It replicates normally from there, and restarts from the installed snapshot.
    let nodes: Vec<Node> = members.iter().map(|m| m.node.clone()).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    write_range(&refs, 500..520).await;
    wait_converged(&members[2], &members[leader]).await;
    members[2].node.shutdown().await;
    members[2] = start(&servers, group, dir.path(), 2);
    wait_converged(&members[2], &members[leader]).await;
    assert_eq!(
        members[2].record.lock().unwrap().loaded.len(),
        1,
        "loaded its own snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_from_its_snapshot_and_replays_only_the_log_after_it() {
    let servers = servers(3).await;
    let group = GroupId(8);
    let dir = tempfile::tempdir().unwrap();
    let (mut members, nodes) = start_and_write(&servers, group, dir.path(), 100).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
    let snapshot = members[1].node.snapshot().await.expect("snapshot saved");
    write_range(&refs, 100..130).await;
    wait_applied(&records, 130).await;
    let before = members[1].record.lock().unwrap().map.clone();

    members[1].node.shutdown().await;
    members[1] = start(&servers, group, dir.path(), 1);
    let leader = wait_for_leader(&refs_of(&members)).await;
    wait_converged(&members[1], &members[leader]).await;
    let record = members[1].record.lock().unwrap();
    assert_eq!(record.loaded, [snapshot.index]);
    assert_eq!(record.map, before);
    assert!(
        record.log.iter().all(|(index, _)| *index > snapshot.index),
        "nothing the snapshot covers is applied again"
    );
    assert_eq!(record.log.len(), 30, "the 30 commands after the snapshot");
}

/// A TCP proxy to `target` that cuts the first `cuts` connections once
/// `after` bytes went from the server to the client; returns its address
/// and how many connections it cut.
async fn cutting_proxy(
    target: SocketAddr,
    after: usize,
    cuts: usize,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cut = Arc::new(AtomicUsize::new(0));
    let counter = cut.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(target).await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                });
                let mut buf = vec![0u8; 64 << 10];
                let mut sent = 0;
                while let Ok(n) = from_server.read(&mut buf).await {
                    if n == 0 || to_client.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                    if sent >= after && counter.load(Ordering::SeqCst) < cuts {
                        counter.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    (addr, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_interrupted_by_broken_connections_resumes_and_completes() {
    let servers = servers(3).await;
    let group = GroupId(10);
    let dir = tempfile::tempdir().unwrap();
    // Node 3 reaches the others only through proxies that cut the first
    // two connections carrying more than 1.5 MiB: the snapshot copies.
    let mut proxied = peers_of(&servers);
    let mut cuts = Vec::new();
    for id in [NodeId(1), NodeId(2)] {
        let (addr, cut) = cutting_proxy(proxied[&id], 3 << 19, 2).await;
        proxied.insert(id, addr);
        cuts.push(cut);
    }
    let node3_options = || GroupOptions {
        peers: proxied.clone(),
        ..options(group, NodeId(3), &servers)
    };
    let mut members: Vec<Member> = (0..2)
        .map(|i| start(&servers, group, dir.path(), i))
        .collect();
    members.push(start_member_with_options(
        &servers[2],
        node3_options(),
        disk(dir.path(), 2),
    ));
    let nodes: Vec<Node> = members.iter().map(|m| m.node.clone()).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    // About 3 MiB of state: 48 keys of 64 KiB.
    let big = "x".repeat(64 << 10);
    for i in 0..48 {
        apply_anywhere(&refs, Bytes::from(format!("set big{i} {big}"))).await;
    }
    members[2].node.shutdown().await;
    write_range(&refs[..2], 0..100).await;
    let leader = wait_for_leader(&refs[..2]).await;
    snapshot_both(&members, leader).await;

    members[2] = start_member_with_options(&servers[2], node3_options(), disk(dir.path(), 2));
    wait_converged(&members[2], &members[leader]).await;
    assert_eq!(members[2].record.lock().unwrap().loaded.len(), 1);
    let cut: usize = cuts.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    assert_eq!(cut, 2, "the copy was cut twice and still completed");
}

fn refs_of(members: &[Member]) -> Vec<&Node> {
    members.iter().map(|m| &m.node).collect()
}

/// Applies nothing but counts; no snapshot support.
struct NoSnapshots;

impl StateMachine for NoSnapshots {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        vec![Bytes::new(); commands.len()]
    }
}

#[tokio::test]
async fn a_snapshot_request_to_a_state_machine_without_support_is_a_typed_error() {
    let servers = servers(1).await;
    let group = GroupId(9);
    let node = servers[0]
        .add_group(
            options(group, NodeId(1), &servers),
            Store::Mem(Default::default()).open(),
            Box::new(NoSnapshots),
        )
        .unwrap();
    wait_for_leader(&[&node]).await;
    node.apply(Bytes::from_static(b"x")).await.unwrap();
    match node.snapshot().await {
        Err(Error::StateMachine(message)) => assert!(message.contains("not supported")),
        other => panic!("expected a state machine error, got {other:?}"),
    }
    let status = node.status().await.unwrap();
    assert_eq!((status.snapshot, status.first_index), (None, LogIndex(1)));
}

/// The apply task's save and the installer (a snapshot from the leader) may
/// write at the same time on different threads, while the file service
/// reads: they must not share a half-written temp directory, and a read
/// must not see a snapshot half removed.
#[test]
fn concurrent_saves_each_commit_whole() {
    use oar::core::{LogId, Membership};
    use oar::runtime::{DiskSnapshots, SnapshotStorage};
    use oar::storage::StdFileSystem;

    let dir = tempfile::tempdir().unwrap();
    let snapshots = Arc::new(DiskSnapshots::open(Arc::new(StdFileSystem), dir.path()).unwrap());
    let membership = Membership::with_voters([NodeId(1)]);
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let snapshots = Arc::clone(&snapshots);
            let membership = membership.clone();
            std::thread::spawn(move || {
                for round in 0..15u64 {
                    let index = 1 + round * 2 + t;
                    // Thread 1 writes as the installer does, thread 0 as
                    // the apply task: each in its own temp directory.
                    let mut writer = snapshots.begin(t == 1).unwrap();
                    for f in 0..4 {
                        let data = vec![(index % 251) as u8; 64 << 10];
                        writer.write_file(&format!("part{f}"), &data).unwrap();
                    }
                    snapshots
                        .commit(writer, LogId::new(1, index), membership.clone())
                        .unwrap_or_else(|e| panic!("save of {index} failed: {e}"));
                }
            })
        })
        .collect();
    // Meanwhile the file service reads chunks of whatever is newest: each
    // read gives the right bytes or says the snapshot was replaced.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (snapshots, done) = (Arc::clone(&snapshots), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let Ok(Some(meta)) = snapshots.latest() else {
                    continue;
                };
                let index = meta.last_included.index.0;
                match snapshots.read_chunk(meta.last_included, "part1", 4096, 4096) {
                    Ok(data) => {
                        assert!(
                            data.len() == 4096 && data.iter().all(|&b| b == (index % 251) as u8)
                        );
                        reads += 1;
                    }
                    Err(oar::runtime::SnapshotReadError::NotFound { .. }) => {}
                    Err(e) => panic!("read of snapshot {index} failed: {e}"),
                }
            }
            reads
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0, "the reader read something");
    let snapshot = snapshots.open().unwrap().expect("a snapshot");
    assert_eq!(snapshot.meta().last_included, LogId::new(1, 30));
    assert_eq!(snapshot.meta().files.len(), 4);
    for f in &snapshot.meta().files {
        let data = snapshot.read_file(&f.name).unwrap();
        assert!(data.len() == 64 << 10 && data.iter().all(|&b| b == 30));
    }
}
