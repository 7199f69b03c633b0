//! A sweep cut into shards, each written as JSON and read back, merges
//! into exactly the tables the whole sweep prints, failures included; a
//! shard missing or run short is reported.
#![cfg(madsim)]

use oar_sim::options::SimOptions;
use oar_sim::run::{RunReport, Verdict, run};
use oar_sim::summary::{Shard, Summary};

const SEEDS: std::ops::Range<u64> = 0..7;

fn add(summary: &mut Summary, report: &RunReport) {
    let line = format!("seed {} line", report.seed);
    summary.add(report, line, format!("replay {}", report.seed));
}

#[test]
fn merged_shards_print_what_the_whole_sweep_prints() {
    let mut reports: Vec<RunReport> = SEEDS.map(|s| run(&SimOptions::new(s)).report).collect();
    // One failing seed, to see failures merge in order too.
    reports[4].verdict = Verdict::Liveness("planted stall".into());
    let shape = "3 nodes".to_string();
    let mut whole = Summary::new(shape.clone(), SEEDS, Shard::WHOLE);
    for report in &reports {
        add(&mut whole, report);
    }
    whole.wall_s = 3.0;
    let shards: Vec<Summary> = (0..3)
        .rev()
        .map(|index| {
            let shard = Shard { index, of: 3 };
            let mut part = Summary::new(shape.clone(), SEEDS, shard);
            for seed in shard.seeds(SEEDS) {
                add(&mut part, &reports[seed as usize]);
            }
            part.wall_s = 1.0;
            let json = serde_json::to_string(&part).expect("serializes");
            serde_json::from_str(&json).expect("reads back")
        })
        .collect();
    let merged = Summary::merge(shards.clone()).expect("one sweep");
    assert!(merged.missing().is_empty(), "{:?}", merged.missing());
    assert_eq!(merged.tables(), whole.tables());
    assert!(
        merged.tables().contains("| 7 | 6 | 0 | 1 |"),
        "{}",
        merged.tables()
    );
    assert_eq!(merged.failures.len(), 1);
    // Without one shard, merge says which seeds are missing.
    let partial = Summary::merge(shards[1..].to_vec()).expect("one sweep");
    assert_eq!(partial.missing(), ["shard 2/3 (2 seeds)"]);
}
