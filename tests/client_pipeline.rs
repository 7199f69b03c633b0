//! Pipelined client connections over loopback TCP with TLS: a server
//! answers a connection's requests as each finishes (out of order), stops
//! reading past its in-flight bound, and a client sharing one connection
//! between callers fails at once with `Busy` when its slots are taken.

mod runtime;
// Not in `runtime`: that module is shared with oarctl's tests, which have
// no prost.
#[path = "runtime/raw_client.rs"]
mod raw_client;

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oar::client::{Client, ClientError, ClientOptions};
use oar::core::{LogId, NodeId};
use oar::runtime::auth::BoxedStream;
use oar::runtime::wire::proto;
use oar::runtime::wire::proto::client_request::Op;
use oar::runtime::wire::proto::client_response::Result as Answer;
use oar::runtime::{
    Committed, GroupId, GroupOptions, NodeManager, SnapshotError, SnapshotReader, SnapshotView,
    StateMachine, TransportOptions,
};
use raw_client::{receive, send};
use runtime::pki::{self, CLIENT_TOKEN};
use runtime::*;

const GROUP: GroupId = GroupId(1);

/// Applies `wait` only once the test opens the gate (holding up the apply
/// loop, and so every request through the log); answers everything else
/// with `ok` at once. It blocks, and says so (`may_block`): otherwise the
/// blocked worker would hold up whatever task it had queued, the test's
/// own included (seen in CI: the route lookup unanswered for 20 s).
struct Gated(Arc<Mutex<Receiver<()>>>);

impl StateMachine for Gated {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        commands
            .iter()
            .map(|c| {
                if &c.data[..] == b"wait" {
                    let gate = self.0.lock().unwrap();
                    let _ = gate.recv_timeout(Duration::from_secs(20));
                    return Bytes::from_static(b"waited");
                }
                Bytes::from_static(b"ok")
            })
            .collect()
    }

    fn may_block(&self) -> bool {
        true
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        Err(SnapshotError::Unsupported)
    }

    fn on_snapshot_load(&mut self, _: LogId, _: &SnapshotReader) -> Result<(), SnapshotError> {
        Err(SnapshotError::Unsupported)
    }
}

/// One server running a one-member gated group; the gate's opener.
async fn gated_server(options: TransportOptions) -> (NodeManager, Sender<()>) {
    let server = server_at("127.0.0.1:0".parse().unwrap(), options).await;
    let (open, gate) = channel();
    let group = GroupOptions {
        raft: fast_raft(NodeId(1), GROUP),
        snapshot_interval: None,
        ..GroupOptions::new(GROUP, NodeId(1), peers_of(std::slice::from_ref(&server)))
    };
    let store = Store::Mem(Default::default());
    let node = server
        .add_group(
            group,
            store.open(),
            Box::new(Gated(Arc::new(Mutex::new(gate)))),
        )
        .unwrap();
    wait_for_leader(&[&node]).await;
    (server, open)
}

async fn dial(server: &NodeManager) -> BoxedStream {
    let dialer = pki::shared().client_dialer_with(CLIENT_TOKEN);
    dialer.dial(server.local_addr()).await.unwrap()
}

fn read_request(id: u64, query: &'static [u8]) -> proto::ClientRequest {
    proto::ClientRequest {
        group_id: GROUP.0,
        op: Some(Op::Read(proto::ClientRead {
            query: Bytes::from_static(query),
            policy: 0,
        })),
        request_id: id,
    }
}

fn route_request(id: u64) -> proto::ClientRequest {
    proto::ClientRequest {
        group_id: 0,
        op: Some(Op::Route(proto::RouteRequest {})),
        request_id: id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_s_requests_are_answered_as_each_finishes() {
    let (server, open) = gated_server(TransportOptions::default()).await;
    let mut stream = dial(&server).await;
    send(&mut stream, read_request(7, b"wait")).await;
    send(&mut stream, route_request(8)).await;
    // The route lookup does not wait behind the read the gate holds.
    let first = tokio::time::timeout(Duration::from_secs(5), receive(&mut stream))
        .await
        .expect("the route lookup is answered while the read waits");
    assert_eq!(first.request_id, 8);
    assert!(matches!(first.result, Some(Answer::Route(_))));
    open.send(()).unwrap();
    let second = receive(&mut stream).await;
    assert_eq!(second.request_id, 7);
    assert_eq!(
        second.result,
        Some(Answer::Reply(Bytes::from_static(b"waited")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_past_its_in_flight_bound_is_not_read_until_one_finishes() {
    let options = TransportOptions {
        client_requests_in_flight_max: 1,
        ..TransportOptions::default()
    };
    let (server, open) = gated_server(options).await;
    let mut stream = dial(&server).await;
    send(&mut stream, read_request(1, b"wait")).await;
    send(&mut stream, route_request(2)).await;
    // One is in flight, held by the gate: the route lookup (answered at
    // once when read, as the test above shows) is not even read.
    let early = tokio::time::timeout(Duration::from_millis(500), receive(&mut stream)).await;
    assert!(early.is_err(), "answered past the bound: {early:?}");
    open.send(()).unwrap();
    assert_eq!(receive(&mut stream).await.request_id, 1);
    assert_eq!(receive(&mut stream).await.request_id, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_shares_a_connection_and_is_busy_when_its_slots_are_taken() {
    let (server, open) = gated_server(TransportOptions::default()).await;
    let dialer = pki::shared().client_dialer_with(CLIENT_TOKEN);
    let options = ClientOptions {
        connections_per_server_max: 1,
        requests_in_flight_per_connection_max: 2,
        ..ClientOptions::default()
    };
    let client = Client::new(vec![server.local_addr()], dialer, options);
    client.leader(GROUP).await.unwrap();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.read(GROUP, Bytes::from_static(b"wait")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another caller's route lookup shares the connection and is answered
    // while the read waits.
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), client.refresh())
            .await
            .unwrap(),
        1
    );
    let second = tokio::spawn({
        let client = client.clone();
        async move { client.read(GROUP, Bytes::from_static(b"wait")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Both slots are taken: the third caller is told at once.
    assert_eq!(
        client.read(GROUP, Bytes::from_static(b"third")).await,
        Err(ClientError::Busy { in_flight: 2 })
    );
    open.send(()).unwrap();
    open.send(()).unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), "waited");
    assert_eq!(second.await.unwrap().unwrap(), "waited");
    assert_eq!(
        client
            .read(GROUP, Bytes::from_static(b"after"))
            .await
            .unwrap(),
        "ok"
    );
}
