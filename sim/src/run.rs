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
use crate::cluster::{MachineSetup, SimCluster, transport_options};
use crate::durability::Checked;
use crate::fault_mix::{FaultKind, FaultWeights};
use crate::final_checks::{
    InEffect, check_acknowledged_writes, check_configurations, check_configurations_agree,
    check_leader_completeness, check_log_matching,
};
use crate::history::{History, Outcome};
use crate::kv_machine::KvCommand;
use crate::liveness::{
    Churn, Recovery, TAIL_ELECTIONS_MAX, converge, fault_free_tail, recover, recovery_bound,
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
    /// Terms that had a leader.
    pub leader_terms: usize,
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
    /// The client history.
    pub history: History,
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
    let observations = Arc::new(Mutex::new(Observations::default()));
    let mut cluster = SimCluster::start(
        options.nodes,
        options.seed,
        options.raft.clone(),
        options.starting_voters(),
        MachineSetup {
            sessions: options.session_options(),
            on_disk: options.disk_state_machine,
        },
        observations.clone(),
        trace.clone(),
    );
    let ctx = ClientContext {
        members: cluster.member_slots(),
        read_maps: cluster.read_maps(),
        history: Arc::new(Mutex::new(History::new())),
        acknowledged: Arc::default(),
        stop: Arc::new(AtomicBool::new(false)),
        keys: options.keys,
        op_timeout: options.op_timeout,
        sessions: options.sessions,
        idle_period: options.raft.quiesce_after.map(crate::quiet::idle_period),
    };
    let clients_node = madsim::runtime::Handle::current()
        .create_node()
        .name("clients")
        .ip("10.0.1.1".parse().expect("ip"))
        .build();
    let clients: Vec<_> = (0..options.clients as u64)
        .map(|client| clients_node.spawn(run_client(client, options.seed, ctx.clone())))
        .collect();
    let quiet_samples = crate::quiet::QuietSamples::default();
    if options.raft.quiesce_after.is_some() {
        let sampler = quiet_samples
            .clone()
            .run(ctx.members.clone(), ctx.stop.clone());
        clients_node.spawn(sampler);
    }

    // Fault phase.
    let mut nemesis = Nemesis::new(
        options.seed,
        options.starting_voters(),
        options.fault_mix(),
        observations.clone(),
        trace.clone(),
    );
    nemesis.recovery_bound = recovery_bound(&options.raft, &transport_options());
    nemesis.clients = Some(ctx.clone());
    nemesis.run(&mut cluster, options.fault_phase).await;
    ctx.stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }

    // Liveness phase: heal; a write must commit within the recovery bound,
    // leadership must stay put over the fault-free tail, and everyone must
    // converge.
    nemesis.heal_all(&mut cluster);
    let healed = tokio::time::Instant::now();
    trace.event(SimCluster::now_ns(), "heal_all", json!({}));
    let (mut liveness, recovery, churn) =
        final_liveness(&cluster, &observations, &options, healed).await;
    if let Some(lull) = nemesis.lull_failure.take() {
        liveness = Err(lull);
    }
    let mut recoveries = std::mem::take(&mut nemesis.lull_recoveries);
    recoveries.extend(recovery);

    let history = std::mem::take(&mut *ctx.history.lock().expect("history"));
    let mut violations = observations
        .lock()
        .expect("observations")
        .violations()
        .to_vec();
    let verdict = match liveness {
        Err(reason) if violations.is_empty() => Verdict::Liveness(reason),
        Err(_) => Verdict::Correctness(violations),
        Ok(leader) => {
            let in_effect = configurations_in_effect(&cluster).await;
            let logs = cluster.durable_logs();
            violations.extend(check_log_matching(&logs));
            violations.extend(check_configurations(&in_effect, &logs));
            let states: Vec<_> = in_effect
                .iter()
                .map(|(id, s)| (*id, s.last, s.membership.clone()))
                .collect();
            violations.extend(check_configurations_agree(&states));
            if let Some(leader_log) = logs.get(&leader) {
                let observed = observations.lock().expect("observations");
                let applied = observed.applied_commands().map(|(id, _)| id);
                violations.extend(check_leader_completeness(leader, leader_log, applied));
                let acknowledged: Vec<(usize, Bytes)> =
                    ctx.acknowledged.lock().expect("acknowledged").clone();
                violations.extend(check_acknowledged_writes(
                    leader_log,
                    observed.applied_commands(),
                    &acknowledged,
                    options.sessions,
                ));
            }
            // A budget keeps a pathological history from stalling a sweep;
            // running out is reported, never taken for a pass.
            let budget = linearizability::CheckOptions {
                max_steps: Some(20_000_000),
                ..Default::default()
            };
            let mut verdict = linearizability::check_with(&history, &budget);
            if matches!(verdict, linearizability::Verdict::Timeout { .. }) {
                // Undecided: many writes of unknown outcome make the search
                // explode. Those no state machine ever applied never took
                // effect; with them marked failed the search is smaller,
                // and a pass still proves the whole history (see
                // `History::resolve_unknowns`).
                let resolved = {
                    let observed = observations.lock().expect("observations");
                    let applied: BTreeSet<&Bytes> =
                        observed.applied_commands().map(|(_, data)| data).collect();
                    history.resolve_unknowns(|record| {
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
            if violations.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Correctness(violations)
            }
        }
    };
    let observed = observations.lock().expect("observations");
    let (leader_terms, snapshot_loads) = (observed.leader_terms(), observed.snapshot_loads());
    let resumptions = observed.resumptions();
    drop(observed);
    let report = RunReport {
        seed: options.seed,
        ops: history.len(),
        unknown_ops: history
            .records()
            .iter()
            .filter(|r| r.outcome == Outcome::Unknown)
            .count(),
        mix: options.fault_mix(),
        faults: nemesis.injected,
        faults_by_kind: nemesis.injected_by_kind.clone(),
        stranger: nemesis.stranger.report(),
        leader_terms,
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
    (report, trace, history)
}

/// How long the fault-free tail runs once the cluster converged.
const TAIL: Duration = Duration::from_secs(5);

/// After the final heal: a write commits within the recovery bound, every
/// member converges within the heal deadline, and the tail that follows
/// sees no churn beyond its bound. Returns the leader, or why liveness
/// failed.
async fn final_liveness(
    cluster: &SimCluster,
    observations: &Arc<Mutex<Observations>>,
    options: &SimOptions,
    healed: tokio::time::Instant,
) -> (Result<NodeId, String>, Option<Recovery>, Option<Churn>) {
    let bound = recovery_bound(&options.raft, &transport_options());
    let recovery = match recover(cluster, healed, bound, options.heal_deadline).await {
        Ok(recovery) => recovery,
        Err(e) => return (Err(e), None, None),
    };
    if let Err(e) = converge(cluster, healed + options.heal_deadline).await {
        return (Err(e), Some(recovery), None);
    }
    let churn = fault_free_tail(cluster, observations, TAIL).await;
    if churn.elections > TAIL_ELECTIONS_MAX {
        let message = format!(
            "leadership churned over the fault-free tail: {} elections and {} new leaders in {TAIL:?} after the cluster converged (bound: {TAIL_ELECTIONS_MAX} election)",
            churn.elections, churn.leaders
        );
        return (Err(message), Some(recovery), Some(churn));
    }
    // The leader at the end: the one whose log the final checks read.
    let leader = converge(cluster, tokio::time::Instant::now() + options.heal_deadline).await;
    (leader, Some(recovery), Some(churn))
}

/// Every running server's configuration and last entry, just before the
/// servers stop.
async fn configurations_in_effect(cluster: &SimCluster) -> BTreeMap<NodeId, InEffect> {
    let mut in_effect = BTreeMap::new();
    for i in 0..cluster.nodes.len() {
        if let Some(member) = cluster.member(i)
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
