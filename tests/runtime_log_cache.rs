//! A log bounded in memory in the production runtime, over loopback TCP and
//! real files: a follower stopped while the group wrote on catches up from
//! entries the leader reads back from its disk, without a snapshot.

mod runtime;

use std::path::Path;

use bytes::Bytes;
use oar::core::{NodeId, RaftOptions};
use oar::runtime::{GroupId, GroupOptions, Node, NodeManager};
use runtime::*;

/// A 1 KiB log cache (a few dozen of these commands), no snapshots.
fn options(group: GroupId, id: NodeId, servers: &[NodeManager]) -> GroupOptions {
    GroupOptions {
        raft: RaftOptions {
            log_cache_bytes_max: Some(1024),
            ..fast_raft(id, group)
        },
        snapshot_interval: None,
        ..GroupOptions::new(group, id, peers_of(servers))
    }
}

fn start(servers: &[NodeManager], group: GroupId, dir: &Path, i: usize) -> Member {
    let id = NodeId(i as u64 + 1);
    let store = Store::Disk(dir.join(format!("n{i}")));
    start_member_with_options(&servers[i], options(group, id, servers), store)
}

async fn write_range(nodes: &[&Node], range: std::ops::Range<usize>) {
    for i in range {
        apply_anywhere(nodes, Bytes::from(format!("set k{i} v{i}"))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_catches_up_from_the_leaders_disk_without_a_snapshot() {
    let servers = servers(3).await;
    let group = GroupId(17);
    let dir = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = (0..3)
        .map(|i| start(&servers, group, dir.path(), i))
        .collect();
    let nodes: Vec<Node> = members.iter().map(|m| m.node.clone()).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    write_range(&refs, 0..20).await;
    let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
    wait_applied(&records, 20).await;

    members[2].node.shutdown().await;
    let stopped_at = 20;
    write_range(&refs[..2], 20..400).await;
    let leader = wait_for_leader(&refs[..2]).await;
    let status = members[leader].node.status().await.unwrap();
    assert!(
        status.evicted_through.0 > 200,
        "the leader holds only its newest entries: {status:?}"
    );
    assert_eq!(status.snapshot, None);

    members[2] = start(&servers, group, dir.path(), 2);
    let record = members[2].record.clone();
    wait_until(|| record.lock().unwrap().map.len() == 400).await;
    let record = record.lock().unwrap();
    assert!(record.loaded.is_empty(), "no snapshot: {:?}", record.loaded);
    let keys: Vec<String> = (0..400).map(|i| format!("k{i}")).collect();
    assert!(keys.iter().all(|k| record.map.contains_key(k)));
    assert!(
        record.log.len() >= 400 - stopped_at,
        "replayed from the log"
    );
}
