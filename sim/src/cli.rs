//! The command line: `run` one seed or `sweep` a range, with a progress bar
//! and a summary table; failing seeds print the command that replays them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use oar_sim::fault_mix::FaultWeights;
use oar_sim::options::{FaultSet, SimOptions};
use oar_sim::run::{RunOutput, RunReport, Verdict, run};
use oar_sim::summary::{Shard, Summary};
use oar_sim::timeline;

/// Most groups a run may have: each costs every server a member (tasks,
/// storage) and the run a share of the checks.
const GROUPS_MAX: u64 = 10_000;

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
    /// Raft groups on the same servers: each server hosts a member of
    /// every group through its one `NodeManager`, so that a server fault
    /// hits them all; client `c` works on group `c mod groups`, and every
    /// check runs per group.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=GROUPS_MAX))]
    groups: u64,
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
    /// Clients write with plain `Node::apply` instead of through client
    /// sessions (the runs before sessions, to compare with).
    #[arg(long)]
    no_sessions: bool,
    /// Sessions expire after this many milliseconds of log time without a
    /// request (default: longer than any run). A few seconds make them
    /// expire mid-run, which the expiry plant needs to show.
    #[arg(long)]
    session_expiry_ms: Option<u64>,
    /// Groups go quiet after this many milliseconds idle
    /// (`RaftOptions::quiesce_after`), woken by the runtime's server-level
    /// liveness probes; default: never quiet.
    #[arg(long)]
    quiesce_after_ms: Option<u64>,
    /// The state machines keep their state in a store of their own that
    /// survives restarts (an on-disk state machine, resumed from its own
    /// applied point instead of the snapshot). Needs `--no-sessions`: a
    /// session group always loads its snapshot, whose table it needs.
    #[arg(long, requires = "no_sessions")]
    disk_state_machine: bool,
    /// Each server keeps one log for all its groups (`SharedLog`, with its
    /// group commit) instead of one log per group member.
    #[arg(long)]
    shared_log: bool,
    /// Bound every member's in-memory log to this many bytes
    /// (`RaftOptions::log_cache_bytes_max`): a few KiB make leaders read
    /// a lagging peer's entries back from disk all the time.
    #[arg(long)]
    log_cache_bytes: Option<u64>,
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
        /// Write the client history here, one JSON object a line (the
        /// first group's, with `--groups`).
        #[arg(long)]
        history: Option<PathBuf>,
        /// Write a self-contained HTML timeline of the run here.
        #[arg(long)]
        timeline: Option<PathBuf>,
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
        /// Run only every N-th seed of the range, from its I-th (`I/N`,
        /// 0 <= I < N), to spread one sweep over N jobs.
        #[arg(long, value_parser = Shard::parse, default_value = "0/1")]
        shard: Shard,
        /// Also write the results as JSON here, for `merge`.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Merge the JSON results of a sweep's shards and print its tables;
    /// fails if any shard failed, is missing or stopped early.
    Merge {
        /// The shards' `--json` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
        groups: shape.groups as usize,
        faults: shape.faults,
        fault_weights,
        clients: shape.clients,
        fault_phase: Duration::from_secs(shape.fault_secs),
        sessions: !shape.no_sessions,
        session_expiry: shape
            .session_expiry_ms
            .map_or(defaults.session_expiry, Duration::from_millis),
        raft: oar::core::RaftOptions {
            quiesce_after: shape.quiesce_after_ms.map(Duration::from_millis),
            log_cache_bytes_max: shape.log_cache_bytes,
            ..defaults.raft
        },
        disk_state_machine: shape.disk_state_machine,
        shared_log: shape.shared_log,
        ..defaults
    }
}

/// The command that replays `options`' run, its fault mix spelled out so
/// that it can be edited (a kind set to 0 to see whether it matters).
fn replay_command(options: &SimOptions, shape: &Shape) -> String {
    format!(
        "cargo simrun -p oar-sim -- run --seed {} --nodes {}{} --faults {} --clients {} --fault-secs {} --weights {}{}{}{}{}{}{} --trace trace.jsonl --history history.jsonl",
        options.seed,
        shape.nodes,
        match shape.groups {
            1 => String::new(),
            groups => format!(" --groups {groups}"),
        },
        format!("{:?}", shape.faults).to_lowercase(),
        shape.clients,
        shape.fault_secs,
        options.fault_mix(),
        if shape.no_sessions {
            " --no-sessions"
        } else {
            ""
        },
        shape
            .session_expiry_ms
            .map(|ms| format!(" --session-expiry-ms {ms}"))
            .unwrap_or_default(),
        shape
            .quiesce_after_ms
            .map(|ms| format!(" --quiesce-after-ms {ms}"))
            .unwrap_or_default(),
        if shape.disk_state_machine {
            " --disk-state-machine"
        } else {
            ""
        },
        if shape.shared_log {
            " --shared-log"
        } else {
            ""
        },
        shape
            .log_cache_bytes
            .map(|bytes| format!(" --log-cache-bytes {bytes}"))
            .unwrap_or_default(),
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
    let quiet = match report.quiet_samples {
        (0, _) => String::new(),
        (samples, quiet) => format!(" quiet {quiet}/{samples}"),
    };
    let resumed = match report.resumptions {
        0 => String::new(),
        n => format!(" resumed {n}"),
    };
    format!(
        "seed {} ops {} faults {} stranger {}/{} terms {} snapshot loads {} recovery {recovery} (bound {:.2}s) tail elections/leaders {tail}{quiet}{resumed} sim {:.1}s wall {:.2}s {}",
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

/// The run's timeline page.
fn page(options: &SimOptions, output: &RunOutput) -> String {
    let report = &output.report;
    let model = timeline::model(
        &output.trace.events(),
        &output.history,
        &report.verdict,
        report.sim_ns,
    );
    let groups = match options.groups {
        1 => String::new(),
        groups => format!(", {groups} groups (the first shown)"),
    };
    let title = format!(
        "oar-sim seed {}, {} nodes{groups}: {}",
        options.seed,
        options.nodes,
        verdict_name(&report.verdict)
    );
    timeline::render(&title, &model)
}

/// Replays a failing seed with its trace on and writes its timeline page
/// into the working directory; the page's name.
fn failure_page(options: &SimOptions) -> String {
    let mut options = options.clone();
    options.trace = true;
    let output = run(&options);
    let path = PathBuf::from(format!("oar-sim-seed-{}.html", options.seed));
    write_file(&path, |out| {
        out.write_all(page(&options, &output).as_bytes())
    });
    path.display().to_string()
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
            timeline,
        } => {
            let mut opts = options(seed, &shape);
            opts.trace = trace.is_some() || timeline.is_some();
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
            if let Some(path) = timeline {
                write_file(&path, |out| out.write_all(page(&opts, &output).as_bytes()));
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
            shard,
            json,
        } => {
            let summary = sweep(seeds, &shape, shard, stop_at_first_failure, each);
            print!("{}", summary.tables());
            if let Some(path) = json {
                write_file(&path, |out| {
                    serde_json::to_writer_pretty(&mut *out, &summary).map_err(std::io::Error::other)
                });
            }
            summary_exit(&summary)
        }
        Command::Merge { files } => merge(&files),
    }
}

fn sweep(
    seeds: Range<u64>,
    shape: &Shape,
    shard: Shard,
    stop_at_first_failure: bool,
    each: bool,
) -> Summary {
    let bar = ProgressBar::new(shard.seeds(seeds.clone()).count() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds  {elapsed_precise} (eta {eta})  {msg}",
        )
        .expect("progress template"),
    );
    let start = Instant::now();
    let mut summary = Summary::new(header(shape), seeds.clone(), shard);
    let mut first_failure: Option<SimOptions> = None;
    for seed in shard.seeds(seeds) {
        if stop_at_first_failure && first_failure.is_some() {
            break;
        }
        let opts = options(seed, shape);
        let report = run(&opts).report;
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
            first_failure.get_or_insert_with(|| opts.clone());
        }
        summary.add(&report, line(&report), replay_command(&opts, shape));
        bar.set_message(format!("{} failed", summary.failures.len()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary.wall_s = start.elapsed().as_secs_f64();
    if let Some(opts) = first_failure {
        let page = failure_page(&opts);
        if let Some(failure) = summary.failures.first_mut() {
            failure.details.push(format!("timeline: {page}"));
        }
    }
    summary
}

/// The sweep's shape as its header prints it (shards of one sweep share
/// it).
fn header(shape: &Shape) -> String {
    let weights = shape
        .weights
        .as_ref()
        .map_or(String::new(), |w| format!(", weights {w}"));
    let groups = match shape.groups {
        1 => "1 group".to_string(),
        groups => format!("{groups} groups"),
    };
    format!(
        "{} nodes, {groups}, faults {:?}, {} clients, {} s of faults{weights}",
        shape.nodes, shape.faults, shape.clients, shape.fault_secs
    )
}

/// The exit code of a sweep's results: a safety failure first, then a
/// liveness failure.
fn summary_exit(summary: &Summary) -> ExitCode {
    match (
        summary.failures.iter().any(|f| f.correctness),
        summary.failures.is_empty(),
    ) {
        (true, _) => ExitCode::from(EXIT_CORRECTNESS),
        (false, false) => ExitCode::from(EXIT_LIVENESS),
        (false, true) => ExitCode::SUCCESS,
    }
}

/// Merges shard summaries: prints one sweep's tables; fails if a shard
/// failed, is missing or stopped early.
fn merge(files: &[PathBuf]) -> ExitCode {
    let mut parts = Vec::new();
    for path in files {
        let part = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Summary>(&text).map_err(|e| e.to_string()));
        match part {
            Ok(part) => parts.push(part),
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let merged = match Summary::merge(parts) {
        Ok(merged) => merged,
        Err(e) => {
            eprintln!("cannot merge: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", merged.tables());
    let missing = merged.missing();
    for m in &missing {
        println!("missing: {m}");
    }
    match summary_exit(&merged) {
        code if code == ExitCode::SUCCESS && !missing.is_empty() => ExitCode::from(2),
        code => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(args: &[&str]) -> Shape {
        let cli = Cli::try_parse_from(["oar-sim", "run", "--seed", "1"].iter().chain(args))
            .expect("parses");
        match cli.command {
            Command::Run { shape, .. } => shape,
            _ => unreachable!("a run"),
        }
    }

    #[test]
    fn the_disk_state_machine_flag_reaches_the_options_and_the_replay_command() {
        let shape = shape_of(&["--no-sessions", "--disk-state-machine"]);
        let on = options(1, &shape);
        assert!(on.disk_state_machine && !on.sessions);
        assert!(replay_command(&on, &shape).contains(" --disk-state-machine"));
        assert!(!options(1, &shape_of(&[])).disk_state_machine);
        // A session group always loads its snapshot: the flag needs
        // `--no-sessions`.
        let refused =
            Cli::try_parse_from(["oar-sim", "run", "--seed", "1", "--disk-state-machine"]);
        assert!(refused.is_err());
    }

    #[test]
    fn the_shared_log_flag_reaches_the_options_and_the_replay_command() {
        let shape = shape_of(&["--shared-log"]);
        let on = options(1, &shape);
        assert!(on.shared_log);
        assert!(replay_command(&on, &shape).contains(" --shared-log"));
        assert!(!options(1, &shape_of(&[])).shared_log);
    }

    #[test]
    fn the_log_cache_flag_reaches_the_options_and_the_replay_command() {
        let shape = shape_of(&["--log-cache-bytes", "4096"]);
        let on = options(1, &shape);
        assert_eq!(on.raft.log_cache_bytes_max, Some(4096));
        assert!(replay_command(&on, &shape).contains(" --log-cache-bytes 4096"));
        assert_eq!(options(1, &shape_of(&[])).raft.log_cache_bytes_max, None);
    }
}
