//! `Node::watch` and its waits run under madsim as in production: a test
//! awaits a leader and an applied index through the watch channel, in
//! simulated time, on an in-process network.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use oar::core::{LogIndex, NodeId, Role};
use oar::runtime::{
    Committed, GroupId, GroupOptions, LocalNetwork, MemStorage, NodeManager, StateMachine,
    WaitError,
};

/// Counts commands.
struct Count;

impl StateMachine for Count {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        vec![Bytes::new(); commands.len()]
    }
}

#[test]
fn a_leader_and_an_applied_index_are_awaited_through_watch_in_simulated_time() {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(7, madsim::Config::default());
    runtime.block_on(async {
        let network = LocalNetwork::new();
        let addrs: BTreeMap<NodeId, SocketAddr> = (1..=3)
            .map(|i| (NodeId(i), format!("10.0.0.{i}:5000").parse().unwrap()))
            .collect();
        let mut nodes = Vec::new();
        for (&id, &addr) in &addrs {
            let server = NodeManager::local(&network, addr);
            let options = GroupOptions::new(GroupId(1), id, addrs.clone());
            let node = server
                .add_group(options, Box::new(MemStorage::new()), Box::new(Count))
                .unwrap();
            nodes.push((server, node));
        }
        let start = tokio::time::Instant::now();
        let (leader, addr) = nodes[0]
            .1
            .wait_for_leader(Duration::from_secs(30))
            .await
            .expect("a leader");
        assert_eq!(addr, addrs.get(&leader).copied());
        assert!(start.elapsed() < Duration::from_secs(30));
        let leading = &nodes[leader.0 as usize - 1].1;
        leading
            .wait_for_status(Duration::from_secs(30), |s| s.role == Role::Leader)
            .await
            .unwrap();
        let applied = leading.apply(Bytes::from_static(b"x")).await.unwrap();
        for (_, node) in &nodes {
            let at = node
                .wait_for_applied(applied.index, Duration::from_secs(30))
                .await
                .unwrap();
            assert!(at >= applied.index);
        }
        let never = LogIndex(applied.index.0 + 100);
        let waited = nodes[0]
            .1
            .wait_for_applied(never, Duration::from_secs(1))
            .await;
        assert_eq!(
            waited,
            Err(WaitError::Timeout {
                waited: Duration::from_secs(1)
            })
        );
        for (server, _) in &nodes {
            server.shutdown().await;
        }
    });
}
