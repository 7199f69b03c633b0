//! The front door, attacked over real loopback TCP the way the security
//! review did (issue "The front door"): each numbered finding replayed
//! against a three-server cluster. The cluster keeps serving and loses no
//! acknowledged write in each.

mod runtime;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use oar::core::{
    AppendRequest, Entry, EntryPayload, Heartbeat, LogId, LogIndex, Message, MessageBody, NodeId,
    Term, VoteRequest,
};
use oar::runtime::admin_client::{AdminError, AdminOp, call};
use oar::runtime::auth::BoxedStream;
use oar::runtime::wire::convert;
use oar::runtime::wire::frame::{encode_frame, read_frame};
use oar::runtime::wire::proto::{self, admin_request::Op};
use oar::runtime::{
    DialError, Dialer, Error, GroupId, GroupOptions, MemStorage, Node, NodeManager,
    TransportOptions,
};
use prost::Message as _;
use runtime::pki::{self, OPERATOR_TOKEN};
use runtime::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GROUP: GroupId = GroupId(1);

fn raft_frame(m: &Message) -> BytesMut {
    let frame = proto::Frame {
        kind: Some(proto::frame::Kind::Raft(convert::to_proto(GROUP, m))),
    };
    let mut out = BytesMut::new();
    encode_frame(&frame.encode_to_vec(), &mut out);
    out
}

/// An authenticated connection to `target` as the server at `own`, whose
/// certificate (signed by the cluster CA) names `own`'s IP: a machine of
/// the cluster that is not in the group's address book, or that speaks for
/// nodes that do not live on it.
async fn outsider(target: SocketAddr, own: SocketAddr) -> BoxedStream {
    let security = pki::shared().security(own.ip());
    Dialer::server(&security, own, Duration::from_secs(5))
        .dial(target)
        .await
        .expect("an authenticated server may connect")
}

fn outsider_addr() -> SocketAddr {
    "127.0.0.9:1".parse().unwrap()
}

async fn cluster() -> (Vec<NodeManager>, Vec<Member>, usize) {
    let servers = servers(3).await;
    let members = start_group(&servers, GROUP, |_| Store::Mem(MemStorage::new()));
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    (servers, members, leader)
}

/// Writes `count` keys named `prefix<k>` through the leader; all must succeed.
async fn write_all(members: &[Member], prefix: &str, count: usize) {
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    for k in 0..count {
        apply_anywhere(&nodes, Bytes::from(format!("set {prefix}{k} 1"))).await;
    }
}

async fn terms(members: &[Member]) -> Vec<Term> {
    let mut out = Vec::new();
    for m in members {
        out.push(m.node.status().await.unwrap().hard_state.term);
    }
    out
}

async fn shutdown(servers: &[NodeManager]) {
    for server in servers {
        server.shutdown().await;
    }
}

/// Finding 1: one forged heartbeat at term 2^64−1 ended the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_heartbeat_at_the_top_of_the_term_range_changes_nothing() {
    let (servers, members, _) = cluster().await;
    write_all(&members, "before", 10).await;
    let before = terms(&members).await;
    for (i, target) in servers.iter().enumerate() {
        let to = members[i].node.id();
        for from in [NodeId(77), NodeId((to.0 % 3) + 1)] {
            let forged = Message {
                from,
                to,
                term: Term(u64::MAX),
                body: MessageBody::Heartbeat(Heartbeat {
                    leader_commit: LogIndex(1_000),
                    round: 0,
                }),
            };
            // A stranger without credentials does not get past the handshake.
            let mut plain = TcpStream::connect(target.local_addr()).await.unwrap();
            let _ = plain.write_all(&raft_frame(&forged)).await;
            // A server of the cluster speaking for a node that is not its own.
            let mut conn = outsider(target.local_addr(), outsider_addr()).await;
            conn.write_all(&raft_frame(&forged)).await.unwrap();
            conn.flush().await.unwrap();
        }
    }
    for member in &members {
        wait_until(|| member.node.forbidden_messages() >= 2).await;
    }
    assert_eq!(terms(&members).await, before, "no forged term adopted");
    write_all(&members, "after", 10).await;
    shutdown(&servers).await;
}

/// Finding 2: a forged append from an unknown id injected a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_append_injects_no_write() {
    let (servers, members, leader) = cluster().await;
    write_all(&members, "before", 10).await;
    let follower = (leader + 1) % 3;
    let status = members[follower].node.status().await.unwrap();
    let last = status.last_log_id;
    let injected = Entry {
        id: LogId::new(status.hard_state.term.0 + 1, last.index.0 + 1),
        payload: EntryPayload::Command(Bytes::from_static(b"set injected 1")),
    };
    let forged = Message {
        from: NodeId(77),
        to: members[follower].node.id(),
        term: Term(status.hard_state.term.0 + 1),
        body: MessageBody::AppendRequest(AppendRequest {
            prev_log_id: last,
            entries: vec![injected].into(),
            leader_commit: last.index.next(),
        }),
    };
    let target = servers[follower].local_addr();
    let mut conn = outsider(target, outsider_addr()).await;
    conn.write_all(&raft_frame(&forged)).await.unwrap();
    conn.flush().await.unwrap();
    wait_until(|| members[follower].node.forbidden_messages() >= 1).await;
    write_all(&members, "after", 10).await;
    let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
    wait_applied(&records, 20).await;
    for record in &records {
        let map = &record.lock().unwrap().map;
        assert!(!map.contains_key("injected"), "a forged entry was applied");
        assert_eq!(map.len(), 20);
    }
    shutdown(&servers).await;
}

/// Finding 3: a vote storm claiming a member's id with the transfer flag
/// stopped every write while the term climbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_vote_storm_stops_no_write() {
    let (servers, members, leader) = cluster().await;
    let before = terms(&members).await;
    let mut conns = Vec::new();
    for server in &servers {
        conns.push(outsider(server.local_addr(), outsider_addr()).await);
    }
    for round in 0..50u64 {
        for (i, conn) in conns.iter_mut().enumerate() {
            let to = members[i].node.id();
            let vote = Message {
                from: NodeId((to.0 % 3) + 1),
                to,
                term: Term(before[leader].0 + 1 + round),
                body: MessageBody::VoteRequest(VoteRequest {
                    pre_vote: false,
                    last_log_id: LogId::new(u64::MAX / 2, u64::MAX / 2),
                    leadership_transfer: true,
                }),
            };
            conn.write_all(&raft_frame(&vote)).await.unwrap();
        }
    }
    for conn in &mut conns {
        conn.flush().await.unwrap();
    }
    write_all(&members, "during", 50).await;
    assert_eq!(terms(&members).await, before, "the storm moved no term");
    shutdown(&servers).await;
}

fn admin_request(op: Op) -> proto::AdminRequest {
    proto::AdminRequest {
        group_id: GROUP.0,
        op: Some(op),
    }
}

/// Sends one frame on `conn` and reads one back.
async fn exchange(conn: &mut BoxedStream, kind: proto::frame::Kind) -> proto::frame::Kind {
    let mut out = BytesMut::new();
    encode_frame(&proto::Frame { kind: Some(kind) }.encode_to_vec(), &mut out);
    conn.write_all(&out).await.unwrap();
    conn.flush().await.unwrap();
    let body = read_frame(conn, 1 << 20).await.unwrap();
    proto::Frame::decode(body).unwrap().kind.unwrap()
}

/// Finding 4: strangers ran admin verbs, fetched the whole store and read
/// the status page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_operators_operate_and_only_peers_copy_snapshots() {
    let (servers, members, leader) = cluster().await;
    write_all(&members, "k", 10).await;
    let target = servers[leader].local_addr();
    let timeout = Duration::from_secs(5);

    // A wrong token: refused at the Hello.
    let wrong = pki::shared().operator_dialer_with("guess");
    let err = call(&wrong, target, GROUP, AdminOp::Status, timeout)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdminError::Dial(DialError::Refused(r))
            if r.status == proto::hello_reply::Status::NotAuthenticated),
        "{err:?}"
    );
    // Another cluster's id: refused at the Hello.
    let other = Dialer::operator(
        std::sync::Arc::new(pki::shared().operator()),
        "another-cluster",
        OPERATOR_TOKEN.as_bytes().to_vec(),
        timeout,
    );
    let err = call(&other, target, GROUP, AdminOp::Status, timeout)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdminError::Dial(DialError::Refused(r))
            if r.status == proto::hello_reply::Status::WrongCluster),
        "{err:?}"
    );
    // A peer is no operator: admin verbs are forbidden on its connection.
    let mut peer = outsider(target, outsider_addr()).await;
    let remove = admin_request(Op::RemovePeer(proto::AdminRemovePeer { id: 2 }));
    let answer = exchange(&mut peer, proto::frame::Kind::AdminRequest(remove)).await;
    assert!(
        matches!(&answer, proto::frame::Kind::Error(e)
            if e.kind == proto::transport_error::Kind::Forbidden as i32),
        "{answer:?}"
    );
    // An operator is no peer: snapshot files are forbidden on its connection.
    let mut operator = pki::shared().operator_dialer().dial(target).await.unwrap();
    let fetch = proto::GetFileRequest {
        group_id: GROUP.0,
        snapshot: Some(proto::LogId { term: 1, index: 1 }),
        ..Default::default()
    };
    let answer = exchange(&mut operator, proto::frame::Kind::GetFileRequest(fetch)).await;
    assert!(
        matches!(&answer, proto::frame::Kind::Error(e)
            if e.kind == proto::transport_error::Kind::Forbidden as i32),
        "{answer:?}"
    );
    // A server certificate the CA never signed: no connection at all.
    let foreign = runtime::pki::Pki::new();
    let security = foreign.security(outsider_addr().ip());
    let dialed = Dialer::server(&security, outsider_addr(), timeout)
        .dial(target)
        .await;
    assert!(
        matches!(dialed, Err(DialError::Auth(_) | DialError::Malformed(_))),
        "a foreign certificate connected"
    );
    // The status page wants the token, inside TLS; plain HTTP gets nothing.
    let page = https_get(target, "GET / HTTP/1.1\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.0 401"), "{page}");
    let mut plain = TcpStream::connect(target).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply).await;
    assert!(
        !String::from_utf8_lossy(&reply).contains("group"),
        "status leaked"
    );
    // And the membership is what it was.
    let status = members[leader].node.status().await.unwrap();
    assert_eq!(status.membership.voter_ids().len(), 3);
    write_all(&members, "after", 5).await;
    shutdown(&servers).await;
}

/// Finding 5: one oversized client request stopped a leader's group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_command_is_refused_before_it_is_logged() {
    let (servers, members, leader) = cluster().await;
    let node = &members[leader].node;
    let max = node.command_bytes_max();
    let err = node
        .apply(Bytes::from(vec![b'x'; max + 1]))
        .await
        .unwrap_err();
    assert_eq!(err, Error::CommandTooLarge { size: max + 1, max });
    // Just under the limit fits a record and a frame: it commits everywhere.
    let mut big = b"set big ".to_vec();
    big.resize(max, b'v');
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    apply_anywhere(&nodes, Bytes::from(big)).await;
    let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
    wait_applied(&records, 1).await;
    write_all(&members, "after", 5).await;
    wait_applied(&records, 6).await;
    // Options that would let a command outgrow a frame are refused.
    let peers = peers_of(&servers);
    let mut options = GroupOptions::new(GroupId(9), NodeId(1), peers);
    options.command_bytes_max = 64 << 20;
    let err = servers[0]
        .add_group(
            options,
            Box::new(MemStorage::new()),
            Box::new(Recorder(Default::default())),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Options(_)), "{err:?}");
    shutdown(&servers).await;
}

/// Finding 6: no connection cap and no handshake deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_and_deadlines_refuse_strangers_not_the_cluster() {
    let options = TransportOptions {
        connections_per_ip_max: 4,
        handshake_timeout: Duration::from_millis(500),
        ..TransportOptions::default()
    };
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(server_at("127.0.0.1:0".parse().unwrap(), options.clone()).await);
    }
    let members = start_group(&servers, GROUP, |_| Store::Mem(MemStorage::new()));
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    wait_for_leader(&nodes).await;
    let target = servers[0].local_addr();
    // Twenty silent connections from one stranger address.
    let stranger: IpAddr = "127.0.0.5".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(stranger, 0)).unwrap();
        held.push(socket.connect(target).await.unwrap());
    }
    wait_until(|| {
        servers[0]
            .stats()
            .refused_connections
            .load(Ordering::Relaxed)
            >= 16
    })
    .await;
    assert!(servers[0].open_connections() <= 4 + 2, "capped per IP");
    // The silent ones are closed at the handshake deadline.
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), held[0].read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    wait_until(|| {
        servers[0]
            .stats()
            .refused_handshakes
            .load(Ordering::Relaxed)
            >= 4
    })
    .await;
    write_all(&members, "after", 10).await;
    shutdown(&servers).await;
}

/// Finding 7: a 63 MiB frame of empty entries decoded into 4.5 GiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_countless_empty_entries_is_refused_before_decoding() {
    let (servers, members, leader) = cluster().await;
    let follower = (leader + 1) % 3;
    // Valid entries (they would decode), a dozen bytes each on the wire.
    let entries = (1..=1_000_000)
        .map(|i| proto::LogEntry {
            id: Some(proto::LogId { term: 1, index: i }),
            r#type: proto::EntryType::Noop as i32,
            ..Default::default()
        })
        .collect();
    let append = proto::AppendEntriesRequest {
        prev_log_id: Some(proto::LogId { term: 0, index: 0 }),
        entries,
        leader_commit: 0,
    };
    let message = proto::RaftMessage {
        group_id: GROUP.0,
        from: 1,
        to: 2,
        term: 1,
        body: Some(proto::raft_message::Body::AppendRequest(append)),
    };
    let frame = proto::Frame {
        kind: Some(proto::frame::Kind::Raft(message)),
    };
    let mut out = BytesMut::new();
    encode_frame(&frame.encode_to_vec(), &mut out);
    let target = &servers[follower];
    let mut conn = outsider(target.local_addr(), outsider_addr()).await;
    conn.write_all(&out).await.unwrap();
    conn.flush().await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        conn.read(&mut buf).await.unwrap_or(0),
        0,
        "connection closed"
    );
    wait_until(|| target.stats().malformed_frames.load(Ordering::Relaxed) >= 1).await;
    assert_eq!(
        members[follower].node.forbidden_messages(),
        0,
        "refused before decoding"
    );
    write_all(&members, "after", 10).await;
    shutdown(&servers).await;
}

/// Finding 8: a 4-byte header claiming 64 MiB reserved 64 MiB, with no
/// deadline: before authentication only a Hello-sized frame is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_frame_before_the_hello_is_refused() {
    let (servers, members, leader) = cluster().await;
    let target = &servers[leader];
    // Inside TLS (an operator's client, no certificate), before any Hello.
    use oar::runtime::Authenticator;
    let addr = target.local_addr();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut conn = pki::shared().operator().connect(tcp, addr).await.unwrap();
    conn.write_all(&(64u32 << 20).to_be_bytes()).await.unwrap();
    conn.flush().await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        conn.read(&mut buf).await.unwrap_or(0),
        0,
        "connection closed"
    );
    wait_until(|| target.stats().oversized_frames.load(Ordering::Relaxed) >= 1).await;
    write_all(&members, "after", 5).await;
    shutdown(&servers).await;
}
