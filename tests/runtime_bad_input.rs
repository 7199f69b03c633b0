//! Bad input on the Raft port: random bytes before and after the
//! handshake, a frame claiming 4 GiB, a valid frame for an unknown group, a
//! vote from a non-member. Each is refused with a typed error; the server
//! keeps serving and loses no acknowledged write. (Attacks on the handshake
//! itself are in `runtime_front_door.rs`.)

mod runtime;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use oar::core::{LogId, Message, MessageBody, NodeId, Term, VoteRequest};
use oar::runtime::wire::frame::encode_frame;
use oar::runtime::wire::{convert, proto};
use oar::runtime::{GroupId, MemStorage, Node, NodeManager};
use prost::Message as _;
use runtime::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame_of(group: GroupId, m: &Message) -> BytesMut {
    let frame = proto::Frame {
        kind: Some(proto::frame::Kind::Raft(convert::to_proto(group, m))),
    };
    let mut out = BytesMut::new();
    encode_frame(&frame.encode_to_vec(), &mut out);
    out
}

/// An authenticated connection as a server on 127.0.0.1 (vouched for by
/// its certificate, so the handshake passes and frames are read).
async fn peer(target: std::net::SocketAddr) -> oar::runtime::auth::BoxedStream {
    let security = runtime::pki::shared().security("127.0.0.1".parse().unwrap());
    let own = "127.0.0.1:1".parse().unwrap();
    oar::runtime::Dialer::server(&security, own, Duration::from_secs(5))
        .dial(target)
        .await
        .unwrap()
}

async fn cluster() -> (Vec<NodeManager>, Vec<Member>) {
    let servers = servers(3).await;
    let members = start_group(&servers, GroupId(1), |_| Store::Mem(MemStorage::new()));
    (servers, members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_frames_unknown_groups_and_strangers_are_refused() {
    let (servers, members) = cluster().await;
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    for k in 0..50 {
        nodes[leader]
            .apply(Bytes::from(format!("set before{k} 1")))
            .await
            .unwrap();
    }
    let target = &servers[leader];
    let stats = target.stats();

    // Random bytes instead of a TLS handshake: refused, connection closed.
    let mut conn = TcpStream::connect(target.local_addr()).await.unwrap();
    conn.write_all(&[0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0xff, 0x00])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let _ = conn.read_to_end(&mut Vec::new()).await;
    wait_until(|| stats.refused_handshakes.load(Ordering::Relaxed) == 1).await;

    // Random bytes from an authenticated peer: not a frame of a valid
    // message; the connection is closed.
    let mut conn = peer(target.local_addr()).await;
    let mut garbage = BytesMut::new();
    encode_frame(
        &[0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0xff, 0x00],
        &mut garbage,
    );
    conn.write_all(&garbage).await.unwrap();
    conn.flush().await.unwrap();
    assert_eq!(
        conn.read(&mut buf).await.unwrap_or(0),
        0,
        "server closed the connection"
    );
    wait_until(|| stats.malformed_frames.load(Ordering::Relaxed) == 1).await;

    // A header claiming 4 GiB: refused before allocating; connection closed.
    let mut conn = peer(target.local_addr()).await;
    conn.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    conn.flush().await.unwrap();
    assert_eq!(conn.read(&mut buf).await.unwrap_or(0), 0);
    wait_until(|| stats.oversized_frames.load(Ordering::Relaxed) == 1).await;

    // A valid frame for a group this server does not host: an error frame back.
    let mut conn = peer(target.local_addr()).await;
    let stranger_group = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        body: MessageBody::HeartbeatResponse { round: 0 },
    };
    conn.write_all(&frame_of(GroupId(999), &stranger_group))
        .await
        .unwrap();
    conn.flush().await.unwrap();
    let body = oar::runtime::wire::frame::read_frame(&mut conn, 1 << 20)
        .await
        .unwrap();
    let reply = proto::Frame::decode(body).unwrap();
    let Some(proto::frame::Kind::Error(error)) = reply.kind else {
        panic!("expected an error frame")
    };
    assert_eq!(
        error.kind,
        proto::transport_error::Kind::UnknownGroup as i32
    );
    assert_eq!(error.group_id, 999);
    assert_eq!(stats.unknown_group_messages.load(Ordering::Relaxed), 1);

    // A vote from a non-member with a huge term: the core refuses it, the
    // leader keeps its term and role.
    let status = nodes[leader].status().await.unwrap();
    let vote = Message {
        from: NodeId(77),
        to: nodes[leader].id(),
        term: Term(status.hard_state.term.0 + 100),
        body: MessageBody::VoteRequest(VoteRequest {
            pre_vote: false,
            last_log_id: LogId::new(1_000, 1_000),
            leadership_transfer: true,
        }),
    };
    conn.write_all(&frame_of(GroupId(1), &vote)).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = nodes[leader].status().await.unwrap();
    assert_eq!(
        after.hard_state.term, status.hard_state.term,
        "stranger's term ignored"
    );
    assert_eq!(after.role, oar::core::Role::Leader);

    // Still serving, nothing acknowledged lost.
    for k in 0..50 {
        nodes[leader]
            .apply(Bytes::from(format!("set after{k} 1")))
            .await
            .unwrap();
    }
    let records: Vec<_> = members.iter().map(|m| m.record.clone()).collect();
    wait_applied(&records, 100).await;
    for record in &records {
        let map = &record.lock().unwrap().map;
        assert_eq!(map.len(), 100);
        assert!(map.contains_key("before0") && map.contains_key("after49"));
    }
    for server in &servers {
        server.shutdown().await;
    }
}
