//! One seed, end to end: start the cluster and the clients, inject faults,
//! heal, require progress (liveness), then check safety and
//! linearizability.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oar::core::NodeId;
use serde_json::json;

use crate::checker::linearizability;
use crate::cluster::{ServerSetup, SimCluster, transport_options};
use crate::durability::Checked;
use crate::fault_mix::{FaultKind, FaultWeights};
use crate::final_checks::{
    InEffect, check_acknowledged_writes, check_configurations, check_configurations_agree,
    check_leader_completeness, check_log_matching,
};
use crate::groups::in_group;
use crate::history::{History, Outcome};
use crate::kv_machine::KvCommand;
use crate::liveness::{
    self, Churn, Recovery, TAIL_ELECTIONS_MAX, converge_all, fault_free_tails, recover_all,
    recovery_bound,
};
use crate::nemesis::Nemesis;
use crate::observe::{Observations, Violation};
use crate::options::SimOptions;
use crate::stranger::StrangerReport;
use crate::trace::Trace;
use crate::workload::{ClientContext, run_client};

/// How a run ended.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// A safety property or linearizability broke.
    Correctness(Vec<Violation>),
    /// The healed cluster did not make progress in time.
    Liveness(String),
}

/// What one run did and found.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Client operations invoked.
    pub ops: usize,
    /// Of those, the ones whose outcome stayed unknown (indeterminate).
    pub unknown_ops: usize,
    /// The fault mix the nemesis drew from.
    pub mix: FaultWeights,
    /// Faults injected.
    pub faults: u64,
    /// Faults injected, by kind.
    pub faults_by_kind: BTreeMap<FaultKind, u64>,
    /// What the stranger did and what the servers refused meanwhile.
    pub stranger: StrangerReport,
    /// Terms that had a leader (over every group).
    pub leader_terms: usize,
    /// Terms that had a leader, by group index.
    pub group_leader_terms: Vec<usize>,
    /// Snapshots loaded by state machines (restarts and installs).
    pub snapshot_loads: usize,
    /// State machines that resumed from their own store at a restart
    /// (`SimOptions::disk_state_machine`) and applied on from there.
    pub resumptions: usize,
    /// How long the healed cluster may take to commit a write.
    pub recovery_bound: Duration,
    /// How the cluster recovered after each heal that ended every fault
    /// (lulls, then the final heal), where it did.
    pub recoveries: Vec<Recovery>,
    /// Leadership changes over the fault-free tail, if it was reached.
    pub churn: Option<Churn>,
    /// Members sampled over the fault phase, and how many were quiet
    /// (sampled only with quiescence on).
    pub quiet_samples: (u64, u64),
    /// What the restarts checked of what the servers had promised.
    pub durability: Checked,
    /// Simulated time, in nanoseconds.
    pub sim_ns: u64,
    /// Wall-clock time the run took.
    pub wall: Duration,
    /// The verdict.
    pub verdict: Verdict,
}

/// Everything a run leaves: its report, event trace and client history.
pub struct RunOutput {
    /// The report.
    pub report: RunReport,
    /// The event trace (empty unless enabled).
    pub trace: Trace,
    /// The client history (of the first group, in a run of several).
    pub history: History,
}

/// Runs a failing seed pinned by a regression test (`SimOptions::pinned`:
/// `seed` on `nodes` servers with the fault mix `weights`) and returns its
/// report.
///
/// # Panics
/// Unless the run passed, with its verdict.
pub fn run_pinned_expecting_pass(seed: u64, nodes: usize, weights: &str) -> RunReport {
    let report = run(&SimOptions::pinned(seed, nodes, weights)).report;
    assert!(
        matches!(report.verdict, Verdict::Pass),
        "seed {seed}: {:?}",
        report.verdict
    );
    report
}

/// Runs one seed in a fresh madsim runtime.
pub fn run(options: &SimOptions) -> RunOutput {
    let wall = Instant::now();
    let runtime =
        madsim::runtime::Runtime::with_seed_and_config(options.seed, madsim::Config::default());
    // A panic anywhere in the simulated cluster is a failed seed, not a
    // crashed sweep: record its message quietly and report it.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
    }));
    let simulation = simulate(options.clone());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(simulation)
    }));
    std::panic::set_hook(previous_hook);
    let (mut report, trace, history) = match result {
        Ok(output) => output,
        Err(_) => {
            let message = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| "unknown panic".into());
            let report = RunReport {
                seed: options.seed,
                ops: 0,
                unknown_ops: 0,
                mix: options.fault_mix(),
                faults: 0,
                faults_by_kind: BTreeMap::new(),
                stranger: StrangerReport::default(),
                leader_terms: 0,
                group_leader_terms: Vec::new(),
                snapshot_loads: 0,
                resumptions: 0,
                recovery_bound: Duration::ZERO,
                recoveries: Vec::new(),
                churn: None,
                quiet_samples: (0, 0),
                durability: Checked::default(),
                sim_ns: 0,
                wall: Duration::ZERO,
                verdict: Verdict::Correctness(vec![Violation::Panic { message }]),
            };
            (report, Trace::new(false), History::new())
        }
    };
    report.wall = wall.elapsed();
    RunOutput {
        report,
        trace,
        history,
    }
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs one simulation inside the current madsim runtime (for
/// `Runtime::check_determinism`, which builds the runtime itself).
pub async fn simulate_in_current_runtime(options: SimOptions) -> RunReport {
    simulate(options).await.0
}

async fn simulate(options: SimOptions) -> (RunReport, Trace, History) {
    let trace = Trace::new(options.trace);
    let groups = options.groups.max(1);
    let group_observations: Vec<Arc<Mutex<Observations>>> =
        (0..groups).map(|_| Arc::default()).collect();
    // The first group's: what the nemesis' tactics and stranger report to.
    let observations = group_observations[0].clone();
    let mut cluster = SimCluster::start(
        options.nodes,
        options.seed,
        options.raft.clone(),
        options.starting_voters(),
        ServerSetup {
            sessions: options.session_options(),
            on_disk: options.disk_state_machine,
            planted_divergence: options.planted_divergence,
            shared_log: options.shared_log,
        },
        group_observations,
        trace.clone(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let contexts: Vec<ClientContext> = cluster
        .groups
        .iter()
        .map(|group| ClientContext {
            members: group.members.clone(),
            read_maps: group.read_maps.clone(),
            history: Arc::new(Mutex::new(History::new())),
            acknowledged: Arc::default(),
            stop: stop.clone(),
            keys: options.keys,
            op_timeout: options.op_timeout,
            sessions: options.sessions,
            idle_period: options.raft.quiesce_after.map(crate::quiet::idle_period),
        })
        .collect();
    let clients_node = madsim::runtime::Handle::current()
        .create_node()
        .name("clients")
        .ip("10.0.1.1".parse().expect("ip"))
        .build();
    // Client `c` works on group `c mod groups`.
    let clients: Vec<_> = (0..options.clients)
        .map(|client| {
            let ctx = contexts[client % groups].clone();
            clients_node.spawn(run_client(client as u64, options.seed, ctx))
        })
        .collect();
    let quiet_samples = crate::quiet::QuietSamples::default();
    if options.raft.quiesce_after.is_some() {
        let members = contexts.iter().flat_map(|c| c.members.clone()).collect();
        let sampler = quiet_samples.clone().run(members, stop.clone());
        clients_node.spawn(sampler);
    }

    // Fault phase: server faults hit every group; the group-level ones
    // (membership, transfers, tactics) aim at the first.
    let mut nemesis = Nemesis::new(
        options.seed,
        options.starting_voters(),
        options.fault_mix(),
        observations.clone(),
        trace.clone(),
    );
    nemesis.recovery_bound = recovery_bound(&options.raft, &transport_options());
    nemesis.clients = Some(contexts[0].clone());
    nemesis.run(&mut cluster, options.fault_phase).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }

    // Liveness phase: heal; a write must commit in every group within the
    // recovery bound, leadership must stay put over the fault-free tail,
    // and everyone must converge.
    nemesis.heal_all(&mut cluster);
    let healed = tokio::time::Instant::now();
    trace.event(SimCluster::now_ns(), "heal_all", json!({}));
    let (mut liveness, recovery, churn) = final_liveness(&cluster, &options, healed).await;
    if let Some(lull) = nemesis.lull_failure.take() {
        liveness = Err(lull);
    }
    let mut recoveries = std::mem::take(&mut nemesis.lull_recoveries);
    recoveries.extend(recovery);

    let histories: Vec<History> = contexts
        .iter()
        .map(|c| std::mem::take(&mut *c.history.lock().expect("history")))
        .collect();
    // Each group's own observations: a violation in any group is the run's,
    // named by its group.
    let mut violations: Vec<Violation> = cluster
        .groups
        .iter()
        .flat_map(|group| {
            let observed = group.observations.lock().expect("observations");
            in_group(groups, group.index, observed.violations().to_vec())
        })
        .collect();
    let verdict = match liveness {
        Err(reason) if violations.is_empty() => Verdict::Liveness(reason),
        Err(_) => Verdict::Correctness(violations),
        Ok(leaders) => {
            let mut in_effect = Vec::new();
            for g in 0..groups {
                in_effect.push(configurations_in_effect(&cluster, g).await);
            }
            for (g, in_effect) in in_effect.iter().enumerate() {
                let checked = GroupChecks {
                    leader: leaders[g],
                    in_effect,
                    history: &histories[g],
                    acknowledged: &contexts[g].acknowledged,
                    sessions: options.sessions,
                };
                let found = checked.run(&mut cluster, g);
                violations.extend(in_group(groups, g, found));
            }
            if violations.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Correctness(violations)
            }
        }
    };
    let (mut snapshot_loads, mut resumptions) = (0, 0);
    let mut group_leader_terms = Vec::new();
    for group in &cluster.groups {
        let observed = group.observations.lock().expect("observations");
        group_leader_terms.push(observed.leader_terms());
        snapshot_loads += observed.snapshot_loads();
        resumptions += observed.resumptions();
    }
    let report = RunReport {
        seed: options.seed,
        ops: histories.iter().map(History::len).sum(),
        unknown_ops: histories
            .iter()
            .flat_map(|h| h.records())
            .filter(|r| r.outcome == Outcome::Unknown)
            .count(),
        mix: options.fault_mix(),
        faults: nemesis.injected,
        faults_by_kind: nemesis.injected_by_kind.clone(),
        stranger: nemesis.stranger.report(),
        leader_terms: group_leader_terms.iter().sum(),
        group_leader_terms,
        snapshot_loads,
        resumptions,
        recovery_bound: recovery_bound(&options.raft, &transport_options()),
        recoveries,
        churn,
        quiet_samples: quiet_samples.counts(),
        durability: cluster.promises().checked(),
        sim_ns: SimCluster::now_ns(),
        wall: Duration::ZERO,
        verdict,
    };
    let history = histories.into_iter().next().unwrap_or_default();
    (report, trace, history)
}

/// The end-of-run checks of one group, over its members' durable logs, its
/// client history and what its clients were told.
struct GroupChecks<'a> {
    /// The group's final leader.
    leader: NodeId,
    /// What its running members had in effect just before the stop.
    in_effect: &'a BTreeMap<NodeId, InEffect>,
    history: &'a History,
    acknowledged: &'a Mutex<Vec<(usize, Bytes)>>,
    sessions: bool,
}

impl GroupChecks<'_> {
    /// Stops the servers (if still running) and checks group `g` (by
    /// index): log matching, configurations, leader completeness, no
    /// acknowledged write lost, linearizability.
    fn run(&self, cluster: &mut SimCluster, g: usize) -> Vec<Violation> {
        let mut violations = Vec::new();
        let logs = cluster.durable_logs(g);
        violations.extend(check_log_matching(&logs));
        violations.extend(check_configurations(self.in_effect, &logs));
        let states: Vec<_> = self
            .in_effect
            .iter()
            .map(|(id, s)| (*id, s.last, s.membership.clone()))
            .collect();
        violations.extend(check_configurations_agree(&states));
        let observations = cluster.groups[g].observations.clone();
        if let Some(leader_log) = logs.get(&self.leader) {
            let observed = observations.lock().expect("observations");
            let applied = observed.applied_commands().map(|(id, _)| id);
            violations.extend(check_leader_completeness(self.leader, leader_log, applied));
            let acknowledged = self.acknowledged.lock().expect("acknowledged").clone();
            violations.extend(check_acknowledged_writes(
                leader_log,
                observed.applied_commands(),
                &acknowledged,
                self.sessions,
            ));
        }
        // A budget keeps a pathological history from stalling a sweep;
        // running out is reported, never taken for a pass.
        let budget = linearizability::CheckOptions {
            max_steps: Some(20_000_000),
            ..Default::default()
        };
        let mut verdict = linearizability::check_with(self.history, &budget);
        if matches!(verdict, linearizability::Verdict::Timeout { .. }) {
            // Undecided: many writes of unknown outcome make the search
            // explode. Those no state machine ever applied never took
            // effect; with them marked failed the search is smaller, and a
            // pass still proves the whole history (see
            // `History::resolve_unknowns`).
            let resolved = {
                let observed = observations.lock().expect("observations");
                let applied: BTreeSet<&Bytes> =
                    observed.applied_commands().map(|(_, data)| data).collect();
                self.history.resolve_unknowns(|record| {
                    applied.contains(&KvCommand::of(&record.key, &record.operation).encode())
                })
            };
            verdict = linearizability::check_with(&resolved, &budget);
        }
        if !verdict.is_linearizable() {
            violations.push(Violation::NotLinearizable {
                detail: format!("{verdict:?}"),
            });
        }
        violations
    }
}

/// How long the fault-free tail runs once the cluster converged.
const TAIL: Duration = Duration::from_secs(5);

/// After the final heal: a write commits in every group within the
/// recovery bound, every member converges within the heal deadline, and
/// the tail that follows sees no churn beyond its bound in any group.
/// Returns each group's leader, or why liveness failed; the churn summed
/// over the groups.
async fn final_liveness(
    cluster: &SimCluster,
    options: &SimOptions,
    healed: tokio::time::Instant,
) -> (Result<Vec<NodeId>, String>, Option<Recovery>, Option<Churn>) {
    let bound = recovery_bound(&options.raft, &transport_options());
    let recovery = match recover_all(cluster, healed, bound, options.heal_deadline).await {
        Ok(recovery) => recovery,
        Err(e) => return (Err(e), None, None),
    };
    if let Err(e) = converge_all(cluster, healed + options.heal_deadline).await {
        return (Err(e), Some(recovery), None);
    }
    let churns = fault_free_tails(cluster, TAIL).await;
    let churn = churns.iter().fold(Churn::default(), |sum, c| Churn {
        elections: sum.elections + c.elections,
        leaders: sum.leaders + c.leaders,
    });
    let groups = churns.len();
    for (g, group_churn) in churns.iter().enumerate() {
        if group_churn.elections > TAIL_ELECTIONS_MAX {
            let message = format!(
                "leadership churned over the fault-free tail: {} elections and {} new leaders in {TAIL:?} after the cluster converged (bound: {TAIL_ELECTIONS_MAX} election)",
                group_churn.elections, group_churn.leaders
            );
            return (
                Err(liveness::in_group(groups, g, message)),
                Some(recovery),
                Some(churn),
            );
        }
    }
    // The leaders at the end: the ones whose logs the final checks read.
    let deadline = tokio::time::Instant::now() + options.heal_deadline;
    let leaders = converge_all(cluster, deadline).await;
    (leaders, Some(recovery), Some(churn))
}

/// Every running member's configuration and last entry in group `g` (by
/// index), just before the servers stop.
async fn configurations_in_effect(cluster: &SimCluster, g: usize) -> BTreeMap<NodeId, InEffect> {
    let mut in_effect = BTreeMap::new();
    for i in 0..cluster.nodes.len() {
        if let Some(member) = cluster.member_in(g, i)
            && let Ok(status) = member.status().await
        {
            let state = InEffect {
                membership: status.membership,
                last: status.last_log_id,
                durable: status.persisted >= status.last_log_id.index,
            };
            in_effect.insert(status.id, state);
        }
    }
    in_effect
}
