//! A log bounded in memory (`RaftOptions::log_cache_bytes_max`): applied
//! entries leave memory, and a leader reads what a lagging peer needs back
//! from its disk (`Action::LoadEntries`), sending it only while the peer
//! still wants it and only if it agrees with the log.

mod harness;

use std::time::Duration;

use bytes::Bytes;
use harness::{Cluster, MS};
use oar::core::{
    EntriesLoad, Entry, EntryPayload, LogId, Message, MessageBody, NodeId, RaftOptions,
};

/// Three nodes that keep no applied entry in memory, sending at most
/// `append_entries_max` entries an append.
fn cluster(append_entries_max: usize) -> Cluster {
    Cluster::with_options(3, |id| RaftOptions {
        log_cache_bytes_max: Some(0),
        compaction_margin: 0,
        append_entries_max,
        ..harness::options(id, 7)
    })
}

/// A leader, a follower cut off while 20 entries committed (which the
/// leader then evicted), and the leader's first load for it once the
/// network heals (held, not answered).
fn lagging_peer_with_a_load_pending(append_entries_max: usize) -> (Cluster, NodeId, NodeId) {
    let mut c = cluster(append_entries_max);
    let leader = c.elect();
    let lagging = (1..=3).map(NodeId).find(|&id| id != leader).unwrap();
    c.stabilize();
    c.isolate(lagging);
    for i in 0..20 {
        c.propose(leader, &format!("w{i}")).unwrap();
    }
    c.stabilize();
    let log = c.node(leader.0).log();
    assert_eq!(
        log.evicted_through(),
        log.last_index(),
        "every applied entry left memory"
    );
    assert_eq!(log.cached_bytes(), 0);
    c.defer_loads = true;
    c.heal();
    let asked = c.run_until(5 * MS, Duration::from_secs(2), |c| {
        !c.pending_loads.is_empty()
    });
    assert!(asked, "the leader asked for the evicted entries");
    (c, leader, lagging)
}

/// The appends with entries to `to` in flight.
fn appends_to(c: &Cluster, to: NodeId) -> Vec<&Message> {
    c.network
        .iter()
        .filter(|m| m.to == to)
        .filter(|m| matches!(&m.body, MessageBody::AppendRequest(r) if !r.entries.is_empty()))
        .collect()
}

#[test]
fn a_lagging_peer_is_sent_its_evicted_entries_read_back_from_disk() {
    let (mut c, leader, lagging) = lagging_peer_with_a_load_pending(1024);
    let (from, load) = c.pending_loads[0].clone();
    assert_eq!((from, load.peer), (leader, lagging));
    assert_eq!(
        load.lo,
        c.node(lagging.0).log().last_index().next(),
        "from the first entry the peer lacks"
    );
    assert_eq!(c.pending_loads.len(), 1, "one load per peer at a time");
    assert!(appends_to(&c, lagging).is_empty(), "nothing sent meanwhile");
    c.complete_load(0);
    let sent = appends_to(&c, lagging);
    let MessageBody::AppendRequest(request) = &sent[0].body else {
        unreachable!()
    };
    assert_eq!(
        request.entries[0].id.index, load.lo,
        "the entries read back"
    );
    c.defer_loads = false;
    let last = c.node(leader.0).log().last_id();
    let caught_up = c.run_until(5 * MS, Duration::from_secs(2), |c| {
        c.node(lagging.0).log().applied() == last.index
    });
    assert!(caught_up, "the peer caught up from the leader's disk");
    assert_eq!(c.sent.get("install_snapshot"), None, "without a snapshot");
    c.check_log_matching();
}

/// What the leader's disk holds for `load` now (a read that ran before
/// anything else happened).
fn read_now(c: &Cluster, leader: NodeId, load: &EntriesLoad) -> Vec<Entry> {
    let node = &c.nodes[&leader];
    let start = node.durable_last_purged.index.0 + 1;
    let from = (load.lo.0 - start) as usize;
    let to = (load.hi.0 - start) as usize;
    node.durable_log[from..to.min(node.durable_log.len())].to_vec()
}

/// The peer's next entries went into a snapshot while its load was out
/// (read before the compaction, answered after): the peer is offered the
/// snapshot, and the late answer is dropped. (Two checks drop it: the
/// peer no longer wants those entries, and their previous entry is gone.)
#[test]
fn a_load_answered_after_a_snapshot_made_it_obsolete_is_dropped() {
    let (mut c, leader, lagging) = lagging_peer_with_a_load_pending(1024);
    let (_, load) = c.pending_loads.remove(0);
    let read = read_now(&c, leader, &load);
    c.defer_installs = true;
    c.snapshot_now(leader).expect("a snapshot");
    let offered = c.run_until(5 * MS, Duration::from_secs(2), |c| {
        c.sent.contains_key("install_snapshot")
    });
    assert!(offered, "the peer is offered the snapshot");
    c.network.retain(|m| m.to != lagging);
    c.call(leader, |raft, now| {
        raft.handle_entries_loaded(now, load, read)
    });
    assert!(
        appends_to(&c, lagging).is_empty(),
        "the late load is dropped"
    );
}

/// An answer delivered twice (or an old one) is not the load outstanding:
/// it is dropped, and the one outstanding still counts. (Two checks drop
/// it: its id, and the peer's next index having moved past it.)
#[test]
fn a_load_answered_twice_is_sent_once() {
    let (mut c, leader, lagging) = lagging_peer_with_a_load_pending(4);
    let (_, first) = c.pending_loads[0].clone();
    let read = read_now(&c, leader, &first);
    c.complete_load(0);
    assert_eq!(appends_to(&c, lagging).len(), 1);
    // The peer takes the entries; the leader asks for the next ones.
    let asked = c.run_until(MS, Duration::from_secs(1), |c| !c.pending_loads.is_empty());
    assert!(asked, "a second load");
    c.network.retain(|m| m.to != lagging);
    c.call(leader, |raft, now| {
        raft.handle_entries_loaded(now, first, read)
    });
    assert!(
        appends_to(&c, lagging).is_empty(),
        "the duplicate is dropped"
    );
    c.complete_load(0);
    assert_eq!(appends_to(&c, lagging).len(), 1, "the second load is sent");
}

/// Whatever a disk hands back is checked against the log's terms: a read
/// that disagrees is never sent, and a later read is asked for.
#[test]
fn entries_read_back_that_contradict_the_log_are_never_sent() {
    let (mut c, leader, lagging) = lagging_peer_with_a_load_pending(1024);
    let (_, load) = c.pending_loads.remove(0);
    let forged = vec![Entry {
        id: LogId::new(99, load.lo.0),
        payload: EntryPayload::Command(Bytes::from_static(b"forged")),
    }];
    c.call(leader, |raft, now| {
        raft.handle_entries_loaded(now, load.clone(), forged)
    });
    assert!(appends_to(&c, lagging).is_empty(), "nothing sent");
    let again = c.run_until(5 * MS, Duration::from_secs(2), |c| {
        !c.pending_loads.is_empty()
    });
    assert!(again, "a new load after the next heartbeat answer");
    assert_ne!(c.pending_loads[0].1.id, load.id);
    c.defer_loads = false;
    c.complete_load(0);
    let last = c.node(leader.0).log().last_id();
    let caught_up = c.run_until(5 * MS, Duration::from_secs(2), |c| {
        c.node(lagging.0).log().applied() == last.index
    });
    assert!(caught_up);
}
