//! raft-rs's `RawNode` doing what oar's `benches/core_throughput.rs` does:
//! three nodes in one thread, instant in-memory disk (raft-rs's
//! `MemStorage`) and network, N proposers that each keep one 64-byte
//! proposal outstanding, until the leader has applied a fixed number of
//! entries. Counted under callgrind by `scripts/raftrs-instructions`.
//!
//! Env: `OAR_BENCH_ENTRIES` (default 20000), `OAR_BENCH_PROPOSERS`
//! (default 1).

use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, EntryType, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

struct Cluster {
    nodes: Vec<RawNode<MemStorage>>,
    network: VecDeque<Message>,
    /// Commands the leader applied (the clients' completions).
    leader_applied: u64,
}

impl Cluster {
    fn new() -> Self {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let nodes = (1..=3)
            .map(|id| {
                let config = Config {
                    id,
                    election_tick: 10,
                    heartbeat_tick: 3,
                    max_size_per_msg: 1 << 20,
                    max_inflight_msgs: 256,
                    ..Config::default()
                };
                let storage =
                    MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
                RawNode::new(&config, storage, &logger).expect("valid config")
            })
            .collect();
        Cluster {
            nodes,
            network: VecDeque::new(),
            leader_applied: 0,
        }
    }

    /// Handles every node's `Ready` (persist at once, send, apply) and
    /// delivers every message, until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                if self.nodes[i].has_ready() {
                    moved = true;
                    self.handle_ready(i);
                }
            }
            while let Some(m) = self.network.pop_front() {
                moved = true;
                let to = m.to as usize - 1;
                let _ = self.nodes[to].step(m);
            }
            if !moved {
                return;
            }
        }
    }

    fn handle_ready(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let leader = node.raft.state == StateRole::Leader;
        let mut ready = node.ready();
        self.network.extend(ready.take_messages());
        let committed = ready.take_committed_entries();
        let mut applied = count_commands(&committed);
        if !ready.entries().is_empty() {
            node.store().wl().append(ready.entries()).expect("append");
        }
        if let Some(hs) = ready.hs() {
            node.store().wl().set_hardstate(hs.clone());
        }
        self.network.extend(ready.take_persisted_messages());
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            node.store().wl().mut_hard_state().set_commit(commit);
        }
        self.network.extend(light.take_messages());
        applied += count_commands(&light.take_committed_entries());
        node.advance_apply();
        if leader {
            self.leader_applied += applied;
        }
    }

    fn tick(&mut self) {
        for node in &mut self.nodes {
            node.tick();
        }
    }
}

fn count_commands(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .filter(|e| e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty())
        .count() as u64
}

fn main() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let entries = env("OAR_BENCH_ENTRIES").unwrap_or(20_000);
    let proposers = env("OAR_BENCH_PROPOSERS").unwrap_or(1);
    let mut cluster = Cluster::new();
    cluster.nodes[0].campaign().expect("campaign");
    cluster.settle();
    assert_eq!(cluster.nodes[0].raft.state, StateRole::Leader);
    let command = vec![7u8; 64];
    let mut outstanding = 0;
    let mut rounds = 0u64;
    while cluster.leader_applied < entries {
        while outstanding < proposers {
            cluster.nodes[0]
                .propose(vec![], command.clone())
                .expect("leader accepts");
            outstanding += 1;
        }
        let before = cluster.leader_applied;
        cluster.settle();
        outstanding -= cluster.leader_applied - before;
        rounds += 1;
        // Heartbeats as time passes, as oar's bench advances 1 ms per 64.
        if rounds.is_multiple_of(64) {
            cluster.tick();
        }
    }
    println!(
        "{} entries applied with {proposers} proposers",
        cluster.leader_applied
    );
}
