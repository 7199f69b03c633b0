//! Many groups on the same simulated servers (`--groups`): a run's checks
//! see every group and name the one that broke, quiet groups whose leaders'
//! server crashes wake and elect, and a many-group run replays the same.
#![cfg(madsim)]

use std::time::Duration;

use oar::core::{RaftOptions, Role, Term};
use oar_sim::cluster::{ServerSetup, SimCluster};
use oar_sim::fault_mix::{FaultKind, FaultWeights};
use oar_sim::observe::Violation;
use oar_sim::options::{FaultSet, SimOptions};
use oar_sim::run::{Verdict, run};

const GROUPS: usize = 100;

/// A short fault-free run of `GROUPS` groups: the clients work on a few of
/// them, the liveness probes and the fault-free tail write to all.
fn many_groups(seed: u64) -> SimOptions {
    SimOptions {
        groups: GROUPS,
        faults: FaultSet::None,
        fault_phase: Duration::from_secs(2),
        ..SimOptions::new(seed)
    }
}

#[test]
fn a_divergence_planted_in_one_group_of_a_hundred_is_reported_with_its_id() {
    // Group 58 (index 57), one the clients never touch: only the checks'
    // own writes reach it.
    let planted = SimOptions {
        planted_divergence: Some(57),
        ..many_groups(5)
    };
    let report = run(&planted).report;
    // Every group elected once, and no more (no faults).
    assert_eq!(report.leader_terms, GROUPS, "{report:?}");
    let Verdict::Correctness(violations) = &report.verdict else {
        panic!("the planted divergence was missed: {:?}", report.verdict);
    };
    assert!(!violations.is_empty());
    // Named by its group, and no other group (whose members share the
    // servers, the connections and the disks) is blamed.
    for violation in violations {
        assert!(
            matches!(
                violation,
                Violation::InGroup { group: 58, violation }
                    if matches!(**violation, Violation::DivergentApply { .. })
            ),
            "only group 58 diverged: {violation:?}"
        );
    }
}

/// Every group's member on each server: (role, leader's server index,
/// term, quiet), `None` for a member that is down.
async fn states(cluster: &SimCluster) -> Vec<Vec<Option<(Role, Option<usize>, Term, bool)>>> {
    let mut states = Vec::new();
    for g in 0..cluster.groups.len() {
        let mut group = Vec::new();
        for i in 0..cluster.nodes.len() {
            let state = match cluster.member_in(g, i) {
                Some(member) => member.status().await.ok().map(|s| {
                    let leader = s.leader.map(|l| l.0 as usize - 1);
                    (s.role, leader, s.hard_state.term, s.quiet)
                }),
                None => None,
            };
            group.push(state);
        }
        states.push(group);
    }
    states
}

#[test]
fn quiet_groups_of_a_crashed_leader_wake_and_elect() {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(9, madsim::Config::default());
    runtime.block_on(async {
        let raft = RaftOptions {
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            heartbeat_interval: Duration::from_millis(60),
            quiesce_after: Some(Duration::from_millis(200)),
            ..RaftOptions::default()
        };
        let mut cluster = SimCluster::start_untraced(3, 9, raft, ServerSetup::plain(), GROUPS);

        // Every group elects, then goes quiet on every server.
        let mut settled = None;
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = states(&cluster).await;
            let all_quiet = now.iter().all(|group| {
                let leaders = group
                    .iter()
                    .filter(|s| matches!(s, Some((Role::Leader, ..))))
                    .count();
                leaders == 1 && group.iter().all(|s| matches!(s, Some((.., true))))
            });
            if all_quiet {
                settled = Some(now);
                break;
            }
        }
        let before = settled.expect("every group elected and went quiet");

        // The server leading the most groups crashes.
        let led_by = |i: usize| -> Vec<usize> {
            (0..GROUPS)
                .filter(|&g| matches!(before[g][i], Some((Role::Leader, ..))))
                .collect()
        };
        let victim = (0..3).max_by_key(|&i| led_by(i).len()).expect("servers");
        let orphans = led_by(victim);
        assert!(orphans.len() >= GROUPS / 3, "{} groups", orphans.len());
        cluster.kill(victim);

        // Each of its quiet groups wakes and elects a leader among the others,
        // in a newer term; the other groups keep theirs.
        let mut woken = Vec::new();
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = states(&cluster).await;
            woken = orphans
                .iter()
                .copied()
                .filter(|&g| {
                    let old_term = before[g][victim].expect("led").2;
                    now[g].iter().enumerate().any(|(i, s)| {
                        i != victim
                            && matches!(s, Some((Role::Leader, _, term, _)) if *term > old_term)
                    })
                })
                .collect();
            if woken.len() == orphans.len() {
                break;
            }
        }
        assert_eq!(woken, orphans, "groups whose leader crashed elected again");
        let now = states(&cluster).await;
        for g in (0..GROUPS).filter(|g| !orphans.contains(g)) {
            let leader = before[g]
                .iter()
                .position(|s| matches!(s, Some((Role::Leader, ..))));
            let still = leader.and_then(|i| now[g][i]).map(|s| (s.0, s.2));
            let was = leader.and_then(|i| before[g][i]).map(|s| (s.0, s.2));
            assert_eq!(still, was, "group {} kept its leader and term", g + 1);
        }
    });
}

/// Leadership transfers alone, over 10 groups: the nemesis aims them at
/// every group, not at the first alone (as it did, so faults of one group
/// never met the others' leaders), and every group still passes its checks.
#[test]
fn leader_aimed_faults_reach_every_group() {
    let options = SimOptions {
        groups: 10,
        faults: FaultSet::All,
        fault_weights: FaultWeights::only(FaultKind::Transfer, 10),
        fault_phase: Duration::from_secs(20),
        ..SimOptions::new(3)
    };
    let report = run(&options).report;
    assert!(
        matches!(report.verdict, Verdict::Pass),
        "{:?}",
        report.verdict
    );
    // Without other faults a group's leader changes only by a transfer.
    let transferred = report.group_leader_terms[1..]
        .iter()
        .filter(|&&terms| terms > 1)
        .count();
    assert!(
        transferred >= 3,
        "groups 2-10 changed leader: {:?}",
        report.group_leader_terms
    );
}

#[test]
fn a_many_group_run_replays_the_same() {
    madsim::runtime::Runtime::check_determinism(11, madsim::Config::default(), || async {
        let options = SimOptions {
            groups: 20,
            fault_phase: Duration::from_secs(4),
            ..SimOptions::new(11)
        };
        oar_sim::run::simulate_in_current_runtime(options).await;
    });
}

/// Seed 2 of 100 quiet groups under all faults: a server paused until the
/// final heal took its own stall for both peers' silence on resume, and
/// woke a quiet follower for a server that was not its leader's; with the
/// leader still quiet, the follower campaigned and deposed it in the
/// fault-free tail. Both are fixed (the monitor forgives its own stall; a
/// quiet follower wakes for its leader's server only).
#[test]
fn a_resumed_server_does_not_pull_quiet_groups_into_elections() {
    let defaults = SimOptions::new(2);
    let options = SimOptions {
        groups: GROUPS,
        raft: RaftOptions {
            quiesce_after: Some(Duration::from_millis(100)),
            ..defaults.raft
        },
        ..defaults
    };
    let report = run(&options).report;
    assert!(
        matches!(report.verdict, Verdict::Pass),
        "{:?}",
        report.verdict
    );
}

/// Seed 8 of 100 groups under all faults (leader-aimed faults at any
/// group): madsim held every paced flush across a partition as a message
/// of its own and, at the heal, delivered the backlog one message at a
/// time, each after its own latency. A deposed leader's stale heartbeats
/// of its last term then reached a follower seconds late and held it in
/// that leader's lease, so the group's two voters could not elect within
/// the recovery bound. Paced streams now keep what is written across a
/// held path and flush it together at the heal, as a kernel would.
#[test]
fn a_healed_partition_delivers_its_backlog_at_once() {
    let options = SimOptions {
        groups: GROUPS,
        ..SimOptions::new(8)
    };
    let report = run(&options).report;
    assert!(
        matches!(report.verdict, Verdict::Pass),
        "{:?}",
        report.verdict
    );
}
