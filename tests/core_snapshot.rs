//! Snapshots and log compaction (Raft §7): the log is compacted behind a
//! saved snapshot with a margin; a follower that needs compacted entries
//! installs the leader's snapshot (keeping a log suffix that matches it,
//! replacing one that does not); failed and lost offers are repeated; a
//! node restarts from its snapshot without applying anything twice.

mod harness;

use std::time::Duration;

use bytes::Bytes;
use harness::{Cluster, MS, n};
use oar::core::{
    Action, AppendResponse, Entry, EntryPayload, HardState, InitialState, InputError, LogId,
    LogIndex, Membership, Message, MessageBody, RaftNode, RaftOptions, Role, SnapshotInfo, Term,
};

/// Three nodes led by 1, with this compaction margin.
fn led_by_1(seed: u64, margin: u64) -> Cluster {
    let mut c = Cluster::with_options(3, |id| RaftOptions {
        compaction_margin: margin,
        snapshot_install_timeout: Duration::from_secs(2),
        ..harness::options(id, seed)
    });
    c.now = c.now + Duration::from_secs(1);
    c.tick_node(n(1));
    c.stabilize();
    assert_eq!(c.node(1).role(), Role::Leader);
    c
}

fn write(c: &mut Cluster, count: usize) -> LogId {
    let mut last = LogId::default();
    for i in 0..count {
        last = c.propose(n(1), &format!("w{i}")).expect("leader accepts");
    }
    c.stabilize();
    last
}

/// Writes `count` entries while node 3 is cut off, has node 1 save a
/// snapshot, then reconnects node 3. Returns the last entry written.
fn write_while_3_is_cut_off(c: &mut Cluster, count: usize) -> LogId {
    c.isolate(n(3));
    let last = write(c, count);
    c.snapshot_now(n(1));
    c.heal();
    last
}

fn applied_ids(c: &Cluster, id: u64) -> Vec<LogId> {
    c.test_node(id).applied.iter().map(|e| e.id).collect()
}

#[test]
fn a_saved_snapshot_compacts_memory_and_disk_behind_the_margin() {
    let mut c = led_by_1(1, 5);
    let last = write(&mut c, 20);
    assert_eq!(c.snapshot_now(n(1)), Some(last));
    c.stabilize();
    let log = c.node(1).log();
    assert_eq!(log.first_index(), LogIndex(last.index.0 - 5 + 1));
    assert_eq!(log.snapshot_last().index, LogIndex(last.index.0 - 5));
    assert_eq!(
        c.test_node(1).durable_last_purged,
        log.snapshot_last(),
        "storage compacted too"
    );
    assert_eq!(c.node(1).snapshot().map(|s| s.last_included), Some(last));
    assert_eq!(
        c.sent.get("install_snapshot"),
        None,
        "followers are up to date"
    );
}

#[test]
fn a_follower_behind_the_compaction_point_installs_the_snapshot() {
    let mut c = led_by_1(2, 5);
    let last = write_while_3_is_cut_off(&mut c, 30);
    let caught_up = c.run_until(MS, Duration::from_secs(5), |c| {
        c.test_node(3).applied.len() as u64 >= last.index.0
    });
    assert!(caught_up, "node 3 caught up");
    assert_eq!(c.sent.get("install_snapshot"), Some(&1));
    assert_eq!(c.test_node(3).installs, 1);
    assert_eq!(applied_ids(&c, 3), applied_ids(&c, 1));
    // Its own log did not reach the snapshot: replaced, starting after it.
    assert_eq!(c.node(3).log().snapshot_last(), last);
    assert_eq!(c.test_node(3).durable_last_purged, last);
    // And it replicates normally afterwards.
    let more = c.propose(n(1), "after").unwrap();
    c.stabilize();
    assert_eq!(c.node(3).log().committed(), more.index);
}

#[test]
fn a_follower_within_the_margin_catches_up_from_the_log() {
    let mut c = led_by_1(3, 50);
    let last = write_while_3_is_cut_off(&mut c, 30);
    let caught_up = c.run_until(MS, Duration::from_secs(5), |c| {
        c.test_node(3).applied.len() as u64 >= last.index.0
    });
    assert!(caught_up);
    assert_eq!(c.sent.get("install_snapshot"), None);
}

#[test]
fn a_restarted_node_resumes_from_its_snapshot_and_applies_nothing_twice() {
    let mut c = led_by_1(4, 2);
    let last = write(&mut c, 10);
    c.snapshot_now(n(2));
    c.stabilize();
    c.crash(n(2));
    c.restart_bootstrap(n(2));
    let log = c.node(2).log();
    assert_eq!((log.applied(), log.committed()), (last.index, last.index));
    assert_eq!(
        log.first_index(),
        LogIndex(last.index.0 - 2 + 1),
        "margin kept across restart"
    );
    // The harness fails the test if an entry is applied out of order or twice.
    let more = write(&mut c, 5);
    c.stabilize();
    assert_eq!(c.test_node(2).applied.len() as u64, more.index.0);
}

#[test]
fn a_failed_install_is_offered_again_with_the_newer_snapshot() {
    let mut c = led_by_1(5, 0);
    write_while_3_is_cut_off(&mut c, 10);
    // Replace the snapshot after it was offered, before node 3 pulls it:
    // its copy fails.
    run_until_offered(&mut c);
    let newer = write_without_3(&mut c, 5);
    c.snapshot_now(n(1));
    let caught_up = c.run_until(MS, Duration::from_secs(5), |c| {
        c.test_node(3).applied.len() as u64 >= newer.index.0
    });
    assert!(caught_up);
    assert_eq!(c.sent.get("snapshot_failed"), Some(&1));
    assert_eq!(c.sent.get("install_snapshot"), Some(&2));
    assert_eq!(
        c.test_node(3)
            .snapshot
            .as_ref()
            .map(|s| s.info.last_included),
        Some(newer)
    );
}

/// Runs time and delivers every message but snapshot offers until node 1
/// offered one to node 3.
fn run_until_offered(c: &mut Cluster) {
    for _ in 0..1000 {
        if !c.in_flight(1, 3, "install_snapshot").is_empty() {
            return;
        }
        c.advance(MS);
        while c.deliver_first(|m| !matches!(m.body, MessageBody::InstallSnapshot(_))) {}
    }
    panic!("no snapshot offered");
}

/// Writes `count` entries committed by nodes 1 and 2 while messages to 3
/// stay in flight.
fn write_without_3(c: &mut Cluster, count: usize) -> LogId {
    let mut last = LogId::default();
    for i in 0..count {
        last = c.propose(n(1), &format!("x{i}")).unwrap();
    }
    while c.deliver_first(|m| m.to != n(3)) {
        c.drain_all();
    }
    last
}

#[test]
fn a_lost_offer_is_repeated_after_the_install_timeout() {
    let mut c = led_by_1(6, 0);
    write_while_3_is_cut_off(&mut c, 10);
    run_until_offered(&mut c);
    c.drop_where(|m| matches!(m.body, MessageBody::InstallSnapshot(_)));
    c.run_until(10 * MS, Duration::from_millis(1500), |_| false);
    assert_eq!(
        c.sent.get("install_snapshot"),
        Some(&1),
        "nothing before the timeout"
    );
    assert_eq!(c.test_node(3).installs, 0);
    c.run_until(10 * MS, Duration::from_secs(1), |_| false);
    assert_eq!(c.sent.get("install_snapshot"), Some(&2), "offered again");
    assert_eq!(c.test_node(3).installs, 1);
}

#[test]
fn a_snapshot_of_unapplied_entries_is_refused() {
    let mut c = led_by_1(7, 0);
    let last = write(&mut c, 3);
    let beyond = SnapshotInfo {
        last_included: LogId::new(last.term.0, last.index.0 + 1),
        membership: Membership::with_voters(harness::ids(3)).into(),
    };
    let result = c.call(n(1), |r, now| r.handle_snapshot_saved(now, beyond));
    assert!(matches!(result, Err(InputError::SnapshotMismatch { .. })));
    assert_eq!(
        c.node(1).log().first_index(),
        LogIndex(1),
        "nothing compacted"
    );
}

/// Leader 1 of term 1 offers `info` to node 3.
fn offer(info: &SnapshotInfo) -> Message {
    Message {
        from: n(1),
        to: n(3),
        term: Term(1),
        body: MessageBody::InstallSnapshot(info.clone()),
    }
}

/// A lone follower holding entries 1..=10 of term 1 (none known
/// committed), offered a snapshot through (1, 5) by leader 1 of term 1.
fn offered() -> (RaftNode, SnapshotInfo, Vec<Action>) {
    let membership = Membership::with_voters(harness::ids(3));
    let entries = (1..=10)
        .map(|i| Entry {
            id: LogId::new(1, i),
            payload: EntryPayload::Command(Bytes::from_static(b"x")),
        })
        .collect();
    let state = InitialState {
        hard_state: HardState {
            term: Term(1),
            voted_for: None,
        },
        membership: membership.clone(),
        snapshot: None,
        last_purged: LogId::default(),
        entries,
        applied: None,
    };
    let mut node = RaftNode::new(
        harness::options(n(3), 1),
        state,
        oar::core::Instant::from_nanos(0),
    )
    .unwrap();
    let info = SnapshotInfo {
        last_included: LogId::new(1, 5),
        membership: membership.into(),
    };
    let now = oar::core::Instant::from_nanos(1);
    node.handle_message(now, offer(&info)).unwrap();
    let actions = std::iter::from_fn(|| node.poll_action()).collect();
    (node, info, actions)
}

#[test]
fn an_installed_snapshot_keeps_the_log_suffix_that_matches_it() {
    let (mut node, info, actions) = offered();
    assert!(actions.contains(&Action::InstallSnapshot {
        from: n(1),
        snapshot: info.clone(),
    }));
    let now = oar::core::Instant::from_nanos(2);
    node.handle_snapshot_installed(now, info).unwrap();
    let actions: Vec<Action> = std::iter::from_fn(|| node.poll_action()).collect();
    assert!(!actions.iter().any(|a| matches!(a, Action::ResetLog { .. })));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Apply { .. })),
        "5 is loaded, not applied"
    );
    let log = node.log();
    assert_eq!(log.last_id(), LogId::new(1, 10), "suffix kept");
    assert_eq!((log.committed(), log.applied()), (LogIndex(5), LogIndex(5)));
    let ack = actions.iter().find_map(|a| match a {
        Action::Send(Message {
            body: MessageBody::AppendResponse(AppendResponse::Success { match_index }),
            ..
        }) => Some(*match_index),
        _ => None,
    });
    assert_eq!(ack, Some(LogIndex(5)), "acknowledged like an append");
}

#[test]
fn an_installed_snapshot_replaces_a_log_that_does_not_match_it() {
    // The first offer is overtaken by one beyond the follower's log end.
    let (mut node, _, _) = offered();
    let info = SnapshotInfo {
        last_included: LogId::new(1, 12),
        membership: Membership::with_voters(harness::ids(3)).into(),
    };
    let now = oar::core::Instant::from_nanos(3);
    node.handle_message(now, offer(&info)).unwrap();
    let _: Vec<Action> = std::iter::from_fn(|| node.poll_action()).collect();
    // A newer offer replaced the first; the first's completion is refused.
    let stale = SnapshotInfo {
        last_included: LogId::new(1, 5),
        membership: Membership::with_voters(harness::ids(3)).into(),
    };
    assert!(matches!(
        node.handle_snapshot_installed(now, stale),
        Err(InputError::UnexpectedSnapshot { .. })
    ));
    node.handle_snapshot_installed(now, info).unwrap();
    let actions: Vec<Action> = std::iter::from_fn(|| node.poll_action()).collect();
    assert!(actions.contains(&Action::ResetLog {
        snapshot: LogId::new(1, 12)
    }));
    let log = node.log();
    assert_eq!(log.last_id(), LogId::new(1, 12));
    assert_eq!(log.first_index(), LogIndex(13));
    assert_eq!(
        (log.committed(), log.applied()),
        (LogIndex(12), LogIndex(12))
    );
}
