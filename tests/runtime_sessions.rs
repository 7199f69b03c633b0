//! Client sessions over loopback TCP: a retried request is applied once and
//! answered from the record; the watermark forgets; sessions expire by log
//! time with a typed error; the table is in every snapshot, survives a
//! restart of every node and an install on a lagging follower, and is the
//! same on every replica.

mod runtime;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use oar::core::{NodeId, RaftOptions, TransferError};
use oar::runtime::session::SESSIONS_FILE;
use oar::runtime::{
    Error, GroupId, GroupOptions, Node, NodeManager, SessionError, SessionId, SessionOptions,
};
use runtime::counter::{CounterMember, start_counter};
use runtime::*;

fn options(group: GroupId, id: NodeId, servers: &[NodeManager], expiry: Duration) -> GroupOptions {
    GroupOptions {
        raft: RaftOptions {
            compaction_margin: 5,
            ..fast_raft(id, group)
        },
        snapshot_interval: None,
        sessions: Some(SessionOptions {
            expiry,
            ..SessionOptions::default()
        }),
        ..GroupOptions::new(group, id, peers_of(servers))
    }
}

fn start(servers: &[NodeManager], group: GroupId, i: usize, store: Store) -> CounterMember {
    let id = NodeId(i as u64 + 1);
    let expiry = Duration::from_secs(60);
    start_counter(&servers[i], options(group, id, servers, expiry), store)
}

async fn cluster(group: GroupId, expiry: Duration) -> (Vec<NodeManager>, Vec<CounterMember>) {
    let servers = servers(3).await;
    let members = (0..3)
        .map(|i| {
            let id = NodeId(i as u64 + 1);
            let store = Store::Mem(Default::default());
            start_counter(&servers[i], options(group, id, &servers, expiry), store)
        })
        .collect();
    (servers, members)
}

/// Runs `call` at whichever member leads until it gets an answer other than
/// "not the leader" (or a request lost to a leader change).
async fn at_leader<T, F, Fut>(members: &[&CounterMember], call: F) -> Result<T, Error>
where
    F: Fn(Node) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    for _ in 0..400 {
        for m in members {
            if m.member.node.leader() != Some(m.member.node.id()) {
                continue;
            }
            match call(m.member.node.clone()).await {
                Err(Error::NotLeader { .. } | Error::Overwritten(_) | Error::NotRunning) => {}
                result => return result,
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no leader answered");
}

async fn incr(
    members: &[&CounterMember],
    s: SessionId,
    seq: u64,
    acked: u64,
) -> Result<String, Error> {
    at_leader(members, |node| async move {
        let applied = node
            .apply_in_session(s, seq, acked, Bytes::from_static(b"incr"))
            .await?;
        Ok(String::from_utf8(applied.response.to_vec()).unwrap())
    })
    .await
}

/// Waits until every member holds `value` at the same applied index.
async fn converged(members: &[&CounterMember], value: u64) {
    wait_until(|| {
        let index = members[0].member.node.applied_index();
        members.iter().all(|m| {
            m.count.lock().unwrap().value == value && m.member.node.applied_index() == index
        })
    })
    .await;
}

/// The session table each member saves in a snapshot now, all taken at
/// the same index (a member may still be applying the last entry: its
/// client was answered before its applied index moved, so ask again).
async fn tables(members: &[&CounterMember]) -> Vec<Bytes> {
    for _ in 0..50 {
        let mut out = Vec::new();
        let mut at = Vec::new();
        for m in members {
            at.push(m.member.node.snapshot().await.expect("snapshot saved"));
            let snapshots = m.member.store.open().snapshots();
            let snapshot = snapshots.open().unwrap().expect("a snapshot");
            let table = snapshot
                .read_file(SESSIONS_FILE)
                .expect("the session table");
            out.push(Bytes::from(table));
        }
        if at.windows(2).all(|w| w[0] == w[1]) {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the members' snapshots never met at one index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_answered_from_the_record_and_applied_once() {
    let (_servers, members) = cluster(GroupId(1), Duration::from_secs(60)).await;
    let all: Vec<&CounterMember> = members.iter().collect();
    let s = at_leader(&all, |node| async move { node.open_session().await })
        .await
        .unwrap();
    assert_eq!(incr(&all, s, 1, 1).await.unwrap(), "1");
    // The retry (same sequence number) gets the recorded reply.
    assert_eq!(incr(&all, s, 1, 1).await.unwrap(), "1");
    assert_eq!(incr(&all, s, 1, 1).await.unwrap(), "1");
    converged(&all, 1).await;
    for m in &all {
        assert_eq!(m.count.lock().unwrap().applied_incrs, 1, "applied once");
    }
    // Acknowledging 1 forgets its reply: a late retry of it is refused,
    // never applied again.
    assert_eq!(incr(&all, s, 2, 2).await.unwrap(), "2");
    assert_eq!(
        incr(&all, s, 1, 2).await,
        Err(Error::Session(SessionError::ReplyForgotten {
            session: s,
            seq: 1
        }))
    );
    // A command outside any session applies as it always did.
    let plain = at_leader(&all, |node| async move {
        node.apply(Bytes::from_static(b"get")).await
    })
    .await
    .unwrap();
    assert_eq!(&plain.response[..], b"2");
    converged(&all, 2).await;
    let tables = tables(&all).await;
    assert!(
        tables.windows(2).all(|w| w[0] == w[1]),
        "the same table everywhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_closed_session_gets_its_typed_error_and_applies_nothing() {
    let (_servers, members) = cluster(GroupId(2), Duration::from_millis(300)).await;
    let all: Vec<&CounterMember> = members.iter().collect();
    let s = at_leader(&all, |node| async move { node.open_session().await })
        .await
        .unwrap();
    assert_eq!(incr(&all, s, 1, 1).await.unwrap(), "1");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The retry's own stamp moves log time past the expiry.
    assert_eq!(
        incr(&all, s, 1, 1).await,
        Err(Error::Session(SessionError::Expired { session: s }))
    );
    let t = at_leader(&all, |node| async move { node.open_session().await })
        .await
        .unwrap();
    at_leader(&all, |node| async move { node.close_session(t).await })
        .await
        .unwrap();
    assert_eq!(
        incr(&all, t, 1, 1).await,
        Err(Error::Session(SessionError::Expired { session: t }))
    );
    converged(&all, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for m in &all {
        assert_eq!(m.count.lock().unwrap().value, 1, "nothing applied");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_snapshot_install_and_a_restart_of_every_node() {
    let group = GroupId(3);
    let servers = servers(3).await;
    let stores: Vec<Store> = (0..3).map(|_| Store::Mem(Default::default())).collect();
    let mut members: Vec<CounterMember> = (0..3)
        .map(|i| start(&servers, group, i, stores[i].clone()))
        .collect();
    let all: Vec<&CounterMember> = members.iter().collect();
    let s = at_leader(&all, |node| async move { node.open_session().await })
        .await
        .unwrap();
    assert_eq!(incr(&all, s, 1, 1).await.unwrap(), "1");
    converged(&all, 1).await;

    // A follower misses the next requests and the log before them.
    let nodes: Vec<&Node> = members.iter().map(|m| &m.member.node).collect();
    let leader = wait_for_leader(&nodes).await;
    let lagging = (leader + 1) % 3;
    members[lagging].member.node.shutdown().await;
    let live: Vec<&CounterMember> = (0..3)
        .filter(|&i| i != lagging)
        .map(|i| &members[i])
        .collect();
    for seq in 2..=20 {
        assert_eq!(incr(&live, s, seq, seq).await.unwrap(), seq.to_string());
    }
    for m in &live {
        m.member.node.snapshot().await.unwrap();
    }
    members[lagging] = start(&servers, group, lagging, stores[lagging].clone());
    let all: Vec<&CounterMember> = members.iter().collect();
    converged(&all, 20).await;
    assert!(
        members[lagging].count.lock().unwrap().applied_incrs < 19,
        "caught up through a snapshot, not the log"
    );

    // Every node restarts: the table comes back from snapshot and log.
    for m in &members {
        m.member.node.shutdown().await;
    }
    members = (0..3)
        .map(|i| start(&servers, group, i, stores[i].clone()))
        .collect();
    let all: Vec<&CounterMember> = members.iter().collect();
    converged(&all, 20).await;
    assert_eq!(
        incr(&all, s, 20, 20).await.unwrap(),
        "20",
        "the recorded reply"
    );
    // And at the member that installed the snapshot, as leader.
    let target = members[lagging].member.node.id();
    let moved = at_leader(&all, |node| async move {
        node.transfer_leadership(target).await
    })
    .await;
    // It may have been elected on its own after the restart.
    assert!(
        matches!(moved, Ok(()) | Err(Error::Transfer(TransferError::ToSelf))),
        "{moved:?}"
    );
    wait_until(|| members[lagging].member.node.leader() == Some(target)).await;
    let at_lagging = members[lagging]
        .member
        .node
        .apply_in_session(s, 20, 20, Bytes::from_static(b"incr"))
        .await
        .unwrap();
    assert_eq!(&at_lagging.response[..], b"20");
    assert_eq!(incr(&all, s, 21, 21).await.unwrap(), "21");
    converged(&all, 21).await;
    let tables = tables(&all).await;
    assert!(
        tables.windows(2).all(|w| w[0] == w[1]),
        "the same table everywhere"
    );
}
