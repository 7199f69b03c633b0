//! Random schedules: hundreds of seeds of message loss, duplication and
//! reordering, slow disks, crashes with lost unsynced writes, partitions and
//! client proposals. The harness checks election safety, log matching,
//! leader completeness and state-machine safety after every step; at the end
//! the cluster heals and must make progress and converge.

mod harness;

use std::time::Duration;

use harness::{Cluster, MS};
use oar::core::{Membership, NodeId, RaftOptions};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}

/// One random run; returns the cluster for final checks.
fn run(seed: u64, n: u64, steps: usize, pipeline: RaftOptions) -> Cluster {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut c = Cluster::with_options(n, |id| RaftOptions {
        inflight_msgs_max: pipeline.inflight_msgs_max,
        append_entries_max: pipeline.append_entries_max,
        ..harness::options(id, seed)
    });
    c.auto_disk = false;
    let all: Vec<NodeId> = c.nodes.keys().copied().collect();
    let membership = Membership::with_voters(all.clone());
    let mut proposals = 0;
    for _ in 0..steps {
        let up: Vec<NodeId> = all.iter().copied().filter(|id| c.nodes[id].up).collect();
        let down: Vec<NodeId> = all.iter().copied().filter(|id| !c.nodes[id].up).collect();
        match rng.random_range(0..100) {
            0..35 if !c.network.is_empty() => {
                // Any message, not the oldest: reordering.
                let at = rng.random_range(0..c.network.len());
                let _ = c.deliver_at(at);
            }
            35..40 if !c.network.is_empty() => {
                let at = rng.random_range(0..c.network.len());
                c.network.remove(at);
            }
            40..43 if !c.network.is_empty() => {
                let at = rng.random_range(0..c.network.len());
                let copy = c.network[at].clone();
                c.network.push(copy);
            }
            43..62 => {
                if let Some(id) = pick(&mut rng, &up) {
                    let n = rng.random_range(1..4);
                    c.complete_disk(id, n);
                }
            }
            62..77 => c.advance(Duration::from_millis(rng.random_range(1..25))),
            77..90 => {
                if let Some(leader) = c.leader() {
                    for _ in 0..rng.random_range(1..4) {
                        proposals += 1;
                        let _ = c.propose(leader, &format!("s{seed}-{proposals}"));
                    }
                }
            }
            90..92 if down.len() + 1 < n as usize / 2 + 1 => {
                if let Some(id) = pick(&mut rng, &up) {
                    c.crash(id);
                }
            }
            92..95 => {
                if let Some(id) = pick(&mut rng, &down) {
                    c.restart(id, membership.clone());
                }
            }
            95..97 => {
                if let Some(id) = pick(&mut rng, &all) {
                    c.isolate(id);
                }
            }
            97..100 => c.heal(),
            _ => {}
        }
        c.drain_all();
    }
    // Heal everything; the cluster must converge and make progress.
    c.heal();
    for id in all.clone() {
        if !c.nodes[&id].up {
            c.restart(id, membership.clone());
        }
    }
    c.auto_disk = true;
    let leader = c.elect();
    let last = c.propose(leader, "final").expect("leader accepts");
    let converged = c.run_until(5 * MS, Duration::from_secs(20), |c| {
        c.nodes
            .values()
            .all(|n| n.applied.last().is_some_and(|e| e.id.index >= last.index))
    });
    assert!(converged, "seed {seed}: no progress after healing");
    c.check_log_matching();
    c.check_proposals_resolved();
    // Nothing any node applied was lost: every node applied the same prefix.
    let reference: Vec<_> = c.applied_ids.values().copied().collect();
    for (id, node) in &c.nodes {
        let applied: Vec<_> = node.applied.iter().map(|e| e.id).collect();
        assert!(
            applied.len() <= reference.len() && applied[..] == reference[..applied.len()],
            "seed {seed}: {id}"
        );
    }
    if std::env::var("STATS").is_ok() {
        let failed: usize = c.nodes.values().map(|n| n.failed_proposals.len()).sum();
        eprintln!(
            "seed {seed}: terms {} applied {} proposals {proposals} failed {failed} sent {:?}",
            c.leaders.len(),
            reference.len(),
            c.sent
        );
    }
    c
}

#[test]
fn three_nodes_stay_safe_under_random_schedules() {
    let mut leaders = 0;
    for seed in 0..300 {
        let c = run(seed, 3, 4000, RaftOptions::default());
        leaders += c.leaders.len();
    }
    assert!(leaders > 300, "elections happened: {leaders}");
}

#[test]
fn five_nodes_stay_safe_under_random_schedules() {
    for seed in 1000..1150 {
        run(seed, 5, 3000, RaftOptions::default());
    }
}

#[test]
fn tiny_windows_and_batches_stay_safe() {
    // One entry per append and a window of two stress probing and flow control.
    let tight = RaftOptions {
        inflight_msgs_max: 2,
        append_entries_max: 1,
        ..RaftOptions::default()
    };
    for seed in 2000..2100 {
        run(seed, 3, 3000, tight.clone());
    }
}
