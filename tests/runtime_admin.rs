//! The admin service on the Raft port (what `oarctl` talks to) and the
//! plain-text status page for HTTP `GET`, over loopback TCP.

mod runtime;

use std::time::Duration;

use bytes::Bytes;
use oar::core::NodeId;
use oar::runtime::admin_client::{AdminError, AdminOp, call, call_request};
use oar::runtime::wire::proto;
use oar::runtime::{GroupId, Node};
use runtime::pki::{self, OPERATOR_TOKEN};
use runtime::*;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `op` on `group` at the server `addr`, which must succeed.
async fn admin(addr: std::net::SocketAddr, group: GroupId, op: AdminOp) -> String {
    let dialer = pki::shared().operator_dialer();
    call(&dialer, addr, group, op, TIMEOUT).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_snapshot_transfer_and_membership_through_the_admin_service() {
    let servers = servers(3).await;
    let group = GroupId(3);
    let members = start_group(&servers, group, |_| Store::Mem(Default::default()));
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    for i in 0..20 {
        apply_anywhere(&nodes, Bytes::from(format!("set k{i} v"))).await;
    }
    let leader = wait_for_leader(&nodes).await;
    let leader_addr = servers[leader].local_addr();

    let status = admin(leader_addr, group, AdminOp::Status).await;
    assert!(status.contains("role Leader"), "{status}");
    assert!(status.contains("voters n1,n2,n3"), "{status}");
    assert_eq!(status.matches("  peer ").count(), 2, "{status}");

    let saved = admin(leader_addr, group, AdminOp::Snapshot).await;
    assert!(saved.starts_with("snapshot saved through"), "{saved}");
    let status = admin(leader_addr, group, AdminOp::Status).await;
    assert!(!status.contains("snapshot none"), "{status}");

    // Remove a follower, then add it back as a voter.
    let follower = (leader + 1) % 3;
    let id = NodeId(follower as u64 + 1);
    let removed = admin(leader_addr, group, AdminOp::RemovePeer { id }).await;
    assert!(removed.contains("removed"), "{removed}");
    let added = admin(
        leader_addr,
        group,
        AdminOp::AddPeer {
            id,
            addr: servers[follower].local_addr(),
            catch_up: Duration::from_secs(5),
        },
    )
    .await;
    assert!(added.contains("added as a voter"), "{added}");

    // Hand leadership to the other follower.
    let target = NodeId(((leader + 2) % 3) as u64 + 1);
    admin(leader_addr, group, AdminOp::TransferLeader { to: target }).await;
    for _ in 0..200 {
        if nodes.iter().all(|n| n.leader() == Some(target)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("leadership did not move to {target}");
}

#[tokio::test]
async fn unknown_groups_empty_requests_and_unforced_resets_are_refused_with_a_reason() {
    let servers = servers(1).await;
    let addr = servers[0].local_addr();
    let dialer = pki::shared().operator_dialer();
    let err = call(&dialer, addr, GroupId(42), AdminOp::Status, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdminError::UnknownGroup(m) if m.contains("not found")),
        "{err:?}"
    );
    let empty = proto::AdminRequest {
        group_id: 42,
        op: None,
    };
    assert!(matches!(
        call_request(&dialer, addr, empty, TIMEOUT).await,
        Err(AdminError::InvalidArgument(_))
    ));
    // reset-peers is refused without its explicit consent, even from a
    // tool that skips oarctl's own check.
    let group = GroupId(7);
    let member = start_group(&servers, group, |_| Store::Mem(Default::default()));
    let reset = AdminOp::ResetPeers {
        voters: vec![NodeId(2)],
        learners: vec![],
        force: false,
    };
    let err = call(&dialer, addr, group, reset, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdminError::InvalidArgument(m) if m.contains("force")),
        "{err:?}"
    );
    let status = member[0].node.status().await.unwrap();
    assert_eq!(status.membership.voters, [NodeId(1)].into(), "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_get_on_the_raft_port_shows_every_group() {
    let servers = servers(3).await;
    let members: Vec<_> = [GroupId(1), GroupId(2)]
        .into_iter()
        .flat_map(|g| start_group(&servers, g, |_| Store::Mem(Default::default())))
        .collect();
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    wait_for_leader(&nodes[..3]).await;
    let get =
        format!("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR_TOKEN}\r\n\r\n");
    let page = https_get(servers[0].local_addr(), &get).await;
    assert!(page.starts_with("HTTP/1.0 200 OK"), "{page}");
    assert!(page.contains("oar: 2 group(s)"), "{page}");
    assert!(
        page.contains("group g1 node n1") && page.contains("group g2 node n1"),
        "{page}"
    );
    // The server still speaks Raft afterwards.
    apply_anywhere(&nodes[..3], Bytes::from_static(b"set after page")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_can_be_moved_to_their_own_address_or_turned_away() {
    let servers = servers(3).await;
    let group = GroupId(4);
    let members = start_group(&servers, group, |_| Store::Mem(Default::default()));
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    let leader = wait_for_leader(&nodes).await;
    let raft_addr = servers[leader].local_addr();
    let dialer = pki::shared().operator_dialer();
    // Before the move the Raft port serves operators.
    admin(raft_addr, group, AdminOp::Status).await;
    let admin_addr = servers[leader]
        .serve_admin("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // Now only the admin address does; the Raft port refuses admin verbs
    // and has no status page.
    let status = admin(admin_addr, group, AdminOp::Status).await;
    assert!(status.contains("role Leader"), "{status}");
    let refused = call(&dialer, raft_addr, group, AdminOp::Snapshot, TIMEOUT).await;
    assert!(
        matches!(&refused, Err(AdminError::Refused(m)) if m.contains("not allowed")),
        "{refused:?}"
    );
    let get = format!("GET / HTTP/1.1\r\nAuthorization: Bearer {OPERATOR_TOKEN}\r\n\r\n");
    assert!(https_get(raft_addr, &get).await.starts_with("HTTP/1.0 404"));
    assert!(
        https_get(admin_addr, &get)
            .await
            .starts_with("HTTP/1.0 200")
    );
    // Peers are not served on the admin address: Raft still flows between
    // the Raft ports only.
    apply_anywhere(&nodes, Bytes::from_static(b"set after-move 1")).await;
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_server_with_admin_off_refuses_every_admin_verb() {
    let mut security = pki::shared().security("127.0.0.1".parse().unwrap());
    security.admin_enabled = false;
    security.status_page_enabled = false;
    let server = oar::runtime::NodeManager::bind(
        "127.0.0.1:0".parse().unwrap(),
        security,
        Default::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let dialer = pki::shared().operator_dialer();
    let refused = call(&dialer, addr, GroupId(1), AdminOp::Status, TIMEOUT).await;
    assert!(
        matches!(refused, Err(AdminError::Refused(_))),
        "{refused:?}"
    );
    let get = format!("GET / HTTP/1.1\r\nAuthorization: Bearer {OPERATOR_TOKEN}\r\n\r\n");
    assert!(https_get(addr, &get).await.starts_with("HTTP/1.0 404"));
    server.shutdown().await;
}
