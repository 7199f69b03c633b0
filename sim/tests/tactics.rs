//! The targeted tactics reach their windows — learners left lingering,
//! leaders struck while they hold an uncommitted configuration, installs
//! followed by a campaign or a power cut, a leader paused while another
//! is elected and writes — and every such run passes.
#![cfg(madsim)]

use std::collections::BTreeMap;

use oar_sim::fault_mix::{FaultKind, FaultWeights};
use oar_sim::options::SimOptions;
use oar_sim::run::{Verdict, run};

const TACTICS: [FaultKind; 5] = [
    FaultKind::LingeringLearner,
    FaultKind::ConfigWindow,
    FaultKind::InstallCampaign,
    FaultKind::InstallRestart,
    FaultKind::LeasePause,
];

#[test]
fn every_tactic_hits_its_window_and_the_runs_pass() {
    let mut hits: BTreeMap<FaultKind, u64> = BTreeMap::new();
    for seed in 0..8 {
        let mut weights = FaultWeights::swarm(seed);
        for kind in TACTICS {
            weights = weights.with(kind, 40);
        }
        let options = SimOptions {
            nodes: 5,
            fault_weights: weights,
            ..SimOptions::new(seed)
        };
        let report = run(&options).report;
        assert!(
            matches!(report.verdict, Verdict::Pass),
            "seed {seed} (mix {}): {:?}",
            report.mix,
            report.verdict
        );
        for kind in TACTICS {
            *hits.entry(kind).or_default() +=
                report.faults_by_kind.get(&kind).copied().unwrap_or(0);
        }
    }
    for kind in TACTICS {
        assert!(hits[&kind] > 0, "{kind:?} never hit its window: {hits:?}");
    }
}
