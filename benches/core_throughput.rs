//! Throughput of the sans-IO core: a 3-node cluster of `RaftNode`s in one
//! thread, with instant in-memory disks and network, and N proposers that
//! each keep one proposal outstanding. Prints entries committed per second
//! and the core's CPU cost per committed entry (all three nodes' work: the
//! bench is single-threaded, so wall time is CPU time).
//!
//! Run: `cargo bench --bench core_throughput`

use std::collections::VecDeque;
use std::time::{Duration, Instant as WallClock};

use bytes::Bytes;
use oar::core::{
    Action, EntryPayload, InitialState, Instant, LogId, Membership, Message, NodeId, RaftNode,
    RaftOptions, Role,
};

/// Work a node's actions asked for, to be fed back once polling is done.
enum Completion {
    Entries(LogId),
    HardState(oar::core::HardState),
}

/// The harness keeps its own work small and allocation-free in the steady
/// state (nodes and completions in `Vec`s indexed by id, buffers reused), as
/// raft-rs's harness in `benches/raftrs` does: instruction counts under
/// callgrind then measure the core, not the bench.
struct Bench {
    now: Instant,
    /// Node `NodeId(i + 1)` at index `i`.
    nodes: Vec<RaftNode>,
    network: VecDeque<Message>,
    /// Disk completions per node (same indexing), fed back after polling.
    completions: Vec<Vec<Completion>>,
    /// Commands applied by the leader (the clients' completions).
    leader_applied: u64,
}

/// The index of node `id` in `Bench::nodes`.
fn slot(id: NodeId) -> usize {
    id.0 as usize - 1
}

impl Bench {
    fn new() -> Self {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let membership = Membership::with_voters(ids.clone());
        let now = Instant::from_nanos(0);
        let nodes = ids
            .iter()
            .map(|&id| {
                let options = RaftOptions {
                    id,
                    rng_seed: id.0,
                    ..RaftOptions::default()
                };
                let initial = InitialState {
                    membership: membership.clone(),
                    ..InitialState::default()
                };
                RaftNode::new(options, initial, now).expect("valid options")
            })
            .collect();
        Bench {
            now,
            nodes,
            network: VecDeque::new(),
            completions: (0..ids.len()).map(|_| Vec::new()).collect(),
            leader_applied: 0,
        }
    }

    /// Polls every node, completes all disk writes, delivers all messages,
    /// until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for (node, completions) in self.nodes.iter_mut().zip(&mut self.completions) {
                while let Some(action) = node.poll_action() {
                    moved = true;
                    match action {
                        Action::Send(m) => self.network.push_back(m),
                        Action::PersistEntries { entries } => {
                            let last = entries.last().expect("non-empty write").id;
                            completions.push(Completion::Entries(last));
                        }
                        Action::PersistHardState(hs) => {
                            completions.push(Completion::HardState(hs));
                        }
                        Action::Apply { entries } if node.role() == Role::Leader => {
                            let commands = entries
                                .iter()
                                .filter(|e| matches!(e.payload, EntryPayload::Command(_)));
                            self.leader_applied += commands.count() as u64;
                        }
                        _ => {}
                    }
                }
            }
            for (node, completions) in self.nodes.iter_mut().zip(&mut self.completions) {
                for completion in completions.drain(..) {
                    moved = true;
                    let _ = match completion {
                        Completion::Entries(up_to) => {
                            node.handle_entries_persisted(self.now, up_to)
                        }
                        Completion::HardState(hs) => node.handle_hard_state_persisted(self.now, hs),
                    };
                }
            }
            while let Some(m) = self.network.pop_front() {
                let _ = self.nodes[slot(m.to)].handle_message(self.now, m);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, dt: Duration) {
        self.now = self.now + dt;
        for node in &mut self.nodes {
            node.handle_tick(self.now);
        }
    }

    fn elect(&mut self) -> NodeId {
        loop {
            self.advance(Duration::from_millis(10));
            self.settle();
            if let Some(node) = self.nodes.iter().find(|n| n.role() == Role::Leader) {
                return node.id();
            }
        }
    }
}

/// When to stop: after a wall-clock duration (a throughput figure), or after
/// a number of committed entries (the same work every run: for instruction
/// counts under callgrind, `scripts/core-instructions`).
#[derive(Clone, Copy)]
enum Until {
    Elapsed(Duration),
    Entries(u64),
}

/// Runs `proposers` closed-loop clients until `until`; returns committed
/// entries and elapsed wall time.
fn run(proposers: u64, until: Until) -> (u64, Duration) {
    let mut bench = Bench::new();
    let leader = bench.elect();
    let command = [7u8; 64];
    let start = WallClock::now();
    let mut outstanding = 0;
    let mut rounds = 0u64;
    let more = |bench: &Bench| match until {
        Until::Elapsed(duration) => start.elapsed() < duration,
        Until::Entries(entries) => bench.leader_applied < entries,
    };
    while more(&bench) {
        let node = &mut bench.nodes[slot(leader)];
        while outstanding < proposers {
            // A fresh buffer per proposal, as a client's command would be
            // (and as raft-rs's harness allocates one per `propose`): a
            // static `Bytes` would make the command free to clone.
            node.propose(bench.now, Bytes::copy_from_slice(&command))
                .expect("leader accepts");
            outstanding += 1;
        }
        let before = bench.leader_applied;
        bench.settle();
        outstanding -= bench.leader_applied - before;
        rounds += 1;
        // Let heartbeats and quorum checks run as simulated time passes.
        if rounds.is_multiple_of(64) {
            bench.advance(Duration::from_millis(1));
        }
    }
    (bench.leader_applied, start.elapsed())
}

fn main() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(entries) = env("OAR_BENCH_ENTRIES") {
        // Fixed work, no timing: what callgrind counts.
        let proposers = env("OAR_BENCH_PROPOSERS").unwrap_or(1);
        let (applied, _) = run(proposers, Until::Entries(entries));
        println!("{applied} entries applied with {proposers} proposers");
        return;
    }
    let duration = Until::Elapsed(Duration::from_millis(env("OAR_BENCH_MS").unwrap_or(2_000)));
    println!(
        "oar core throughput: 3 nodes, one thread, instant disk and network, 64-byte commands"
    );
    println!(
        "{:>10} | {:>16} | {:>22}",
        "proposers", "entries/s", "core ns/entry (3 nodes)"
    );
    println!("{:-<10}-+-{:-<16}-+-{:-<22}", "", "", "");
    for proposers in [1, 16, 256] {
        let (entries, elapsed) = run(proposers, duration);
        let per_second = entries as f64 / elapsed.as_secs_f64();
        let ns_per_entry = elapsed.as_nanos() as f64 / entries.max(1) as f64;
        println!("{proposers:>10} | {per_second:>16.0} | {ns_per_entry:>22.0}");
    }
}
