//! The stranger forced on: a process outside the cluster keeps connecting
//! without credentials, with another cluster's, and with the right key
//! from an address no server's address book names, sending garbage,
//! forged Raft messages and admin requests. Every run must pass, and the
//! servers must have counted refusals of every kind — the proof that the
//! stranger reached the front door rather than a closed port.
#![cfg(madsim)]

use oar_sim::fault_mix::{FaultKind, FaultWeights};
use oar_sim::options::SimOptions;
use oar_sim::run::{Verdict, run};
use oar_sim::stranger::StrangerReport;

/// Runs `seeds` with `mix`, each of which must pass; what the stranger met.
fn stranger_runs(
    seeds: std::ops::Range<u64>,
    nodes: usize,
    mix: impl Fn(u64) -> FaultWeights,
) -> StrangerReport {
    let mut total = StrangerReport::default();
    for seed in seeds {
        let options = SimOptions {
            nodes,
            fault_weights: mix(seed),
            ..SimOptions::new(seed)
        };
        let report = run(&options).report;
        assert!(
            matches!(report.verdict, Verdict::Pass),
            "seed {seed} ({nodes} nodes, mix {}): {:?}",
            report.mix,
            report.verdict
        );
        assert!(report.ops > 100, "seed {seed} did work: {report:?}");
        total.actions += report.stranger.actions;
        total.refusals.add(report.stranger.refusals);
    }
    total
}

fn assert_every_refusal_seen(report: &StrangerReport) {
    let r = report.refusals;
    assert!(report.actions >= 20, "{report:?}");
    assert!(r.handshakes > 0, "no credentials or the wrong ones: {r:?}");
    assert!(r.forbidden_messages > 0, "forged Raft messages: {r:?}");
    assert!(
        r.forbidden_requests > 0,
        "admin requests from a peer: {r:?}"
    );
    assert!(
        r.malformed_frames + r.oversized_frames > 0,
        "garbage frames: {r:?}"
    );
}

#[test]
fn a_stranger_alone_is_refused_and_changes_nothing() {
    // No other fault: every forgery meets a healthy cluster whose
    // followers would take a real leader's appends at once.
    let report = stranger_runs(0..4, 3, |_| FaultWeights::only(FaultKind::Stranger, 1));
    assert_every_refusal_seen(&report);
}

#[test]
fn a_stranger_among_the_seeds_faults_is_refused() {
    let heavy = |seed| FaultWeights::swarm(seed).with(FaultKind::Stranger, 60);
    let mut report = stranger_runs(10..14, 3, heavy);
    let five = stranger_runs(20..22, 5, heavy);
    report.actions += five.actions;
    report.refusals.add(five.refusals);
    assert_every_refusal_seen(&report);
}
