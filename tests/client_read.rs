//! Client reads over loopback TCP with TLS, by every read policy: a read
//! after an acknowledged write sees it; ReadIndex and Lease reads skip the
//! log (the state machine's `on_query` answers them); follower reads are
//! served by followers; a state machine without queries is still read,
//! through the log; an unknown policy on the wire is refused.

mod runtime;
// Not in `runtime`: that module is shared with oarctl's tests, which have
// no prost.
#[path = "runtime/raw_client.rs"]
mod raw_client;

use std::time::Duration;

use bytes::Bytes;
use oar::client::{Client, ClientError, ClientOptions};
use oar::core::{LogIndex, NodeId};
use oar::runtime::wire::proto;
use oar::runtime::wire::proto::client_error::Kind;
use oar::runtime::wire::proto::client_request::Op;
use oar::runtime::wire::proto::client_response::Result as Answer;
use oar::runtime::{GroupId, GroupOptions, Node, NodeManager, ReadPolicy};
use raw_client::{receive, send};
use runtime::counter::{CounterMember, start_counter};
use runtime::pki::{self, CLIENT_TOKEN};
use runtime::*;

const GROUP: GroupId = GroupId(1);
const POLICIES: [ReadPolicy; 3] = [ReadPolicy::ReadIndex, ReadPolicy::Lease, ReadPolicy::Log];

/// Three servers running a counter group (which answers `get` queries).
async fn counters() -> (Vec<NodeManager>, Vec<CounterMember>) {
    let servers = servers(3).await;
    let members = (0..3)
        .map(|i| {
            let id = NodeId(i as u64 + 1);
            let options = GroupOptions {
                raft: fast_raft(id, GROUP),
                snapshot_interval: None,
                ..GroupOptions::new(GROUP, id, peers_of(&servers))
            };
            start_counter(&servers[i], options, Store::Mem(Default::default()))
        })
        .collect();
    (servers, members)
}

fn nodes(members: &[CounterMember]) -> Vec<&Node> {
    members.iter().map(|m| &m.member.node).collect()
}

fn client(servers: &[NodeManager], follower_reads: bool) -> Client {
    let dialer = pki::shared().client_dialer_with(CLIENT_TOKEN);
    let options = ClientOptions {
        deadline: Duration::from_secs(15),
        follower_reads,
        ..ClientOptions::default()
    };
    Client::new(vec![servers[0].local_addr()], dialer, options)
}

async fn last_log_index(node: &Node) -> LogIndex {
    node.status().await.unwrap().last_log_id.index
}

fn get() -> Bytes {
    Bytes::from_static(b"get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_sees_an_acknowledged_write_and_only_log_appends() {
    let (servers, members) = counters().await;
    let leader = wait_for_leader(&nodes(&members)).await;
    let client = client(&servers, false);
    let mut value = 0;
    for policy in POLICIES {
        value += 1;
        let written = client.apply(GROUP, Bytes::from_static(b"incr")).await;
        assert_eq!(written.unwrap(), value.to_string());
        let before = last_log_index(&members[leader].member.node).await;
        let queries = members[leader].count.lock().unwrap().queries;
        for _ in 0..5 {
            let read = client.read_with(GROUP, get(), policy).await.unwrap();
            assert_eq!(read, value.to_string(), "{policy:?} read saw the write");
        }
        let after = last_log_index(&members[leader].member.node).await;
        // Only Log appends (a no-op a read); the query itself never enters
        // the log: `on_query` answered every read.
        let appended = after.0 - before.0;
        match policy {
            ReadPolicy::Log => assert_eq!(appended, 5, "a no-op per Log read"),
            _ => assert_eq!(appended, 0, "{policy:?} reads skipped the log"),
        }
        let answered = members[leader].count.lock().unwrap().queries - queries;
        assert_eq!(answered, 5, "{policy:?}: on_query answered every read");
    }
    for m in &members {
        assert_eq!(m.count.lock().unwrap().applied_incrs, 3, "no read applied");
    }
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_reads_are_served_by_followers_and_see_the_write() {
    let (servers, members) = counters().await;
    let leader = wait_for_leader(&nodes(&members)).await;
    let client = client(&servers, true);
    for round in 1..=6u64 {
        let written = client.apply(GROUP, Bytes::from_static(b"incr")).await;
        assert_eq!(written.unwrap(), round.to_string());
        for policy in [ReadPolicy::ReadIndex, ReadPolicy::Lease] {
            let read = client.read_with(GROUP, get(), policy).await.unwrap();
            assert_eq!(read, round.to_string(), "{policy:?} read in round {round}");
        }
    }
    for (i, m) in members.iter().enumerate() {
        let queries = m.count.lock().unwrap().queries;
        if i != leader {
            assert!(queries > 0, "follower {i} served reads");
        }
    }
    let total: u64 = members
        .iter()
        .map(|m| m.count.lock().unwrap().queries)
        .sum();
    assert!(total >= 12, "every read answered by a query ({total})");
    for server in &servers {
        server.shutdown().await;
    }
}

/// A follower answers a query only once it applied everything through the
/// read index: asked right after each acknowledged write, it never answers
/// a value older than that write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_query_waits_for_its_apply() {
    let (servers, members) = counters().await;
    let leader = wait_for_leader(&nodes(&members)).await;
    let client = client(&servers, false);
    for round in 1..=40u64 {
        let written = client.apply(GROUP, Bytes::from_static(b"incr")).await;
        assert_eq!(written.unwrap(), round.to_string());
        for (i, m) in members.iter().enumerate().filter(|(i, _)| *i != leader) {
            let read = m.member.node.query(ReadPolicy::ReadIndex, get()).await;
            assert_eq!(
                read.unwrap(),
                round.to_string(),
                "follower {i} in round {round}"
            );
        }
    }
    for server in &servers {
        server.shutdown().await;
    }
}

/// Reads right after the leader dies: the followers cannot confirm them
/// (timeout, leadership lost) until a new leader is elected; the client
/// takes those failures as "retry", and the read succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_across_a_leader_kill_are_retried_until_served() {
    let (servers, members) = counters().await;
    let leader = wait_for_leader(&nodes(&members)).await;
    let client = client(&servers, true);
    let written = client.apply(GROUP, Bytes::from_static(b"incr")).await;
    assert_eq!(written.unwrap(), "1");
    servers[leader].shutdown().await;
    for policy in [ReadPolicy::ReadIndex, ReadPolicy::Lease] {
        let read = client.read_with(GROUP, get(), policy).await;
        assert_eq!(read.unwrap(), "1", "{policy:?}");
    }
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_without_queries_is_read_through_the_log() {
    let servers = servers(3).await;
    // The recorder answers no queries; every command answers its key count.
    let members = start_group(&servers, GROUP, |_| Store::Mem(Default::default()));
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    wait_for_leader(&nodes).await;
    for follower_reads in [false, true] {
        let client = client(&servers, follower_reads);
        for (p, policy) in POLICIES.iter().enumerate() {
            let key = format!("k{p}{follower_reads}");
            let command = Bytes::from(format!("set {key} 1"));
            let keys = client.apply(GROUP, command).await.unwrap();
            let query = Bytes::from(format!("count after {key}"));
            let read = client.read_with(GROUP, query.clone(), *policy).await;
            assert_eq!(read.unwrap(), keys, "{policy:?} read saw the write");
            // It went through the log: applied as a command.
            let record = members[0].record.clone();
            wait_until(|| record.lock().unwrap().log.iter().any(|(_, c)| *c == query)).await;
        }
    }
    for server in &servers {
        server.shutdown().await;
    }
}

fn read_request(policy: i32) -> proto::ClientRequest {
    proto::ClientRequest {
        group_id: GROUP.0,
        op: Some(Op::Read(proto::ClientRead {
            query: get(),
            policy,
        })),
        request_id: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_read_policy_is_refused_with_a_typed_error() {
    let (servers, members) = counters().await;
    let leader = wait_for_leader(&nodes(&members)).await;
    let dialer = pki::shared().client_dialer_with(CLIENT_TOKEN);
    let mut stream = dialer.dial(servers[leader].local_addr()).await.unwrap();
    for hostile in [4, 99, -1, i32::MAX, i32::MIN] {
        send(&mut stream, read_request(hostile)).await;
        let answer = receive(&mut stream).await;
        let Some(Answer::Error(error)) = answer.result else {
            panic!("policy {hostile} answered: {answer:?}");
        };
        assert_eq!(error.kind, Kind::Refused as i32, "{error:?}");
        assert!(error.detail.contains("unknown read policy"), "{error:?}");
    }
    // The connection and the server go on serving.
    send(
        &mut stream,
        read_request(proto::ReadPolicy::ReadIndex as i32),
    )
    .await;
    let answer = receive(&mut stream).await;
    assert_eq!(answer.result, Some(Answer::Reply(Bytes::from_static(b"0"))));
    // Through the client, a refusal is typed and not retried.
    let refused = client(&servers, false)
        .read(GROUP, Bytes::from_static(b"bogus"))
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Refused(d)) if d.contains("invalid query")),
        "{refused:?}"
    );
    for server in &servers {
        server.shutdown().await;
    }
}
