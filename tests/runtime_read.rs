//! Read barriers over real loopback TCP (`Node::read_barrier`): after a
//! write completes anywhere, a barrier with any policy on the leader — or
//! with ReadIndex / Lease on a follower — resolves only once the local
//! state machine holds that write; concurrent barriers all resolve; the
//! failures are typed and retryable. A learner's barriers (ReadIndex,
//! Lease) see every completed write too.

mod runtime;

use std::collections::BTreeSet;

use bytes::Bytes;
use futures_util::future::join_all;
use oar::core::NodeId;
use oar::runtime::{Error, GroupId, Node, ReadPolicy};
use runtime::*;

const POLICIES: [ReadPolicy; 3] = [ReadPolicy::ReadIndex, ReadPolicy::Lease, ReadPolicy::Log];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_on_the_leader_and_on_followers_sees_every_completed_write() {
    let servers = servers(3).await;
    let members = start_group(&servers, GroupId(1), |_| Store::Mem(Default::default()));
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    for round in 0..20 {
        for (p, policy) in POLICIES.iter().enumerate() {
            let key = format!("k{round}p{p}");
            let command = Bytes::from(format!("set {key} {round}"));
            nodes[leader].apply(command).await.expect("write commits");
            for (i, member) in members.iter().enumerate() {
                if i != leader && *policy == ReadPolicy::Log {
                    continue;
                }
                member.node.read_barrier(*policy).await.expect("barrier");
                let record = member.record.lock().unwrap();
                assert_eq!(
                    record.map.get(&key).map(String::as_str),
                    Some(round.to_string().as_str()),
                    "{policy:?} barrier on member {i} (leader {leader}) saw the write"
                );
            }
        }
    }
    for server in &servers {
        server.shutdown().await;
    }
}

/// A learner (no vote, not in any quorum) serves barriers as a follower
/// does: it asks the leader for a read index and waits for its own apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_on_a_learner_sees_every_completed_write() {
    let servers = servers(4).await;
    let voters: BTreeSet<NodeId> = (1..=3).map(NodeId).collect();
    let members = start_group_with_voters(&servers, GroupId(4), &voters);
    let nodes: Vec<&Node> = members[..3].iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    nodes[leader]
        .add_learner(NodeId(4), servers[3].local_addr())
        .await
        .expect("learner added");
    let learner = &members[3];
    // Until the leader's first append reaches it, the learner knows no
    // leader to ask (a read is refused then: `NotLeader { leader: None }`).
    wait_until(|| learner.node.leader().is_some()).await;
    for round in 0..20 {
        for policy in [ReadPolicy::ReadIndex, ReadPolicy::Lease] {
            let key = format!("k{round}{policy:?}");
            apply_anywhere(&nodes, Bytes::from(format!("set {key} {round}"))).await;
            learner.node.read_barrier(policy).await.expect("barrier");
            let record = learner.record.lock().unwrap();
            assert_eq!(
                record.map.get(&key).map(String::as_str),
                Some(round.to_string().as_str()),
                "{policy:?} barrier on the learner saw the write"
            );
        }
    }
    let status = learner.node.status().await.unwrap();
    assert!(status.membership.learners.contains(&NodeId(4)));
    assert!(!status.membership.voters.contains(&NodeId(4)));
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_barriers_all_resolve_on_every_member() {
    let servers = servers(3).await;
    let members = start_group(&servers, GroupId(2), |_| Store::Mem(Default::default()));
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    nodes[leader]
        .apply(Bytes::from_static(b"set a 1"))
        .await
        .unwrap();
    let barriers = nodes.iter().flat_map(|node| {
        (0..200).map(move |i| {
            let node = (*node).clone();
            let policy = if i % 2 == 0 {
                ReadPolicy::ReadIndex
            } else {
                ReadPolicy::Lease
            };
            async move { node.read_barrier(policy).await }
        })
    });
    for result in join_all(barriers).await {
        result.expect("every barrier resolves");
    }
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_typed_and_retryable() {
    let servers = servers(3).await;
    let members = start_group(&servers, GroupId(3), |_| Store::Mem(Default::default()));
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    let follower = (leader + 1) % 3;
    // Through the log: the leader only.
    let refused = nodes[follower].read_barrier(ReadPolicy::Log).await;
    assert!(
        matches!(refused, Err(Error::NotLeader { leader: Some(l), .. }) if l == nodes[leader].id()),
        "{refused:?}"
    );
    // With the leader gone, a follower's barrier fails (no stale answer,
    // no hang) with an error that says "retry".
    nodes[leader].shutdown().await;
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        nodes[follower].read_barrier(ReadPolicy::ReadIndex),
    )
    .await
    .expect("resolves in time");
    assert!(
        matches!(
            result,
            Err(Error::Timeout | Error::LeadershipLost { .. } | Error::NotLeader { .. })
        ),
        "{result:?}"
    );
    for server in &servers {
        server.shutdown().await;
    }
}
