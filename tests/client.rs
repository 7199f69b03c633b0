//! `oar::client` over loopback TCP with TLS: it finds the leader from any
//! server, follows it across a transfer and a kill without being told, and
//! writes exactly once through sessions however its requests are retried
//! (and at most once outside them).

mod runtime;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oar::client::{Client, ClientError, ClientOptions};
use oar::core::{NodeId, RaftOptions};
use oar::runtime::{GroupId, GroupOptions, Node, NodeManager, SessionError, SessionOptions};
use runtime::counter::{CounterMember, start_counter};
use runtime::pki::{self, CLIENT_TOKEN};
use runtime::*;

const GROUP: GroupId = GroupId(1);

fn options(id: NodeId, servers: &[NodeManager], expiry: Duration) -> GroupOptions {
    GroupOptions {
        raft: RaftOptions {
            compaction_margin: 5,
            ..fast_raft(id, GROUP)
        },
        snapshot_interval: None,
        sessions: Some(SessionOptions {
            expiry,
            ..SessionOptions::default()
        }),
        ..GroupOptions::new(GROUP, id, peers_of(servers))
    }
}

fn start(servers: &[NodeManager], i: usize, store: &Store, expiry: Duration) -> CounterMember {
    let id = NodeId(i as u64 + 1);
    start_counter(&servers[i], options(id, servers, expiry), store.clone())
}

struct Cluster {
    servers: Vec<NodeManager>,
    stores: Vec<Store>,
    members: Vec<CounterMember>,
}

async fn cluster(expiry: Duration) -> Cluster {
    let servers = servers(3).await;
    let stores: Vec<Store> = (0..3).map(|_| Store::Mem(Default::default())).collect();
    let members = (0..3)
        .map(|i| start(&servers, i, &stores[i], expiry))
        .collect();
    Cluster {
        servers,
        stores,
        members,
    }
}

impl Cluster {
    fn nodes(&self) -> Vec<&Node> {
        self.members.iter().map(|m| &m.member.node).collect()
    }

    /// A client that knows only the server at `seed`.
    fn client(&self, seed: usize) -> Client {
        self.client_with(seed, ClientOptions::default().attempt_timeout)
    }

    /// [`client`](Self::client), giving up on an attempt after `attempt_timeout`.
    fn client_with(&self, seed: usize, attempt_timeout: Duration) -> Client {
        let dialer = pki::shared().client_dialer_with(CLIENT_TOKEN);
        let options = ClientOptions {
            deadline: Duration::from_secs(15),
            attempt_timeout,
            ..ClientOptions::default()
        };
        Client::new(vec![self.servers[seed].local_addr()], dialer, options)
    }

    /// Waits until the members in `live` hold `value` at one applied index.
    async fn converged(&self, live: &[usize], value: u64) {
        wait_until(|| {
            let index = self.members[live[0]].member.node.applied_index();
            live.iter().all(|&i| {
                let m = &self.members[i];
                m.count.lock().unwrap().value == value && m.member.node.applied_index() == index
            })
        })
        .await;
    }
}

fn incr() -> Bytes {
    Bytes::from_static(b"incr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_finds_the_leader_from_any_server_and_after_a_transfer() {
    let c = cluster(Duration::from_secs(60)).await;
    let leader = wait_for_leader(&c.nodes()).await;
    let seed = (leader + 1) % 3;
    let client = c.client(seed);
    let (found, addr) = client.leader(GROUP).await.unwrap();
    assert_eq!(found, NodeId(leader as u64 + 1));
    assert_eq!(addr, c.servers[leader].local_addr());
    assert_eq!(client.routes().group(GROUP).unwrap().members.len(), 3);

    let session = client.open_session(GROUP).await.unwrap();
    assert_eq!(session.apply(incr()).await.unwrap(), "1");
    let next = NodeId(seed as u64 + 1);
    c.members[leader]
        .member
        .node
        .transfer_leadership(next)
        .await
        .unwrap();
    // Nobody tells the client: the old leader's NotLeader hint does.
    assert_eq!(session.apply(incr()).await.unwrap(), "2");
    assert_eq!(client.leader(GROUP).await.unwrap().0, next);
    assert_eq!(
        client
            .read(GROUP, Bytes::from_static(b"get"))
            .await
            .unwrap(),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_retried_across_a_leader_kill_apply_exactly_once() {
    let c = cluster(Duration::from_secs(60)).await;
    let leader = wait_for_leader(&c.nodes()).await;
    let client = c.client(leader);
    let session = Arc::new(client.open_session(GROUP).await.unwrap());
    assert_eq!(session.apply(incr()).await.unwrap(), "1");
    // Eight writers keep requests in flight while the leader dies.
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let session = session.clone();
        let done = done.clone();
        writers.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            for _ in 0..10 {
                replies.push(session.apply(incr()).await.expect("applied in time"));
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            replies
        }));
    }
    wait_until(|| done.load(std::sync::atomic::Ordering::Relaxed) >= 16).await;
    c.servers[leader].shutdown().await;
    let at_kill = done.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        at_kill < 80,
        "the leader died with requests in flight ({at_kill} done)"
    );
    let mut replies = BTreeSet::new();
    for writer in writers {
        for reply in writer.await.unwrap() {
            let value: u64 = std::str::from_utf8(&reply).unwrap().parse().unwrap();
            assert!(replies.insert(value), "reply {value} given twice");
        }
    }
    // Every increment applied once: the replies are exactly 2..=81.
    assert_eq!(replies, (2..=81).collect());
    let live: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.converged(&live, 81).await;
    let (new_leader, _) = client.leader(GROUP).await.unwrap();
    assert_ne!(
        new_leader,
        NodeId(leader as u64 + 1),
        "found without being told"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_lost_reply_gets_the_recorded_reply() {
    let c = cluster(Duration::from_secs(60)).await;
    let client = c.client(0);
    let session = client.open_session(GROUP).await.unwrap();
    assert_eq!(session.apply(incr()).await.unwrap(), "1");
    // The reply to request 1 was lost; the client sends it again.
    assert_eq!(session.apply_as(1, 1, incr()).await.unwrap(), "1");
    assert_eq!(session.apply(incr()).await.unwrap(), "2");
    c.converged(&[0, 1, 2], 2).await;
    for m in &c.members {
        assert_eq!(m.count.lock().unwrap().applied_incrs, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_dropped_unfinished_does_not_hold_the_watermark() {
    let c = cluster(Duration::from_secs(60)).await;
    let leader = wait_for_leader(&c.nodes()).await;
    let client = c.client(leader);
    let session = client.open_session(GROUP).await.unwrap();
    assert_eq!(session.apply(incr()).await.unwrap(), "1");
    // Request 2 is applied and held before its answer, and its caller gives
    // up on it meanwhile, as a timeout around it would.
    c.members[leader].hold.arm();
    tokio::select! {
        _ = session.apply(incr()) => panic!("answered while held"),
        () = wait_until(|| c.members[leader].hold.is_held()) => {}
    }
    c.members[leader].hold.release();
    assert_eq!(session.apply(incr()).await.unwrap(), "3");
    // Request 3 told the group that nothing below 3 is needed: a late
    // retry of 2 is refused, not answered from a reply kept forever.
    assert_eq!(
        session.apply_as(2, 2, incr()).await,
        Err(ClientError::Session(SessionError::ReplyForgotten {
            session: session.id(),
            seq: 2
        }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart_of_every_node() {
    let mut c = cluster(Duration::from_secs(60)).await;
    let client = c.client(1);
    let session = client.open_session(GROUP).await.unwrap();
    for i in 1..=5 {
        assert_eq!(session.apply(incr()).await.unwrap(), i.to_string());
    }
    c.converged(&[0, 1, 2], 5).await;
    c.members[0].member.node.snapshot().await.unwrap();
    for m in &c.members {
        m.member.node.shutdown().await;
    }
    c.members = (0..3)
        .map(|i| start(&c.servers, i, &c.stores[i], Duration::from_secs(60)))
        .collect();
    // The last reply is still on record, through a new leader.
    assert_eq!(session.apply_as(5, 5, incr()).await.unwrap(), "5");
    assert_eq!(session.apply(incr()).await.unwrap(), "6");
    c.converged(&[0, 1, 2], 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_gets_its_typed_error() {
    let c = cluster(Duration::from_millis(300)).await;
    let client = c.client(2);
    let session = client.open_session(GROUP).await.unwrap();
    assert_eq!(session.apply(incr()).await.unwrap(), "1");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let id = session.id();
    assert_eq!(
        session.apply(incr()).await,
        Err(ClientError::Session(SessionError::Expired { session: id }))
    );
    c.converged(&[0, 1, 2], 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_token_is_refused_at_once() {
    let c = cluster(Duration::from_secs(60)).await;
    let dialer = pki::shared().client_dialer_with("guess");
    let seeds: Vec<SocketAddr> = c.servers.iter().map(|s| s.local_addr()).collect();
    let client = Client::new(seeds, dialer, ClientOptions::default());
    let started = std::time::Instant::now();
    let refused = client.open_session(GROUP).await;
    assert!(
        matches!(refused, Err(ClientError::Refused(_))),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not retried until the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reaches_the_leader_through_any_server() {
    use oar::runtime::admin_client::AdminOp;
    let c = cluster(Duration::from_secs(60)).await;
    let leader = wait_for_leader(&c.nodes()).await;
    let follower = (leader + 1) % 3;
    // What `oarctl --server FOLLOWER transfer-leader` runs.
    let client = Client::new(
        vec![c.servers[follower].local_addr()],
        pki::shared().operator_dialer(),
        ClientOptions::default(),
    );
    let to = NodeId(follower as u64 + 1);
    let text = client
        .admin_at_leader(GROUP, AdminOp::TransferLeader { to })
        .await
        .unwrap();
    assert!(text.contains("transferring"), "{text}");
    wait_until(|| c.members[follower].member.node.leader() == Some(to)).await;
    let status = client
        .admin_at_leader(GROUP, AdminOp::Status)
        .await
        .unwrap();
    assert!(status.contains("role Leader"), "{status}");
    // A client token cannot do what an operator does.
    let app = c.client(follower);
    let refused = app.admin_at_leader(GROUP, AdminOp::Snapshot).await;
    assert!(
        matches!(refused, Err(ClientError::Refused(_))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_seed_is_passed_over() {
    let c = cluster(Duration::from_secs(60)).await;
    // A port nobody listens on any more, named first.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let seeds = vec![dead, c.servers[1].local_addr()];
    let dialer = pki::shared().client_dialer_with(CLIENT_TOKEN);
    let client = Client::new(seeds, dialer, ClientOptions::default());
    let session = client.open_session(GROUP).await.unwrap();
    assert_eq!(session.apply(incr()).await.unwrap(), "1");
    session.close().await.unwrap();
}

/// The leader applies a write (its effect counted) and is killed before
/// it answers: the write's outcome is unknown to the client, which must
/// not send it again (outside a session a second send is a second apply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_outside_sessions_is_applied_at_most_once_across_a_leader_kill() {
    let c = cluster(Duration::from_secs(60)).await;
    let leader = wait_for_leader(&c.nodes()).await;
    // Through a follower: the NotLeader hint leads the client on. An
    // attempt without an answer ends soon.
    let client = c.client_with((leader + 1) % 3, Duration::from_millis(500));
    assert_eq!(client.apply(GROUP, incr()).await.unwrap(), "1");
    c.members[leader].hold.arm();
    let write = tokio::spawn({
        let client = client.clone();
        async move { client.apply(GROUP, incr()).await }
    });
    // Applied on the leader, unanswered; the leader dies.
    wait_until(|| c.members[leader].hold.is_held()).await;
    let server = c.servers[leader].clone();
    let kill = tokio::spawn(async move { server.shutdown().await });
    let outcome = write.await.unwrap();
    // (Its apply task finishes only once the held apply returns.)
    c.members[leader].hold.release();
    kill.await.unwrap();
    // The survivors count the held write once: the next write makes 3 (a
    // client that sent it again would have made this 4).
    let next = client.apply(GROUP, incr()).await.unwrap();
    assert_eq!(next, "3", "the unanswered write was applied once");
    assert!(
        matches!(outcome, Err(ClientError::OutcomeUnknown(_))),
        "{outcome:?}"
    );
    let live: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.converged(&live, 3).await;
}

/// The same kill, through a session: the client retries the unanswered
/// write (same sequence number) at the new leader, which answers the reply
/// recorded when it was first applied, and applies nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_write_unanswered_at_a_leader_kill_is_retried_and_applied_once() {
    let c = cluster(Duration::from_secs(60)).await;
    let leader = wait_for_leader(&c.nodes()).await;
    let client = c.client_with((leader + 1) % 3, Duration::from_millis(500));
    let session = Arc::new(client.open_session(GROUP).await.unwrap());
    assert_eq!(session.apply(incr()).await.unwrap(), "1");
    c.members[leader].hold.arm();
    let write = tokio::spawn({
        let session = session.clone();
        async move { session.apply(incr()).await }
    });
    wait_until(|| c.members[leader].hold.is_held()).await;
    let server = c.servers[leader].clone();
    let kill = tokio::spawn(async move { server.shutdown().await });
    let outcome = write.await.unwrap();
    c.members[leader].hold.release();
    kill.await.unwrap();
    assert_eq!(outcome.unwrap(), "2", "the recorded reply");
    assert_eq!(session.apply(incr()).await.unwrap(), "3");
    let live: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.converged(&live, 3).await;
    for &i in &live {
        assert_eq!(c.members[i].count.lock().unwrap().applied_incrs, 3);
    }
}
