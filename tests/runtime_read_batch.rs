//! Read batches (`runtime/read_batch.rs`) over real loopback TCP: however
//! many `ReadIndex` barriers run at once on a member, its core holds at
//! most one read of theirs at a time (one per batch), on the leader and on
//! a follower, and every barrier still sees the completed write.

mod runtime;

use bytes::Bytes;
use futures_util::future::join_all;
use oar::core::NodeId;
use oar::runtime::{GroupId, GroupOptions, Node, ReadPolicy};
use runtime::*;

/// Concurrent readers a round.
const READERS: usize = 64;

/// Barriers each reader asks for in a row, a round.
const BARRIERS_PER_READER: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_barriers_on_a_member_share_one_core_read_at_a_time() {
    let servers = servers(3).await;
    let group = GroupId(1);
    let peers = peers_of(&servers);
    let members: Vec<Member> = servers
        .iter()
        .enumerate()
        .map(|(i, server)| {
            let id = NodeId(i as u64 + 1);
            let mut options = GroupOptions::new(group, id, peers.clone());
            options.raft = fast_raft(id, group);
            // A second read in a core is refused (`Busy`): barriers that
            // each reached the core, or two batches at once, would fail.
            options.raft.read_pending_max = 1;
            start_member_with_options(server, options, Store::Mem(Default::default()))
        })
        .collect();
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    let follower = (leader + 1) % 3;
    for round in 0..10 {
        let key = format!("k{round}");
        let command = Bytes::from(format!("set {key} {round}"));
        nodes[leader].apply(command).await.expect("write commits");
        // One member at a time: the leader's core also counts a follower's
        // request for a read index against the same bound.
        for at in [leader, follower] {
            // Closed loops: readers come back while a batch is in flight.
            let readers = (0..READERS).map(|_| async {
                for _ in 0..BARRIERS_PER_READER {
                    let result = nodes[at].read_barrier(ReadPolicy::ReadIndex).await;
                    result.expect("every barrier of the round resolves");
                }
            });
            join_all(readers).await;
            let record = members[at].record.lock().unwrap();
            assert_eq!(
                record.map.get(&key).map(String::as_str),
                Some(round.to_string().as_str()),
                "the barriers on member {at} (leader {leader}) saw the write"
            );
        }
    }
    for server in &servers {
        server.shutdown().await;
    }
}
