//! The JSON lines form of the history: exact format, round trip, and typed
//! errors for every kind of bad line.

use super::*;

fn written(history: &History) -> String {
    let mut out = Vec::new();
    history.write_jsonl(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn read(text: &str) -> Result<History, ReadError> {
    History::read_jsonl(text.as_bytes())
}

/// One of each operation and outcome, including one left in flight.
fn mixed_history() -> History {
    let mut history = History::new();
    let put = history.invoke(3, "k1", Operation::Put { value: "v7".into() }, 1200);
    history
        .complete(put, 5400, Outcome::Ok(Reply::Done))
        .unwrap();
    let cas = history.invoke(
        1,
        "k1",
        Operation::Cas {
            expected: "v1".into(),
            new: "v2".into(),
        },
        1300,
    );
    history
        .complete(cas, 1500, Outcome::Ok(Reply::Swapped(true)))
        .unwrap();
    let get = history.invoke(2, "k2", Operation::Get, 1400);
    history
        .complete(get, 1600, Outcome::Ok(Reply::Value(None)))
        .unwrap();
    let get = history.invoke(2, "k1", Operation::Get, 1700);
    history
        .complete(get, 1800, Outcome::Ok(Reply::Value(Some("v\"2\n".into()))))
        .unwrap();
    let append = history.invoke(4, "k2", Operation::Append { value: "x".into() }, 1900);
    history.complete(append, 2000, Outcome::Fail).unwrap();
    let timed_out = history.invoke(5, "k2", Operation::Append { value: "y".into() }, 2100);
    history.complete(timed_out, 9000, Outcome::Unknown).unwrap();
    history.invoke(6, "k3", Operation::Get, 2200); // still in flight
    history
}

#[test]
fn lines_have_the_documented_format_and_field_order() {
    let lines: Vec<String> = written(&mixed_history())
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [
            r#"{"client":3,"op":"put","key":"k1","value":"v7","invoke_ns":1200,"complete_ns":5400,"outcome":"ok","result":null}"#,
            r#"{"client":1,"op":"cas","key":"k1","value":["v1","v2"],"invoke_ns":1300,"complete_ns":1500,"outcome":"ok","result":true}"#,
            r#"{"client":2,"op":"get","key":"k2","value":null,"invoke_ns":1400,"complete_ns":1600,"outcome":"ok","result":null}"#,
            r#"{"client":2,"op":"get","key":"k1","value":null,"invoke_ns":1700,"complete_ns":1800,"outcome":"ok","result":"v\"2\n"}"#,
            r#"{"client":4,"op":"append","key":"k2","value":"x","invoke_ns":1900,"complete_ns":2000,"outcome":"fail","result":null}"#,
            r#"{"client":5,"op":"append","key":"k2","value":"y","invoke_ns":2100,"complete_ns":null,"outcome":"unknown","result":null}"#,
            r#"{"client":6,"op":"get","key":"k3","value":null,"invoke_ns":2200,"complete_ns":null,"outcome":"unknown","result":null}"#,
        ]
    );
}

#[test]
fn reading_back_gives_the_same_history_and_bytes() {
    let history = mixed_history();
    let text = written(&history);
    let reread = read(&text).unwrap();
    // The in-flight op reads back as completed-unknown; records are equal.
    assert_eq!(reread.records(), history.records());
    assert_eq!(written(&reread), text);
}

#[test]
fn blank_lines_are_skipped_and_a_missing_complete_ns_means_unknown() {
    let text = "\n{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"value\":null,\"invoke_ns\":5,\
                \"outcome\":\"unknown\",\"result\":null}\n\n";
    let history = read(text).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history.records()[0].complete_ns, None);
    assert_eq!(history.records()[0].outcome, Outcome::Unknown);
}

/// Replaces `from` with `to` in the second line of the mixed history and
/// returns the read error.
fn error_after_edit(from: &str, to: &str) -> ReadError {
    let text = written(&mixed_history());
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(lines[1].contains(from), "{from} not in {}", lines[1]);
    lines[1] = lines[1].replace(from, to);
    read(&lines.join("\n")).unwrap_err()
}

#[test]
fn bad_lines_are_typed_errors_naming_the_line() {
    assert!(matches!(
        error_after_edit("{", "["),
        ReadError::Json { line: 2, .. }
    ));
    assert!(matches!(
        error_after_edit(r#""client":1"#, r#""client":1,"extra":0"#),
        ReadError::Json { line: 2, .. }
    ));
    assert!(matches!(
        error_after_edit(r#""op":"cas""#, r#""op":"swap""#),
        ReadError::Json { line: 2, .. }
    ));
    assert!(matches!(
        error_after_edit(r#"["v1","v2"]"#, r#"["v1","v2","v3"]"#),
        ReadError::Field {
            line: 2,
            field: "value",
            ..
        }
    ));
    assert!(matches!(
        error_after_edit(r#""result":true"#, r#""result":"v2""#),
        ReadError::Field {
            line: 2,
            field: "result",
            ..
        }
    ));
    assert!(matches!(
        error_after_edit(r#""complete_ns":1500"#, r#""complete_ns":null"#),
        ReadError::Field {
            line: 2,
            field: "complete_ns",
            ..
        }
    ));
    assert!(matches!(
        error_after_edit(
            r#""outcome":"ok","result":true"#,
            r#""outcome":"unknown","result":null"#
        ),
        ReadError::Field {
            line: 2,
            field: "complete_ns",
            ..
        }
    ));
    assert!(matches!(
        error_after_edit(r#""complete_ns":1500"#, r#""complete_ns":1000"#),
        ReadError::Record {
            line: 2,
            source: RecordError::CompletedBeforeInvoke { .. }
        }
    ));
    assert!(matches!(
        read("{\"client\":1}\n\u{0}"),
        Err(ReadError::Json { line: 1, .. })
    ));
}

#[test]
fn completions_that_make_no_sense_are_refused() {
    let mut history = History::new();
    let get = history.invoke(1, "k", Operation::Get, 100);
    assert_eq!(
        history.complete(get, 50, Outcome::Fail),
        Err(RecordError::CompletedBeforeInvoke {
            invoke_ns: 100,
            complete_ns: 50
        })
    );
    assert!(matches!(
        history.complete(get, 150, Outcome::Ok(Reply::Swapped(true))),
        Err(RecordError::ReplyDoesNotFit {
            operation: "get",
            ..
        })
    ));
    assert_eq!(history.records()[0].outcome, Outcome::Unknown);
    history
        .complete(get, 150, Outcome::Ok(Reply::Value(None)))
        .unwrap();
    assert_eq!(
        history.complete(get, 160, Outcome::Fail),
        Err(RecordError::AlreadyCompleted(get))
    );
    let mut other = History::new();
    other.invoke(1, "k", Operation::Get, 0);
    other.invoke(1, "k", Operation::Get, 0);
    let stranger = other.iter().nth(1).map(|(id, _)| id).unwrap();
    assert_eq!(
        history.complete(stranger, 10, Outcome::Fail),
        Err(RecordError::NoSuchOp(stranger))
    );
}

#[test]
fn unknown_outcomes_drop_the_completion_time() {
    let mut history = History::new();
    let put = history.invoke(1, "k", Operation::Put { value: "v".into() }, 10);
    history.complete(put, 20, Outcome::Unknown).unwrap();
    assert_eq!(history.records()[0].complete_ns, None);
    assert!(written(&history).contains(r#""complete_ns":null,"outcome":"unknown""#));
}

#[test]
fn resolving_unknowns_fails_only_the_unapplied_ones() {
    let mut history = History::new();
    let applied = history.invoke(1, "k1", Operation::Put { value: "a".into() }, 100);
    history.complete(applied, 900, Outcome::Unknown).unwrap();
    let lost = history.invoke(2, "k1", Operation::Put { value: "b".into() }, 200);
    history.complete(lost, 900, Outcome::Unknown).unwrap();
    let known = history.invoke(3, "k1", Operation::Get, 300);
    history
        .complete(known, 400, Outcome::Ok(Reply::Value(Some("a".into()))))
        .unwrap();
    let resolved =
        history.resolve_unknowns(|record| record.operation == Operation::Put { value: "a".into() });
    let outcomes: Vec<_> = resolved
        .records()
        .iter()
        .map(|r| r.outcome.clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Unknown,
            Outcome::Fail,
            Outcome::Ok(Reply::Value(Some("a".into())))
        ]
    );
    assert_eq!(resolved.records()[1].complete_ns, Some(200));
    assert_eq!(resolved.records()[0].complete_ns, None);
    assert_eq!(
        history.records()[1].outcome,
        Outcome::Unknown,
        "the original is untouched"
    );
}
