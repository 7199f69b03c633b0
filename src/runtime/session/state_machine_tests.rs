//! The session apply path on hand-made log entries: what every replica
//! computes from the log alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::codec::{Envelope, decode_reply};
use super::error::SessionError;
use super::options::SessionOptions;
use super::state_machine::{SESSIONS_FILE, SessionStateMachine};
use super::table::SessionId;
use crate::core::{LogId, LogIndex, Term};
use crate::runtime::snapshot_storage::{MemSnapshots, SnapshotStorage};
use crate::runtime::snapshot_view::SnapshotView;
use crate::runtime::state_machine::{Committed, SnapshotError, StateMachine};
use crate::storage::{SnapshotReader, SnapshotWriter};

/// Counts what it is given; answers each command with the running count.
struct Counting(Arc<Mutex<u64>>);

impl StateMachine for Counting {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut n = self.0.lock().unwrap();
        commands
            .iter()
            .map(|_| {
                *n += 1;
                Bytes::from(n.to_string())
            })
            .collect()
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        Ok(Box::new(|_: &mut SnapshotWriter| Ok(())))
    }

    fn on_snapshot_load(&mut self, _: LogId, _: &SnapshotReader) -> Result<(), SnapshotError> {
        Ok(())
    }
}

const EXPIRY_MS: u64 = 1_000;

fn machine() -> (SessionStateMachine, Arc<Mutex<u64>>) {
    let count = Arc::new(Mutex::new(0));
    let options = SessionOptions {
        expiry: Duration::from_millis(EXPIRY_MS),
        ..SessionOptions::default()
    };
    let sm = SessionStateMachine::new(Box::new(Counting(count.clone())), options);
    (sm, count)
}

/// Entries at indexes from `first`.
fn entries(first: u64, envelopes: &[Envelope]) -> Vec<Committed> {
    envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| Committed {
            id: LogId {
                term: Term(1),
                index: LogIndex(first + i as u64),
            },
            data: e.encode(),
        })
        .collect()
}

fn request(time_ms: u64, session: SessionId, seq: u64) -> Envelope {
    Envelope::Request {
        time_ms,
        session,
        seq,
        first_unacked: 1,
        command: Bytes::from_static(b"incr"),
    }
}

fn reply(bytes: &Bytes) -> Result<Bytes, SessionError> {
    decode_reply(bytes.clone()).expect("a session reply")
}

#[test]
fn a_retry_in_the_same_batch_is_applied_once_and_answered_alike() {
    let (mut sm, count) = machine();
    let opened = sm.on_apply(&entries(1, &[Envelope::Open { time_ms: 10 }]));
    assert_eq!(
        reply(&opened[0]),
        Ok(Bytes::copy_from_slice(&1u64.to_be_bytes()))
    );
    let s = SessionId(1);
    let out = sm.on_apply(&entries(
        2,
        &[request(11, s, 1), request(12, s, 1), request(13, s, 2)],
    ));
    assert_eq!(*count.lock().unwrap(), 2, "seq 1 applied once, seq 2 once");
    assert_eq!(reply(&out[0]), Ok(Bytes::from("1")));
    assert_eq!(reply(&out[1]), Ok(Bytes::from("1")), "the recorded reply");
    assert_eq!(reply(&out[2]), Ok(Bytes::from("2")));
}

#[test]
fn replies_are_kept_per_session() {
    let (mut sm, count) = machine();
    let open = Envelope::Open { time_ms: 10 };
    sm.on_apply(&entries(1, &[open.clone(), open]));
    let out = sm.on_apply(&entries(
        3,
        &[request(11, SessionId(1), 1), request(11, SessionId(2), 1)],
    ));
    assert_eq!(
        *count.lock().unwrap(),
        2,
        "the same seq in two sessions is two requests"
    );
    assert_eq!(reply(&out[1]), Ok(Bytes::from("2")));
}

#[test]
fn expiry_follows_the_times_in_the_log_not_the_local_clock() {
    let (mut sm, count) = machine();
    // Times from long ago: a local clock would have expired all of these.
    sm.on_apply(&entries(1, &[Envelope::Open { time_ms: 5_000 }]));
    let s = SessionId(1);
    let late = 5_000 + EXPIRY_MS;
    let out = sm.on_apply(&entries(2, &[request(late, s, 1)]));
    assert_eq!(
        reply(&out[0]),
        Ok(Bytes::from("1")),
        "exactly the expiry is not past it"
    );
    // An older stamp (a leader whose clock lags) does not move time back.
    let plain = Envelope::Plain {
        time_ms: late + EXPIRY_MS + 1,
        command: Bytes::from_static(b"x"),
    };
    let out = sm.on_apply(&entries(3, &[plain, request(1, s, 2)]));
    assert_eq!(reply(&out[1]), Err(SessionError::Expired { session: s }));
    assert_eq!(*count.lock().unwrap(), 2, "the plain command only");
}

#[test]
fn the_table_is_in_the_snapshot_and_comes_back_from_it() {
    let (mut sm, count) = machine();
    sm.on_apply(&entries(
        1,
        &[Envelope::Open { time_ms: 10 }, request(11, SessionId(1), 1)],
    ));
    let snapshots = MemSnapshots::new();
    let mut writer = snapshots.begin(false).unwrap();
    sm.on_snapshot_save()
        .unwrap()
        .write_to(&mut writer)
        .unwrap();
    assert!(writer.file_names().any(|n| n == SESSIONS_FILE));
    let (mut other, other_count) = machine();
    let last = LogId {
        term: Term(1),
        index: LogIndex(2),
    };
    snapshots.commit(writer, last, Default::default()).unwrap();
    let files = snapshots.open().unwrap().expect("the snapshot");
    other.on_snapshot_load(last, &files).unwrap();
    let out = other.on_apply(&entries(3, &[request(12, SessionId(1), 1)]));
    assert_eq!(
        reply(&out[0]),
        Ok(Bytes::from("1")),
        "the reply recorded before"
    );
    assert_eq!(*other_count.lock().unwrap(), 0);
    assert_eq!(*count.lock().unwrap(), 1);
}

#[test]
fn garbage_in_the_log_is_a_typed_refusal() {
    let (mut sm, count) = machine();
    let junk = Committed {
        id: LogId::default(),
        data: Bytes::from_static(b"not an envelope"),
    };
    let out = sm.on_apply(&[junk]);
    assert_eq!(reply(&out[0]), Err(SessionError::Malformed));
    assert_eq!(*count.lock().unwrap(), 0);
}
