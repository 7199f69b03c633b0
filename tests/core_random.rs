//! Random schedules: hundreds of seeds of message loss, duplication and
//! reordering, slow disks, crashes with lost unsynced writes, partitions and
//! client proposals; with `churn`, also membership changes (learners added,
//! promoted, members removed, through joint consensus) and leadership
//! transfers. The harness checks election safety (one leader per term,
//! whatever the configuration), log matching, leader completeness and
//! state-machine safety after every step; at the end the cluster heals and
//! its members must make progress and converge. With quiescence on, the
//! schedule plays the runtime's liveness: a crash or an isolation is
//! reported (`handle_peer_unreachable`) to the nodes that lost the peer.

mod harness;

use std::time::Duration;

use std::collections::BTreeSet;

use harness::{Cluster, MS};
use oar::core::{NodeId, RaftOptions};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}

/// One random run; returns the cluster for final checks.
fn run(seed: u64, n: u64, steps: usize, pipeline: RaftOptions, churn: bool) -> Cluster {
    run_with(seed, n, steps, pipeline, churn, false)
}

/// [`run`], with `snapshots`: nodes also save snapshots at random times and
/// compact their logs down to a tiny margin, so that lagging and restarted
/// nodes catch up by installing the leader's snapshot.
fn run_with(
    seed: u64,
    n: u64,
    steps: usize,
    pipeline: RaftOptions,
    churn: bool,
    snapshots: bool,
) -> Cluster {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let margin = seed % 4;
    let make = |id| RaftOptions {
        inflight_msgs_max: pipeline.inflight_msgs_max,
        append_entries_max: pipeline.append_entries_max,
        catchup_margin: 8,
        compaction_margin: margin,
        snapshot_install_timeout: Duration::from_millis(500),
        quiesce_after: pipeline.quiesce_after,
        log_cache_bytes_max: pipeline.log_cache_bytes_max,
        ..harness::options(id, seed)
    };
    let mut c = Cluster::with_options(n, make);
    if churn {
        // Two spare nodes that know no configuration until added.
        for id in n + 1..=n + 2 {
            c.add_node(NodeId(id), make(NodeId(id)));
        }
    }
    c.auto_disk = false;
    c.defer_installs = snapshots;
    c.defer_loads = pipeline.log_cache_bytes_max.is_some();
    let all: Vec<NodeId> = c.nodes.keys().copied().collect();
    let mut proposals = 0;
    let mut changes = 0;
    for _ in 0..steps {
        if churn && rng.random_range(0..100) < 3 {
            changes += usize::from(churn_step(&mut c, &mut rng, &all));
            c.drain_all();
            continue;
        }
        if pipeline.quiesce_after.is_some() && rng.random_range(0..100) < 2 {
            // A quiet stretch: disks and network catch up and time passes
            // with no client, so that groups go quiet amid the faults.
            c.auto_disk = true;
            c.run_until(10 * MS, Duration::from_millis(600), |_| false);
            c.auto_disk = false;
            continue;
        }
        // (No draw without loads: the other schedules stay as they were.)
        if c.defer_loads && !c.pending_loads.is_empty() && rng.random_range(0..100) < 10 {
            let at = rng.random_range(0..c.pending_loads.len());
            c.complete_load(at);
            c.drain_all();
            continue;
        }
        if snapshots && !c.pending_installs.is_empty() && rng.random_range(0..100) < 3 {
            let at = rng.random_range(0..c.pending_installs.len());
            c.complete_install(at);
            c.drain_all();
            continue;
        }
        if snapshots && rng.random_range(0..100) < 2 {
            let up: Vec<NodeId> = all.iter().copied().filter(|id| c.nodes[id].up).collect();
            if let Some(id) = pick(&mut rng, &up) {
                c.snapshot_now(id);
            }
            c.drain_all();
            continue;
        }
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
                    report_unreachable(&mut c, id);
                }
            }
            92..95 => {
                if let Some(id) = pick(&mut rng, &down) {
                    c.restart_bootstrap(id);
                }
            }
            95..97 => {
                if let Some(id) = pick(&mut rng, &all) {
                    c.isolate(id);
                    report_unreachable(&mut c, id);
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
            c.restart_bootstrap(id);
        }
    }
    c.auto_disk = true;
    c.defer_installs = false;
    while !c.pending_installs.is_empty() {
        c.complete_install(0);
    }
    c.defer_loads = false;
    while !c.pending_loads.is_empty() {
        c.complete_load(0);
    }
    // The members of the final configuration converge on a last write;
    // removed nodes stop. The write is retried if a leader does not take
    // it (transferring, being removed) or it is overwritten (a late
    // TimeoutNow from an abandoned transfer may still start an election).
    let mut members = BTreeSet::new();
    let mut converged = false;
    for _ in 0..200 {
        let Some(leader) = c.leader() else {
            c.advance(5 * MS);
            c.stabilize();
            continue;
        };
        let Ok(last) = c.propose(leader, "final") else {
            c.advance(5 * MS);
            c.stabilize();
            continue;
        };
        members = c.node(leader.0).membership().members();
        converged = c.run_until(5 * MS, Duration::from_secs(5), |c| {
            members.iter().all(|id| {
                let applied = &c.nodes[id].applied;
                applied.len() as u64 >= last.index.0
                    && applied[last.index.0 as usize - 1].id == last
            })
        });
        if converged {
            break;
        }
    }
    assert!(converged, "seed {seed}: no progress after healing");
    c.check_log_matching();
    c.check_proposals_resolved_among(&members);
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
            "seed {seed}: terms {} applied {} proposals {proposals} failed {failed} changes {changes} installs {} sent {:?}",
            c.leaders.len(),
            reference.len(),
            c.nodes.values().map(|n| n.installs).sum::<usize>(),
            c.sent
        );
    }
    c
}

/// The driver's liveness: every live node hears that `lost` is gone, and
/// `lost` (if alive) that every other node is.
fn report_unreachable(c: &mut Cluster, lost: NodeId) {
    let live: Vec<NodeId> = c
        .nodes
        .iter()
        .filter(|(id, node)| **id != lost && node.up)
        .map(|(id, _)| *id)
        .collect();
    for id in live {
        c.call(id, |r, now| r.handle_peer_unreachable(now, lost));
    }
    let ids: Vec<NodeId> = c.nodes.keys().copied().collect();
    if c.nodes[&lost].up {
        for &other in ids.iter().filter(|&&id| id != lost) {
            c.call(lost, |r, now| r.handle_peer_unreachable(now, other));
        }
    }
}

/// One membership change or leadership transfer at the leader, chosen at
/// random; refusals (in flight, lagging, not a member...) are expected.
/// Returns whether the leader accepted it.
fn churn_step(c: &mut Cluster, rng: &mut ChaCha8Rng, all: &[NodeId]) -> bool {
    let Some(leader) = c.leader() else {
        return false;
    };
    let Some(target) = pick(rng, all) else {
        return false;
    };
    match rng.random_range(0..4) {
        0 => c.call(leader, |r, now| r.add_learner(now, target)).is_ok(),
        1 => c
            .call(leader, |r, now| r.promote_learner(now, target))
            .is_ok(),
        2 => c
            .call(leader, |r, now| r.remove_member(now, target))
            .is_ok(),
        _ => c
            .call(leader, |r, now| r.transfer_leadership(now, target))
            .is_ok(),
    }
}

#[test]
fn three_nodes_stay_safe_under_random_schedules() {
    let mut leaders = 0;
    for seed in 0..300 {
        let c = run(seed, 3, 4000, RaftOptions::default(), false);
        leaders += c.leaders.len();
    }
    assert!(leaders > 300, "elections happened: {leaders}");
}

#[test]
fn five_nodes_stay_safe_under_random_schedules() {
    for seed in 1000..1150 {
        run(seed, 5, 3000, RaftOptions::default(), false);
    }
}

#[test]
fn membership_changes_and_transfers_stay_safe_under_random_schedules() {
    let mut changed = 0;
    for seed in 3000..3200 {
        let n = if seed % 2 == 0 { 3 } else { 5 };
        let c = run(seed, n, 4000, RaftOptions::default(), true);
        changed += usize::from(
            c.nodes
                .values()
                .any(|node| node.raft.membership().voters.len() != n as usize),
        );
    }
    assert!(changed > 20, "voter sets changed in {changed} runs");
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
        run(seed, 3, 3000, tight.clone(), seed % 2 == 0);
    }
}

#[test]
fn snapshots_and_compaction_stay_safe_under_random_schedules() {
    let mut installs = 0;
    for seed in 4000..4200 {
        let n = if seed % 3 == 0 { 5 } else { 3 };
        let c = run_with(seed, n, 4000, RaftOptions::default(), seed % 2 == 0, true);
        installs += c.sent.get("install_snapshot").copied().unwrap_or(0);
    }
    assert!(installs > 100, "snapshots were offered: {installs}");
}

/// A log cache of a few entries: nearly every append to a lagging peer is
/// read back from disk, answered late and out of order, across crashes,
/// elections, snapshots and membership changes.
#[test]
fn a_tiny_log_cache_stays_safe_under_random_schedules() {
    let mut loaded = 0;
    for seed in 6000..6200 {
        let n = if seed % 3 == 0 { 5 } else { 3 };
        let options = RaftOptions {
            log_cache_bytes_max: Some(seed % 4 * 60),
            ..RaftOptions::default()
        };
        let c = run_with(seed, n, 4000, options, seed % 2 == 0, seed % 4 < 2);
        loaded += c.loads_answered;
    }
    assert!(loaded > 1000, "entries were read back: {loaded}");
}

#[test]
fn quiescence_stays_safe_under_random_schedules() {
    let mut quiesces = 0;
    for seed in 5000..5120 {
        let n = if seed % 3 == 0 { 5 } else { 3 };
        // From well below the election timeout (leases still running when
        // the group goes quiet) to above it.
        let options = RaftOptions {
            quiesce_after: Some(Duration::from_millis(20 + (seed % 5) * 60)),
            ..RaftOptions::default()
        };
        // Without deferred snapshot installs: the harness cannot yet model
        // an install superseded by a newer offer from another leader, which
        // these schedules reach (seeds 5061, 5137), quiet or not.
        let c = run_with(seed, n, 4000, options, seed % 2 == 0, false);
        quiesces += c.sent.get("quiesce").copied().unwrap_or(0);
    }
    assert!(quiesces > 50, "groups went quiet: {quiesces}");
}
