//! Holds the linearizability checker to the known verdicts of Porcupine's
//! test histories (copied into `testdata/porcupine/`, MIT licence): every
//! etcd log and every key-value log must get exactly the verdict listed in
//! that directory's README.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oar_sim::checker::linearizability::{CheckOptions, Verdict, check_with};
use oar_sim::checker::porcupine_parse::{parse_etcd_log, parse_kv_log};
use oar_sim::history::History;

/// The etcd logs that are linearizable; every other one (000..=102, no 095)
/// is not.
const ETCD_LINEARIZABLE: [u32; 23] = [
    2, 5, 7, 18, 25, 31, 38, 45, 48, 49, 51, 53, 56, 67, 75, 76, 80, 87, 92, 98, 100, 101, 102,
];

/// Generous enough for the slowest history in a debug build, small enough
/// that a search gone exponential fails the test instead of hanging CI.
const MAX_STEPS: u64 = 50_000_000;

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/porcupine")
        .join(name)
}

fn read(name: &str) -> String {
    let path = data_path(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Checks with a step budget; returns whether it was proven linearizable.
fn verdict_of(name: &str, history: &History) -> (bool, Duration) {
    let options = CheckOptions {
        max_steps: Some(MAX_STEPS),
        ..CheckOptions::default()
    };
    let started = Instant::now();
    let verdict = check_with(history, &options);
    let elapsed = started.elapsed();
    match verdict {
        Verdict::Timeout { steps, .. } => panic!("{name}: undecided after {steps} steps"),
        Verdict::NotLinearizable(violation) => {
            // The report must name the key and at least one operation.
            assert!(!violation.key.is_empty(), "{name}: violation without key");
            assert!(violation.blocked.is_some(), "{name}: violation without op");
            (false, elapsed)
        }
        Verdict::Linearizable => (true, elapsed),
    }
}

#[test]
fn etcd_logs_get_porcupines_verdicts() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    let mut slowest = (Duration::ZERO, String::new());
    for number in (0..=102u32).filter(|&number| number != 95) {
        let name = format!("etcd_{number:03}.log");
        let history = parse_etcd_log(&read(&name))
            .unwrap_or_else(|error| panic!("{name} does not parse: {error}"));
        assert!(history.len() > 50, "{name}: only {} ops", history.len());
        let expected = ETCD_LINEARIZABLE.contains(&number);
        let (linearizable, elapsed) = verdict_of(&name, &history);
        if linearizable != expected {
            wrong.push(format!("{name}: expected {expected}, got {linearizable}"));
        }
        if elapsed > slowest.0 {
            slowest = (elapsed, name);
        }
        checked += 1;
    }
    eprintln!("slowest etcd log: {} in {:?}", slowest.1, slowest.0);
    assert_eq!(checked, 102);
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

fn check_kv(name: &str, expected: bool) {
    let file = format!("{name}.txt");
    let history =
        parse_kv_log(&read(&file)).unwrap_or_else(|error| panic!("{file} does not parse: {error}"));
    let (linearizable, elapsed) = verdict_of(&file, &history);
    eprintln!("{file}: {} ops in {elapsed:?}", history.len());
    assert_eq!(linearizable, expected, "{file}");
}

#[test]
fn kv_one_client_ok() {
    check_kv("c01-ok", true);
}

#[test]
fn kv_one_client_bad() {
    check_kv("c01-bad", false);
}

#[test]
fn kv_ten_clients_ok() {
    check_kv("c10-ok", true);
}

#[test]
fn kv_ten_clients_bad() {
    check_kv("c10-bad", false);
}

#[test]
fn kv_fifty_clients_ok() {
    check_kv("c50-ok", true);
}

#[test]
fn kv_fifty_clients_bad() {
    check_kv("c50-bad", false);
}
