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
use crate::cluster::SimCluster;
use crate::fault_mix::{FaultKind, FaultWeights};
use crate::final_checks::{
    check_acknowledged_writes, check_leader_completeness, check_log_matching,
};
use crate::history::History;
use crate::kv_machine::KvCommand;
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
                mix: options.fault_mix(),
                faults: 0,
                faults_by_kind: BTreeMap::new(),
                stranger: StrangerReport::default(),
                leader_terms: 0,
                snapshot_loads: 0,
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
        observations.clone(),
        trace.clone(),
    );
    let ctx = ClientContext {
        members: cluster.member_slots(),
        history: Arc::new(Mutex::new(History::new())),
        acknowledged: Arc::default(),
        stop: Arc::new(AtomicBool::new(false)),
        keys: options.keys,
        op_timeout: options.op_timeout,
    };
    let clients_node = madsim::runtime::Handle::current()
        .create_node()
        .name("clients")
        .ip("10.0.1.1".parse().expect("ip"))
        .build();
    let clients: Vec<_> = (0..options.clients as u64)
        .map(|client| clients_node.spawn(run_client(client, options.seed, ctx.clone())))
        .collect();

    // Fault phase.
    let mut nemesis = Nemesis::new(
        options.seed,
        options.starting_voters(),
        options.fault_mix(),
        observations.clone(),
        trace.clone(),
    );
    nemesis.run(&mut cluster, options.fault_phase).await;
    ctx.stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }

    // Liveness phase: heal, then a write must commit and everyone converge.
    nemesis.heal_all(&mut cluster);
    trace.event(SimCluster::now_ns(), "heal_all", json!({}));
    let liveness = require_progress(&cluster, options.heal_deadline).await;

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
            let logs = cluster.durable_logs();
            violations.extend(check_log_matching(&logs));
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
    drop(observed);
    let report = RunReport {
        seed: options.seed,
        ops: history.len(),
        mix: options.fault_mix(),
        faults: nemesis.injected,
        faults_by_kind: nemesis.injected_by_kind.clone(),
        stranger: nemesis.stranger.report(),
        leader_terms,
        snapshot_loads,
        sim_ns: SimCluster::now_ns(),
        wall: Duration::ZERO,
        verdict,
    };
    (report, trace, history)
}

/// After healing: some server accepts a write, then every running server
/// applies and persists up to the same commit index. Returns the leader.
async fn require_progress(cluster: &SimCluster, deadline: Duration) -> Result<NodeId, String> {
    let end = tokio::time::Instant::now() + deadline;
    let probe = KvCommand::Put {
        key: "liveness".into(),
        value: "probe".into(),
    }
    .encode();
    let leader = 'found: loop {
        for i in 0..cluster.nodes.len() {
            if let Some(member) = cluster.member(i) {
                let attempt =
                    tokio::time::timeout(Duration::from_millis(500), member.apply(probe.clone()))
                        .await;
                if let Ok(Ok(_)) = attempt {
                    break 'found member.id();
                }
            }
        }
        if tokio::time::Instant::now() >= end {
            let mut roles = Vec::new();
            for i in 0..cluster.nodes.len() {
                if let Some(member) = cluster.member(i)
                    && let Ok(s) = member.status().await
                {
                    roles.push(format!("{}:{:?}@{}", s.id, s.role, s.hard_state.term));
                }
            }
            return Err(format!(
                "no write committed within {deadline:?} of healing; nodes: {}",
                roles.join(" ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loop {
        // Every member of the leader's configuration (servers removed by a
        // membership change no longer follow) has applied and persisted up
        // to the same commit index.
        let mut statuses = Vec::new();
        for i in 0..cluster.nodes.len() {
            if let Some(member) = cluster.member(i)
                && let Ok(status) = member.status().await
            {
                statuses.push(status);
            }
        }
        let leading = statuses
            .iter()
            .filter(|s| s.role == oar::core::Role::Leader)
            .max_by_key(|s| s.hard_state.term);
        let states: Vec<_> = statuses
            .iter()
            .map(|s| (s.id, s.committed, s.applied, s.persisted))
            .collect();
        let converged = leading.is_some_and(|leading| {
            leading.membership.members().iter().all(|id| {
                let index = (id.0 as usize).saturating_sub(1);
                cluster.unrecoverable(index)
                    || statuses.iter().any(|s| {
                        s.id == *id
                            && s.committed == leading.committed
                            && s.applied == s.committed
                            && s.persisted >= s.committed
                    })
            })
        });
        if converged {
            return Ok(leader);
        }
        if tokio::time::Instant::now() >= end {
            return Err(format!(
                "servers did not converge within {deadline:?} of healing: {states:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
