//! The group driver's order of hand-offs within one drain of the core's
//! actions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::core::{MessageBody, NodeId, RaftOptions};
use crate::runtime::snapshot_storage::SnapshotStorage;
use crate::runtime::state_machine::{Committed, StateMachine};
use crate::runtime::transport::LocalNetwork;
use crate::runtime::{
    GroupId, GroupOptions, GroupStorage, MemStorage, NodeManager, StorageFailure,
};
use crate::storage::{Durable, Recovered, WriteOp};

/// What happened, in order, as the leader (node 1) saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// Node 1's storage persisted its entries up to this index.
    Persisted(u64),
    /// An append from node 1 carrying entries up to this index reached
    /// the network.
    AppendSent(u64),
}

type Events = Arc<Mutex<Vec<Event>>>;

/// Memory storage (inline: never blocks) that records what it persists.
struct Recording {
    inner: MemStorage,
    events: Events,
}

impl GroupStorage for Recording {
    fn recover(&mut self) -> Result<Recovered, StorageFailure> {
        self.inner.recover()
    }

    fn persist(&mut self, ops: Vec<WriteOp>) -> Result<Vec<Durable>, StorageFailure> {
        for op in &ops {
            if let WriteOp::Entries(entries) = op
                && let Some(last) = entries.last()
            {
                let event = Event::Persisted(last.id.index.0);
                self.events.lock().unwrap().push(event);
            }
        }
        self.inner.persist(ops)
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStorage> {
        self.inner.snapshots()
    }

    fn persist_may_block(&self) -> bool {
        false
    }
}

/// Answers every command with nothing.
struct Nothing;

impl StateMachine for Nothing {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        vec![Bytes::new(); commands.len()]
    }
}

/// A leader's fresh entries reach its storage before the appends that
/// carry them leave: the writes of a drain are handed over first, so that
/// on tokio's multi-thread runtime the peers' senders, woken after the log
/// writer, run before it (`GroupDriver::perform_actions`). With inline
/// storage the hand-off is the persist itself, which makes the order
/// observable here.
#[tokio::test]
async fn a_leaders_appends_leave_after_their_entries_are_handed_to_storage() {
    let network = LocalNetwork::new();
    let addr = |i: u64| -> SocketAddr { format!("10.0.0.{i}:5000").parse().unwrap() };
    let servers: Vec<NodeManager> = (1..=3)
        .map(|i| NodeManager::local(&network, addr(i)))
        .collect();
    let events: Events = Arc::default();
    // Node 1's appends are recorded as they reach the network.
    for peer in [2, 3] {
        let forward = network.router(addr(peer)).expect("registered");
        let events = Arc::clone(&events);
        let record: crate::runtime::transport::Router = Arc::new(move |group, message| {
            if message.from == NodeId(1)
                && let MessageBody::AppendRequest(append) = &message.body
                && let Some(last) = append.entries.last()
            {
                let event = Event::AppendSent(last.id.index.0);
                events.lock().unwrap().push(event);
            }
            forward(group, message);
        });
        network.register(addr(peer), record);
    }
    let peers: std::collections::BTreeMap<NodeId, SocketAddr> =
        (1..=3).map(|i| (NodeId(i), addr(i))).collect();
    let mut nodes = Vec::new();
    for (i, server) in (1..=3).zip(&servers) {
        let mut options = GroupOptions::new(GroupId(1), NodeId(i), peers.clone());
        options.raft = RaftOptions {
            // Node 1 times out first, so it leads.
            election_timeout_min: Duration::from_millis(50 + 500 * (i - 1)),
            election_timeout_max: Duration::from_millis(60 + 500 * (i - 1)),
            heartbeat_interval: Duration::from_millis(20),
            ..options.raft
        };
        let storage: Box<dyn GroupStorage> = match i {
            1 => Box::new(Recording {
                inner: MemStorage::new(),
                events: Arc::clone(&events),
            }),
            _ => Box::new(MemStorage::new()),
        };
        nodes.push(
            server
                .add_group(options, storage, Box::new(Nothing))
                .unwrap(),
        );
    }
    while nodes[0].leader() != Some(NodeId(1)) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..20 {
        nodes[0].apply(Bytes::from_static(b"x")).await.unwrap();
    }
    let events = events.lock().unwrap().clone();
    let mut persisted = 0;
    let mut appends = 0;
    for event in &events {
        match *event {
            Event::Persisted(index) => persisted = persisted.max(index),
            Event::AppendSent(index) => {
                appends += 1;
                assert!(
                    index <= persisted,
                    "an append up to {index} left before its persist (persisted up to \
                     {persisted}): {events:?}"
                );
            }
        }
    }
    assert!(appends >= 20, "{events:?}");
    for server in &servers {
        server.shutdown().await;
    }
}
