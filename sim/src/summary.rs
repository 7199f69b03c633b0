//! A sweep's summary: what its seeds did and found, the tables the sweep
//! prints, and the same as JSON, so that a sweep can be cut into shards
//! (`sweep --shard I/N`: every N-th seed from the I-th), run anywhere, and
//! merged (`merge`) into the tables one sweep would have printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::durability::Checked;
use crate::fault_mix::FaultKind;
use crate::run::{RunReport, Verdict};
use crate::stranger::Refusals;

/// Which slice of a range of seeds a sweep runs: seed `s` where
/// `(s - start) % of == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This slice, from 0.
    pub index: u64,
    /// How many slices.
    pub of: u64,
}

impl Shard {
    /// The whole range.
    pub const WHOLE: Shard = Shard { index: 0, of: 1 };

    /// Parses `I/N` (0 <= I < N).
    ///
    /// # Errors
    /// Text that is not two numbers with I < N.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text.split_once('/').ok_or("expected I/N")?;
        let index = i.parse::<u64>().map_err(|e| e.to_string())?;
        let of = n.parse::<u64>().map_err(|e| e.to_string())?;
        if of == 0 || index >= of {
            return Err(format!("shard {index}/{of}: need 0 <= I < N"));
        }
        Ok(Shard { index, of })
    }

    /// This slice's seeds of `range`.
    pub fn seeds(self, range: Range<u64>) -> impl Iterator<Item = u64> {
        range
            .start
            .checked_add(self.index)
            .into_iter()
            .flat_map(move |first| (first..range.end).step_by(self.of as usize))
    }
}

/// A failing seed: its line, what failed, and how to replay it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Whether safety (rather than liveness) failed.
    pub correctness: bool,
    /// Its one-line report.
    pub line: String,
    /// Its fault mix.
    pub mix: String,
    /// What failed, one item a line.
    pub details: Vec<String>,
    /// The command that replays it.
    pub replay: String,
}

/// Everything a sweep (or a shard of one) reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The sweep's shape (nodes, faults, …), as its header prints it.
    pub shape: String,
    /// The whole sweep's seeds.
    pub range: (u64, u64),
    /// The shards these results cover, and for each how many seeds it ran.
    pub shards: BTreeMap<u64, u64>,
    /// How many shards the sweep was cut into.
    pub of: u64,
    /// Seeds run.
    pub seeds: u64,
    /// Client operations.
    pub ops: u64,
    /// Client operations of unknown outcome (indeterminate).
    #[serde(default)]
    pub unknown_ops: u64,
    /// Faults injected.
    pub faults: u64,
    /// Terms with a leader.
    pub terms: u64,
    /// Snapshots loaded.
    pub loads: u64,
    /// Simulated nanoseconds.
    pub sim_ns: u64,
    /// Wall-clock seconds (summed over shards).
    pub wall_s: f64,
    /// Per fault kind: seeds whose mix had it on.
    pub seeds_on: BTreeMap<String, u64>,
    /// Per fault kind: how often injected (tactics: how often their window
    /// was hit).
    pub injected: BTreeMap<String, u64>,
    /// Stranger actions.
    pub stranger_actions: u64,
    /// What the servers refused meanwhile.
    pub refusals: Refusals,
    /// Nanoseconds from each measured heal to its first commit.
    pub recoveries_ns: Vec<u64>,
    /// The longest stall against its bound, in millionths, and its seed.
    pub worst_stall: Option<(u64, u64)>,
    /// Fault-free tails measured.
    pub tails: u64,
    /// Elections over the tails.
    pub tail_elections: u64,
    /// Leaders over the tails.
    pub tail_leaders: u64,
    /// Tails with an election.
    pub churned_tails: u64,
    /// What restarts checked.
    pub durability: Checked,
    /// Failing seeds, ascending.
    pub failures: Vec<Failure>,
}

impl Summary {
    /// An empty summary of `shard` of the seeds `range`.
    pub fn new(shape: String, range: Range<u64>, shard: Shard) -> Summary {
        Summary {
            shape,
            range: (range.start, range.end),
            shards: BTreeMap::from([(shard.index, 0)]),
            of: shard.of,
            ..Summary::default()
        }
    }

    /// Adds one seed's report; `replay` replays it.
    pub fn add(&mut self, report: &RunReport, line: String, replay: String) {
        self.seeds += 1;
        if let Some(ran) = self.shards.values_mut().next() {
            *ran += 1;
        }
        self.ops += report.ops as u64;
        self.unknown_ops += report.unknown_ops as u64;
        self.faults += report.faults;
        self.terms += report.leader_terms as u64;
        self.loads += report.snapshot_loads as u64;
        self.sim_ns += report.sim_ns;
        for &kind in FaultKind::ALL {
            if report.mix.weight(kind) > 0 {
                *self.seeds_on.entry(kind.name().into()).or_default() += 1;
            }
        }
        for (kind, &n) in &report.faults_by_kind {
            *self.injected.entry(kind.name().into()).or_default() += n;
        }
        self.stranger_actions += report.stranger.actions;
        self.refusals.add(report.stranger.refusals);
        for r in &report.recoveries {
            self.recoveries_ns.push(r.committed.as_nanos() as u64);
            let bound = report.recovery_bound.as_nanos().max(1);
            let share = (r.stall.as_nanos() * 1_000_000 / bound) as u64;
            self.worst_stall = worse(self.worst_stall, Some((share, report.seed)));
        }
        if let Some(churn) = report.churn {
            self.tails += 1;
            self.tail_elections += churn.elections;
            self.tail_leaders += churn.leaders as u64;
            self.churned_tails += u64::from(churn.elections > 0);
        }
        let d = report.durability;
        self.durability.restarts += d.restarts;
        self.durability.votes += d.votes;
        self.durability.appends += d.appends;
        self.durability.snapshots += d.snapshots;
        let details = match &report.verdict {
            Verdict::Pass => return,
            Verdict::Liveness(reason) => vec![format!("liveness: {reason}")],
            Verdict::Correctness(violations) => violations
                .iter()
                .take(10)
                .map(|v| format!("violation: {v:?}"))
                .collect(),
        };
        self.failures.push(Failure {
            seed: report.seed,
            correctness: matches!(report.verdict, Verdict::Correctness(_)),
            line,
            mix: report.mix.to_string(),
            details,
            replay,
        });
    }

    /// Combines shards of one sweep: they must have the same shape, range
    /// and number of shards, and no shard may come twice.
    ///
    /// # Errors
    /// Parts of different sweeps, or a shard given twice.
    pub fn merge(parts: Vec<Summary>) -> Result<Summary, String> {
        let mut parts = parts.into_iter();
        let mut all = parts.next().ok_or("nothing to merge")?;
        for part in parts {
            if (&part.shape, part.range, part.of) != (&all.shape, all.range, all.of) {
                return Err(format!(
                    "not shards of one sweep: '{}' {:?} in {} and '{}' {:?} in {}",
                    all.shape, all.range, all.of, part.shape, part.range, part.of
                ));
            }
            for (shard, ran) in part.shards {
                if all.shards.insert(shard, ran).is_some() {
                    return Err(format!("shard {shard}/{} given twice", all.of));
                }
            }
            all.seeds += part.seeds;
            all.ops += part.ops;
            all.unknown_ops += part.unknown_ops;
            all.faults += part.faults;
            all.terms += part.terms;
            all.loads += part.loads;
            all.sim_ns += part.sim_ns;
            all.wall_s += part.wall_s;
            for (kind, n) in part.seeds_on {
                *all.seeds_on.entry(kind).or_default() += n;
            }
            for (kind, n) in part.injected {
                *all.injected.entry(kind).or_default() += n;
            }
            all.stranger_actions += part.stranger_actions;
            all.refusals.add(part.refusals);
            all.recoveries_ns.extend(part.recoveries_ns);
            all.worst_stall = worse(all.worst_stall, part.worst_stall);
            all.tails += part.tails;
            all.tail_elections += part.tail_elections;
            all.tail_leaders += part.tail_leaders;
            all.churned_tails += part.churned_tails;
            let d = part.durability;
            all.durability.restarts += d.restarts;
            all.durability.votes += d.votes;
            all.durability.appends += d.appends;
            all.durability.snapshots += d.snapshots;
            all.failures.extend(part.failures);
        }
        all.failures.sort_by_key(|f| f.seed);
        Ok(all)
    }

    /// What is missing for these results to cover the whole sweep: shards
    /// not given, and shards that stopped early.
    pub fn missing(&self) -> Vec<String> {
        let range = self.range.0..self.range.1;
        let mut missing = Vec::new();
        for index in 0..self.of {
            let shard = Shard { index, of: self.of };
            let expected = shard.seeds(range.clone()).count() as u64;
            match self.shards.get(&index) {
                None => missing.push(format!("shard {index}/{} ({expected} seeds)", self.of)),
                Some(&ran) if ran < expected => missing.push(format!(
                    "shard {index}/{} ran {ran} of its {expected} seeds",
                    self.of
                )),
                Some(_) => {}
            }
        }
        missing
    }

    /// The sweep's tables, as it prints them.
    pub fn tables(&self) -> String {
        let mut out = String::new();
        let correctness = self.failures.iter().filter(|f| f.correctness).count();
        let liveness = self.failures.len() - correctness;
        let wall = self.wall_s.max(f64::MIN_POSITIVE);
        let sim_s = self.sim_ns as f64 / 1e9;
        let indeterminate = format!(
            "{:.2} %",
            self.unknown_ops as f64 * 100.0 / self.ops.max(1) as f64
        );
        let _ = writeln!(
            out,
            "oar-sim sweep: seeds {}..{}, {}",
            self.range.0, self.range.1, self.shape
        );
        let _ = writeln!(
            out,
            "| seeds | passed | safety failures | liveness failures | client ops | indeterminate | faults | leader terms | snapshot loads | simulated s | wall s | seeds/s | sim s / wall s |"
        );
        let _ = writeln!(
            out,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let _ = writeln!(
            out,
            "| {} | {} | {correctness} | {liveness} | {} | {indeterminate} | {} | {} | {} | {sim_s:.0} | {wall:.1} | {:.2} | {:.1} |",
            self.seeds,
            self.seeds - self.failures.len() as u64,
            self.ops,
            self.faults,
            self.terms,
            self.loads,
            self.seeds as f64 / wall,
            sim_s / wall
        );
        self.liveness_table(&mut out);
        self.kind_table(&mut out);
        for f in &self.failures {
            let _ = writeln!(out, "{}", f.line);
            let _ = writeln!(out, "  mix: {}", f.mix);
            for d in &f.details {
                let _ = writeln!(out, "  {d}");
            }
            let _ = writeln!(out, "  replay: {}", f.replay);
        }
        out
    }

    fn liveness_table(&self, out: &mut String) {
        let mut times = self.recoveries_ns.clone();
        times.sort_unstable();
        let at = |q: f64| {
            times
                .get(((times.len() as f64 - 1.0) * q) as usize)
                .map_or("-".into(), |&t| format!("{:.2}", t as f64 / 1e9))
        };
        let worst = self.worst_stall.map_or("-".into(), |(share, seed)| {
            format!("{:.0} % (seed {seed})", share as f64 / 1e4)
        });
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| heals checked | first commit p50 s | p99 s | max s | longest stall / bound | tails | tail elections | tail leaders | tails with an election |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {worst} | {} | {} | {} | {} |",
            times.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            self.tails,
            self.tail_elections,
            self.tail_leaders,
            self.churned_tails
        );
        let d = self.durability;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "durability: {} restarts checked what their servers had promised: {} votes, {} append acknowledgements, {} snapshot installs",
            d.restarts, d.votes, d.appends, d.snapshots
        );
    }

    fn kind_table(&self, out: &mut String) {
        let _ = writeln!(out);
        let _ = writeln!(out, "| fault kind | seeds with it on | injected |");
        let _ = writeln!(out, "|---|---:|---:|");
        for &kind in FaultKind::ALL {
            let on = self.seeds_on.get(kind.name()).copied().unwrap_or(0);
            let injected = self.injected.get(kind.name()).copied().unwrap_or(0);
            let note = if kind.is_tactic() {
                " (windows hit)"
            } else {
                ""
            };
            let _ = writeln!(out, "| {}{note} | {on} | {injected} |", kind.name());
        }
        let r = &self.refusals;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "stranger: {} actions; refused at the target meanwhile: {} handshakes, {} forbidden requests, {} forbidden messages, {} malformed frames, {} oversized frames, {} connections",
            self.stranger_actions,
            r.handshakes,
            r.forbidden_requests,
            r.forbidden_messages,
            r.malformed_frames,
            r.oversized_frames,
            r.connections
        );
    }
}

/// The worse of two stalls (the larger share; the lower seed on a tie, so
/// that shards merge to what one sweep finds).
fn worse(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<(u64, u64)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(
            if (b.0, std::cmp::Reverse(b.1)) > (a.0, std::cmp::Reverse(a.1)) {
                b
            } else {
                a
            },
        ),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cut_a_range_into_disjoint_slices_that_cover_it() {
        let mut seen: Vec<u64> = (0..3)
            .flat_map(|index| Shard { index, of: 3 }.seeds(5..15))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (5..15).collect::<Vec<_>>());
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, of: 3 }));
        assert!(Shard::parse("3/3").is_err() && Shard::parse("0/0").is_err());
        assert_eq!(Shard { index: 4, of: 5 }.seeds(0..3).count(), 0);
    }

    #[test]
    fn merging_needs_every_shard_of_one_sweep_once() {
        let part = |index| Summary::new("3 nodes".into(), 0..10, Shard { index, of: 2 });
        let mut a = part(0);
        a.shards.insert(0, 5);
        let mut b = part(1);
        b.shards.insert(1, 4);
        let merged = Summary::merge(vec![a.clone(), b]).expect("one sweep");
        assert_eq!(merged.missing(), ["shard 1/2 ran 4 of its 5 seeds"]);
        assert_eq!(
            Summary::merge(vec![a.clone()])
                .expect("one")
                .missing()
                .len(),
            1
        );
        assert!(Summary::merge(vec![a.clone(), a.clone()]).is_err());
        let mut other = part(1);
        other.shape = "5 nodes".into();
        assert!(Summary::merge(vec![a, other]).is_err());
    }
}
