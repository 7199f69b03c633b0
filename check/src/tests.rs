//! Small hand-written histories with known verdicts, and the Porcupine
//! readers on hand-written lines.

use crate::history::{History, OpId, Operation, Outcome, Reply};
use crate::linearizability::{CheckOptions, Verdict, check, check_with};
use crate::porcupine_parse::{ETCD_REGISTER_KEY, Problem, parse_etcd_log, parse_kv_log};

fn put(value: &str) -> Operation {
    Operation::Put {
        value: value.into(),
    }
}

fn append(value: &str) -> Operation {
    Operation::Append {
        value: value.into(),
    }
}

fn cas(expected: &str, new: &str) -> Operation {
    Operation::Cas {
        expected: expected.into(),
        new: new.into(),
    }
}

fn read(value: Option<&str>) -> Outcome {
    Outcome::Ok(Reply::Value(value.map(str::to_owned)))
}

const DONE: Outcome = Outcome::Ok(Reply::Done);

/// Records one operation on key "k" from `invoke` to `complete`.
fn record(
    history: &mut History,
    operation: Operation,
    invoke: u64,
    complete: u64,
    outcome: Outcome,
) -> OpId {
    let client = history.len() as u64;
    let op = history.invoke(client, "k", operation, invoke);
    history.complete(op, complete, outcome).unwrap();
    op
}

fn linearizable(history: &History) -> bool {
    match check(history) {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable(_) => false,
        Verdict::Timeout { .. } => panic!("no step limit was set"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert!(linearizable(&History::new()));
}

#[test]
fn stale_read_after_a_completed_write_is_not_linearizable() {
    let mut history = History::new();
    let write = record(&mut history, put("a"), 0, 10, DONE);
    let stale = record(&mut history, Operation::Get, 20, 30, read(None));
    let Verdict::NotLinearizable(violation) = check(&history) else {
        panic!("stale read accepted");
    };
    // The report names the key, the write it got to and the read it could not place.
    assert_eq!(violation.key, "k");
    assert_eq!(violation.linearized, [write]);
    assert_eq!(violation.state_after.as_deref(), Some("a"));
    assert_eq!(violation.blocked, Some(stale));
    let text = violation.to_string();
    assert!(text.contains("\"k\"") && text.contains("Get"), "{text}");
}

#[test]
fn a_read_overlapping_a_write_may_see_either_value() {
    for seen in [None, Some("a")] {
        let mut history = History::new();
        record(&mut history, put("a"), 0, 100, DONE);
        record(&mut history, Operation::Get, 10, 20, read(seen));
        assert!(linearizable(&history), "read of {seen:?}");
    }
    // Touching at one instant counts as overlapping, not ordered.
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, DONE);
    record(&mut history, Operation::Get, 10, 20, read(None));
    assert!(linearizable(&history));
}

#[test]
fn reads_may_not_go_back_in_time() {
    let mut history = History::new();
    record(&mut history, put("a"), 0, 100, DONE);
    record(&mut history, Operation::Get, 10, 20, read(Some("a")));
    record(&mut history, Operation::Get, 30, 40, read(None));
    assert!(!linearizable(&history));
}

#[test]
fn a_value_never_written_cannot_be_read() {
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, DONE);
    record(&mut history, Operation::Get, 0, 10, read(Some("b")));
    assert!(!linearizable(&history));
}

#[test]
fn an_unknown_write_may_take_effect_late_or_never() {
    // Observed long after the client gave up.
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, Outcome::Unknown);
    record(&mut history, Operation::Get, 20, 30, read(None));
    record(&mut history, Operation::Get, 1000, 1010, read(Some("a")));
    assert!(linearizable(&history));
    // Never observed.
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, Outcome::Unknown);
    record(&mut history, Operation::Get, 20, 30, read(None));
    record(&mut history, put("b"), 40, 50, DONE);
    record(&mut history, Operation::Get, 60, 70, read(Some("b")));
    assert!(linearizable(&history));
}

#[test]
fn an_unknown_write_takes_effect_once_and_not_before_its_invoke() {
    // Seen, then unseen: nothing could undo it.
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, Outcome::Unknown);
    record(&mut history, Operation::Get, 20, 30, read(Some("a")));
    record(&mut history, Operation::Get, 40, 50, read(None));
    assert!(!linearizable(&history));
    // Seen before it was sent.
    let mut history = History::new();
    record(&mut history, Operation::Get, 0, 10, read(Some("a")));
    record(&mut history, put("a"), 20, 30, Outcome::Unknown);
    assert!(!linearizable(&history));
}

#[test]
fn a_failed_write_must_not_be_observed() {
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, Outcome::Fail);
    record(&mut history, Operation::Get, 20, 30, read(Some("a")));
    assert!(!linearizable(&history));
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, Outcome::Fail);
    record(&mut history, Operation::Get, 20, 30, read(None));
    assert!(linearizable(&history));
}

#[test]
fn cas_swaps_only_from_the_expected_value() {
    let swapped = |value| Outcome::Ok(Reply::Swapped(value));
    // Swapped from the current value; the read sees the new one.
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, DONE);
    record(&mut history, cas("a", "b"), 20, 30, swapped(true));
    record(&mut history, Operation::Get, 40, 50, read(Some("b")));
    assert!(linearizable(&history));
    // Claims a swap from a value the key did not hold.
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, DONE);
    record(&mut history, cas("x", "b"), 20, 30, swapped(true));
    assert!(!linearizable(&history));
    // Claims no swap although the key held the expected value.
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, DONE);
    record(&mut history, cas("a", "b"), 20, 30, swapped(false));
    assert!(!linearizable(&history));
    // A refused swap changes nothing.
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, DONE);
    record(&mut history, cas("x", "b"), 20, 30, swapped(false));
    record(&mut history, Operation::Get, 40, 50, read(Some("b")));
    assert!(!linearizable(&history));
    // A cas on a missing key never swaps.
    let mut history = History::new();
    record(&mut history, cas("", "b"), 0, 10, swapped(true));
    assert!(!linearizable(&history));
    // An unknown cas applies only if the comparison holds when it lands.
    let mut history = History::new();
    record(&mut history, put("a"), 0, 10, DONE);
    record(&mut history, cas("a", "b"), 20, 30, Outcome::Unknown);
    record(&mut history, Operation::Get, 40, 50, read(Some("b")));
    assert!(linearizable(&history));
    record(&mut history, put("c"), 60, 70, DONE);
    record(&mut history, Operation::Get, 80, 90, read(Some("b")));
    assert!(!linearizable(&history));
}

#[test]
fn append_extends_the_value_and_a_missing_key_counts_as_empty() {
    let mut history = History::new();
    record(&mut history, append("a"), 0, 10, DONE);
    record(&mut history, append("b"), 20, 30, DONE);
    record(&mut history, Operation::Get, 40, 50, read(Some("ab")));
    assert!(linearizable(&history));
    // Concurrent appends: either order, but not both lost.
    let mut history = History::new();
    record(&mut history, append("a"), 0, 30, DONE);
    record(&mut history, append("b"), 0, 30, DONE);
    record(&mut history, Operation::Get, 40, 50, read(Some("ba")));
    assert!(linearizable(&history));
    record(&mut history, Operation::Get, 60, 70, read(Some("a")));
    assert!(!linearizable(&history));
}

#[test]
fn keys_are_checked_apart_and_the_bad_one_is_named() {
    let mut history = History::new();
    for (client, key) in ["a", "b", "c"].into_iter().enumerate() {
        let write = history.invoke(client as u64, key, put("1"), 0);
        history.complete(write, 10, DONE).unwrap();
        // Each key's read sees its own write, never another key's.
        let get = history.invoke(client as u64, key, Operation::Get, 20);
        let seen = if key == "b" { None } else { Some("1") };
        history.complete(get, 30, read(seen)).unwrap();
    }
    match check(&history) {
        Verdict::NotLinearizable(violation) => assert_eq!(violation.key, "b"),
        other => panic!("expected a violation on b, got {other}"),
    }
}

/// Many overlapping writes and reads: enough search for a budget to bite.
fn busy_history() -> History {
    let mut history = History::new();
    for index in 0..6u64 {
        record(&mut history, put(&index.to_string()), 0, 1000, DONE);
    }
    for index in 0..6u64 {
        let value = index.to_string();
        record(&mut history, Operation::Get, 0, 1000, read(Some(&value)));
    }
    history
}

#[test]
fn a_spent_step_budget_is_a_timeout_never_a_verdict() {
    let history = busy_history();
    let options = CheckOptions {
        max_steps: Some(5),
        steps_per_turn: 2,
    };
    match check_with(&history, &options) {
        Verdict::Timeout {
            steps,
            undecided_keys,
        } => {
            assert_eq!(steps, 5);
            assert_eq!(undecided_keys, ["k"]);
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(linearizable(&history));
}

#[test]
fn the_same_history_gives_the_same_verdict() {
    let mut history = busy_history();
    record(&mut history, Operation::Get, 2000, 2010, read(Some("x")));
    let first = check(&history);
    assert!(matches!(first, Verdict::NotLinearizable(_)));
    for _ in 0..3 {
        assert_eq!(check(&history), first);
    }
}

#[test]
fn kv_log_lines_become_operations() {
    let log = "{:process 0, :type :invoke, :f :put, :key \"1\", :value \"x\"}\n\
               {:process 1, :type :invoke, :f :get, :key \"1\", :value nil}\n\
               {:process 0, :type :ok, :f :put, :key \"1\", :value \"x\"}\n\
               {:process 1, :type :ok, :f :get, :key \"1\", :value \"\"}\n\
               {:process 1, :type :invoke, :f :append, :key \"1\", :value \"y\"}\n";
    let history = parse_kv_log(log).unwrap();
    let records = history.records();
    assert_eq!(records.len(), 3);
    assert_eq!((records[0].invoke_ns, records[0].complete_ns), (1, Some(3)));
    assert_eq!(records[1].outcome, read(None)); // "" is Porcupine's missing key
    assert_eq!(records[2].operation, append("y"));
    assert_eq!(records[2].outcome, Outcome::Unknown); // never completed
}

#[test]
fn etcd_log_lines_become_register_operations() {
    let log = "INFO  jepsen.util - 0\t:invoke\t:cas\t[1 4]\n\
               INFO  jepsen.util - 1   :invoke :write  3\n\
               INFO  jepsen.util - 2\t:invoke\t:read\tnil\n\
               INFO  jepsen.util - 0\t:fail\t:cas\t[1 4]\n\
               INFO  jepsen.util - 1\t:info\t:write\t:timed-out\n\
               INFO  jepsen.util - 2\t:ok\t:read\tnil\n";
    let history = parse_etcd_log(log).unwrap();
    let records = history.records();
    assert!(records.iter().all(|record| record.key == ETCD_REGISTER_KEY));
    assert_eq!(records[0].operation, cas("1", "4"));
    assert_eq!(records[0].outcome, Outcome::Ok(Reply::Swapped(false)));
    assert_eq!(records[1].operation, put("3"));
    assert_eq!(records[1].outcome, Outcome::Unknown);
    assert_eq!(records[2].outcome, read(None));
}

#[test]
fn bad_log_lines_are_errors_with_their_line_number() {
    let invoke = "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}";
    let cases = [
        (format!("{invoke}\n{{:process 0, :type :ok"), 2),
        (format!("{invoke}\n{invoke}"), 2),
        (
            "{:process 0, :type :ok, :f :get, :key \"1\", :value \"\"}".to_owned(),
            1,
        ),
        (format!("\n{invoke} trailing"), 2),
        (
            "{:process -1, :type :invoke, :f :get, :key \"1\", :value nil}".to_owned(),
            1,
        ),
        (
            "{:process 0, :type :invoke, :f :put, :key \"1\", :value nil}".to_owned(),
            1,
        ),
        (
            format!(
                "{invoke}\n{}",
                invoke.replace(":invoke, :f :get", ":ok, :f :put")
            ),
            2,
        ),
    ];
    for (log, line) in cases {
        let error = parse_kv_log(&log).unwrap_err();
        assert_eq!(error.line, line, "{log}: {error}");
    }
    let error = parse_etcd_log("INFO  jepsen.util - 0\t:invoke\t:cas\t[1]").unwrap_err();
    assert_eq!(error.problem, Problem::Field { field: "value" });
    let error = parse_etcd_log("WARN  jepsen.util - 0\t:invoke\t:read\tnil").unwrap_err();
    assert!(matches!(error.problem, Problem::Syntax { .. }));
    let error = parse_etcd_log("INFO  jepsen.util - 0\t:ok\t:read\t1").unwrap_err();
    assert_eq!(error.problem, Problem::NothingInFlight { process: 0 });
}

fn incr(id: &str) -> Operation {
    Operation::Incr { id: id.into() }
}

fn count(n: u64) -> Outcome {
    Outcome::Ok(Reply::Count(n))
}

#[test]
fn increments_must_reply_their_exact_count() {
    // Two concurrent increments may reply 1 and 2 in either order.
    let mut history = History::new();
    record(&mut history, incr("a"), 0, 10, count(2));
    record(&mut history, incr("b"), 0, 10, count(1));
    record(&mut history, Operation::Get, 20, 30, read(Some("2")));
    assert!(linearizable(&history));
    // An increment applied twice (3 where 2 increments ran) is caught.
    let mut history = History::new();
    record(&mut history, incr("a"), 0, 10, count(1));
    record(&mut history, incr("b"), 20, 30, count(3));
    assert!(!linearizable(&history));
    // An unknown increment may have counted, or not.
    let mut history = History::new();
    record(&mut history, incr("a"), 0, 10, Outcome::Unknown);
    record(&mut history, incr("b"), 20, 30, count(2));
    assert!(linearizable(&history));
    record(&mut history, incr("c"), 40, 50, count(2));
    assert!(!linearizable(&history));
}

#[test]
fn increments_round_trip_through_jsonl() {
    let mut history = History::new();
    record(&mut history, incr("a"), 0, 10, count(7));
    record(&mut history, incr("b"), 0, 10, Outcome::Unknown);
    let mut out = Vec::new();
    history.write_jsonl(&mut out).unwrap();
    let back = History::read_jsonl(&out[..]).unwrap();
    assert_eq!(back.records(), history.records());
}
