//! The command line: `run` one seed or `sweep` a range, with a progress bar
//! and a summary table; failing seeds print the command that replays them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use oar_sim::fault_mix::{FaultKind, FaultWeights};
use oar_sim::options::{FaultSet, SimOptions};
use oar_sim::run::{RunReport, Verdict, run};
use oar_sim::stranger::Refusals;

/// Exit code of a run that lost liveness (TigerBeetle's convention).
const EXIT_LIVENESS: u8 = 128;
/// Exit code of a run that broke safety or linearizability.
const EXIT_CORRECTNESS: u8 = 129;

#[derive(Parser)]
#[command(
    name = "oar-sim",
    about = "Deterministic simulation of oar clusters under faults"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Shape {
    /// Raft nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Fault classes the nemesis may inject.
    #[arg(long, value_enum, default_value_t = FaultSet::All)]
    faults: FaultSet,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Simulated seconds of faults and load before healing.
    #[arg(long, default_value_t = 20)]
    fault_secs: u64,
    /// Fault weights `NAME=WEIGHT,…` over the seed's own mix (kinds not
    /// named keep the seed's weight; 0 switches a kind off).
    #[arg(long, value_parser = parse_weights)]
    weights: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed and print one line.
    Run {
        /// The seed.
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        shape: Shape,
        /// Write the event trace here, one JSON object a line.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Write the client history here, one JSON object a line.
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Run a range of seeds with a progress bar and a summary table.
    Sweep {
        /// Seeds as `start..end` (end excluded).
        #[arg(long, default_value = "0..1000", value_parser = parse_range)]
        seeds: Range<u64>,
        #[command(flatten)]
        shape: Shape,
        /// Stop at the first failing seed (to count how many seeds a bug takes).
        #[arg(long)]
        stop_at_first_failure: bool,
        /// Print every seed's line, not only the failing ones'.
        #[arg(long)]
        each: bool,
    },
}

fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text.split_once("..").ok_or("expected START..END")?;
    let start = start.parse::<u64>().map_err(|e| e.to_string())?;
    let end = end.parse::<u64>().map_err(|e| e.to_string())?;
    if start >= end {
        return Err("the range is empty".into());
    }
    Ok(start..end)
}

fn parse_weights(text: &str) -> Result<String, String> {
    FaultWeights::default().override_from(text)?;
    Ok(text.to_string())
}

fn options(seed: u64, shape: &Shape) -> SimOptions {
    let defaults = SimOptions::new(seed);
    let fault_weights = match &shape.weights {
        Some(text) => defaults
            .fault_weights
            .override_from(text)
            .expect("checked when parsed"),
        None => defaults.fault_weights,
    };
    SimOptions {
        nodes: shape.nodes,
        faults: shape.faults,
        fault_weights,
        clients: shape.clients,
        fault_phase: Duration::from_secs(shape.fault_secs),
        ..defaults
    }
}

/// The command that replays `options`' run, its fault mix spelled out so
/// that it can be edited (a kind set to 0 to see whether it matters).
fn replay_command(options: &SimOptions, shape: &Shape) -> String {
    format!(
        "cargo simrun -p oar-sim -- run --seed {} --nodes {} --faults {} --clients {} --fault-secs {} --weights {} --trace trace.jsonl --history history.jsonl",
        options.seed,
        shape.nodes,
        format!("{:?}", shape.faults).to_lowercase(),
        shape.clients,
        shape.fault_secs,
        options.fault_mix(),
    )
}

fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Correctness(_) => "CORRECTNESS",
        Verdict::Liveness(_) => "LIVENESS",
    }
}

fn line(report: &RunReport) -> String {
    let recovery = match report.recoveries.iter().max_by_key(|r| r.stall) {
        Some(r) => format!(
            "{} heals, slowest {:.2}s (stall {:.2}s)",
            report.recoveries.len(),
            r.committed.as_secs_f64(),
            r.stall.as_secs_f64()
        ),
        None => "-".into(),
    };
    let tail = match report.churn {
        Some(churn) => format!("{}/{}", churn.elections, churn.leaders),
        None => "-".into(),
    };
    format!(
        "seed {} ops {} faults {} stranger {}/{} terms {} snapshot loads {} recovery {recovery} (bound {:.2}s) tail elections/leaders {tail} sim {:.1}s wall {:.2}s {}",
        report.seed,
        report.ops,
        report.faults,
        report.stranger.actions,
        report.stranger.refusals.total(),
        report.leader_terms,
        report.snapshot_loads,
        report.recovery_bound.as_secs_f64(),
        report.sim_ns as f64 / 1e9,
        report.wall.as_secs_f64(),
        verdict_name(&report.verdict)
    )
}

fn exit_code(verdict: &Verdict) -> ExitCode {
    match verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Liveness(_) => ExitCode::from(EXIT_LIVENESS),
        Verdict::Correctness(_) => ExitCode::from(EXIT_CORRECTNESS),
    }
}

fn describe(verdict: &Verdict) {
    match verdict {
        Verdict::Pass => {}
        Verdict::Liveness(reason) => eprintln!("  liveness: {reason}"),
        Verdict::Correctness(violations) => {
            for v in violations.iter().take(10) {
                eprintln!("  violation: {v:?}");
            }
        }
    }
}

fn write_file(path: &PathBuf, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) {
    let result = File::create(path).map(BufWriter::new).and_then(|mut out| {
        write(&mut out)?;
        out.flush()
    });
    if let Err(e) = result {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            seed,
            shape,
            trace,
            history,
        } => {
            let mut opts = options(seed, &shape);
            opts.trace = trace.is_some();
            println!("seed {seed} mix {}", opts.fault_mix());
            let output = run(&opts);
            println!("{}", line(&output.report));
            describe(&output.report.verdict);
            if let Some(path) = trace {
                write_file(&path, |out| output.trace.write_jsonl(out));
            }
            if let Some(path) = history {
                write_file(&path, |out| output.history.write_jsonl(out));
            }
            if !matches!(output.report.verdict, Verdict::Pass) {
                eprintln!("replay: {}", replay_command(&opts, &shape));
            }
            exit_code(&output.report.verdict)
        }
        Command::Sweep {
            seeds,
            shape,
            stop_at_first_failure,
            each,
        } => sweep(seeds, &shape, stop_at_first_failure, each),
    }
}

fn sweep(seeds: Range<u64>, shape: &Shape, stop_at_first_failure: bool, each: bool) -> ExitCode {
    let bar = ProgressBar::new(seeds.end - seeds.start);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds  {elapsed_precise} (eta {eta})  {msg}",
        )
        .expect("progress template"),
    );
    let start = Instant::now();
    let (mut ops, mut faults, mut sim_ns, mut terms) = (0usize, 0u64, 0u64, 0usize);
    let mut loads = 0;
    let mut failures: Vec<RunReport> = Vec::new();
    let mut replays: Vec<String> = Vec::new();
    let mut kinds = KindTally::default();
    let mut recovery = LivenessTally::default();
    let mut count = 0;
    for seed in seeds.clone() {
        if stop_at_first_failure && !failures.is_empty() {
            break;
        }
        count += 1;
        let opts = options(seed, shape);
        let report = run(&opts).report;
        kinds.add(&report);
        recovery.add(&report);
        ops += report.ops;
        faults += report.faults;
        sim_ns += report.sim_ns;
        terms += report.leader_terms;
        loads += report.snapshot_loads;
        if each && matches!(report.verdict, Verdict::Pass) {
            // A hidden bar (no terminal) prints nothing through `println`.
            match bar.is_hidden() {
                true => println!("{}", line(&report)),
                false => bar.println(line(&report)),
            }
        }
        if !matches!(report.verdict, Verdict::Pass) {
            bar.println(line(&report));
            bar.println(format!("  mix: {}", report.mix));
            bar.println(format!("  replay: {}", replay_command(&opts, shape)));
            failures.push(report);
            replays.push(replay_command(&opts, shape));
        }
        bar.set_message(format!("{} failed", failures.len()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let wall = start.elapsed().as_secs_f64();
    let correctness = failures
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Correctness(_)))
        .count();
    let liveness = failures.len() - correctness;
    println!(
        "oar-sim sweep: seeds {}..{}, {} nodes, faults {:?}",
        seeds.start, seeds.end, shape.nodes, shape.faults
    );
    println!(
        "| seeds | passed | safety failures | liveness failures | client ops | faults | leader terms | snapshot loads | simulated s | wall s | seeds/s | sim s / wall s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {count} | {} | {correctness} | {liveness} | {ops} | {faults} | {terms} | {loads} | {:.0} | {wall:.1} | {:.2} | {:.1} |",
        count as usize - failures.len(),
        sim_ns as f64 / 1e9,
        count as f64 / wall,
        sim_ns as f64 / 1e9 / wall
    );
    recovery.print();
    kinds.print();
    for (report, replay) in failures.iter().zip(&replays) {
        println!("{}", line(report));
        println!("  mix: {}", report.mix);
        describe(&report.verdict);
        println!("  replay: {replay}");
    }
    match failures
        .iter()
        .find(|r| matches!(r.verdict, Verdict::Correctness(_)))
        .or(failures.first())
    {
        Some(report) => exit_code(&report.verdict),
        None => ExitCode::SUCCESS,
    }
}

/// Per fault kind over a sweep: in how many seeds' mixes it was on, and how
/// often it was injected; and what the stranger met.
#[derive(Default)]
struct KindTally {
    seeds_on: BTreeMap<FaultKind, u64>,
    injected: BTreeMap<FaultKind, u64>,
    stranger_actions: u64,
    refusals: Refusals,
}

impl KindTally {
    fn add(&mut self, report: &RunReport) {
        for &kind in FaultKind::ALL {
            if report.mix.weight(kind) > 0 {
                *self.seeds_on.entry(kind).or_default() += 1;
            }
        }
        for (&kind, &n) in &report.faults_by_kind {
            *self.injected.entry(kind).or_default() += n;
        }
        self.stranger_actions += report.stranger.actions;
        self.refusals.add(report.stranger.refusals);
    }

    fn print(&self) {
        println!();
        println!("| fault kind | seeds with it on | injected |");
        println!("|---|---:|---:|");
        for &kind in FaultKind::ALL {
            let on = self.seeds_on.get(&kind).copied().unwrap_or(0);
            let injected = self.injected.get(&kind).copied().unwrap_or(0);
            println!("| {} | {on} | {injected} |", kind.name());
        }
        let r = &self.refusals;
        println!();
        println!(
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

/// Recovery times after the final heal and leadership churn over the
/// fault-free tails of a sweep.
#[derive(Default)]
struct LivenessTally {
    /// (seconds to the first commit, share of the bound, seed).
    recoveries: Vec<(f64, f64, u64)>,
    /// (elections, leaders, seed) over each tail.
    tails: Vec<(u64, usize, u64)>,
}

impl LivenessTally {
    fn add(&mut self, report: &RunReport) {
        for recovery in &report.recoveries {
            let after = recovery.committed;
            let share = recovery.stall.as_secs_f64() / report.recovery_bound.as_secs_f64();
            self.recoveries
                .push((after.as_secs_f64(), share, report.seed));
        }
        if let Some(churn) = report.churn {
            self.tails
                .push((churn.elections, churn.leaders, report.seed));
        }
    }

    fn print(&self) {
        let mut times: Vec<f64> = self.recoveries.iter().map(|r| r.0).collect();
        times.sort_by(f64::total_cmp);
        let at = |q: f64| {
            times
                .get(((times.len() as f64 - 1.0) * q) as usize)
                .copied()
        };
        let seconds = |t: Option<f64>| t.map_or("-".into(), |t| format!("{t:.2}"));
        let worst = self.recoveries.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        let worst = worst.map_or("-".into(), |w| {
            format!("{:.0} % (seed {})", w.1 * 100.0, w.2)
        });
        let elections: u64 = self.tails.iter().map(|t| t.0).sum();
        let leaders: usize = self.tails.iter().map(|t| t.1).sum();
        let churned = self.tails.iter().filter(|t| t.0 > 0).count();
        println!();
        println!(
            "| heals checked | first commit p50 s | p99 s | max s | longest stall / bound | tails | tail elections | tail leaders | tails with an election |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {} | {} | {worst} | {} | {elections} | {leaders} | {churned} |",
            times.len(),
            seconds(at(0.5)),
            seconds(at(0.99)),
            seconds(at(1.0)),
            self.tails.len(),
        );
    }
}
