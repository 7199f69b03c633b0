//! What operators and embedders observe of a live loopback cluster: the
//! watchable status (`Node::watch`, `wait_for_leader`, `wait_for_applied`),
//! the Prometheus exposition at `GET /metrics` (parsed with a Prometheus
//! text parser), and the JSON status pages.

mod runtime;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use oar::core::{LogIndex, NodeId, RaftOptions, Role};
use oar::runtime::{GroupId, GroupOptions, METRIC_NAMES, Node, NodeManager, WaitError};
use runtime::*;

const SECOND: Duration = Duration::from_secs(1);

/// `GET path` with the operator token; the response body.
async fn get(addr: SocketAddr, path: &str) -> String {
    let request = format!(
        "GET {path} HTTP/1.1\r\nAuthorization: Bearer {}\r\n\r\n",
        pki::OPERATOR_TOKEN
    );
    let response = https_get(addr, &request).await;
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.0 200"), "{path}: {head}");
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_awaits_a_leader_and_an_applied_index_through_watch() {
    let servers = servers(3).await;
    let members = start_group(&servers, GroupId(1), |_| Store::Mem(Default::default()));
    let node = &members[0].node;
    let mut watch = node.watch();
    assert_eq!(watch.borrow().leader, None);
    let (leader, addr) = node.wait_for_leader(10 * SECOND).await.expect("a leader");
    let leader_member = members.iter().find(|m| m.node.id() == leader).unwrap();
    assert_eq!(addr, Some(leader_member.server.local_addr()));
    assert!(watch.has_changed().unwrap(), "the receiver was told");
    assert_eq!(watch.borrow_and_update().leader, Some(leader));
    let on_leader = leader_member.node.watch();
    leader_member
        .node
        .wait_for_status(10 * SECOND, |s| s.role == Role::Leader)
        .await
        .expect("the leader sees itself lead");
    assert_eq!(on_leader.borrow().membership.voter_ids().len(), 3);

    let applied = leader_member
        .node
        .apply(Bytes::from_static(b"set a 1"))
        .await
        .expect("applied");
    for m in &members {
        let at = m
            .node
            .wait_for_applied(applied.index, 10 * SECOND)
            .await
            .expect("applied everywhere");
        assert!(at >= applied.index);
        assert!(m.node.watch().borrow().committed >= applied.index);
        assert_eq!(
            m.record.lock().unwrap().map.get("a").map(String::as_str),
            Some("1")
        );
    }
    let far = LogIndex(applied.index.0 + 1_000);
    let waited = node.wait_for_applied(far, Duration::from_millis(100)).await;
    assert!(
        matches!(waited, Err(WaitError::Timeout { .. })),
        "{waited:?}"
    );

    // A member that stops ends every wait at once, leaderless.
    let stopping = members[0].node.clone();
    let waiter = tokio::spawn(async move { stopping.wait_for_applied(far, 60 * SECOND).await });
    members[0].node.shutdown().await;
    let waited = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waited, Err(WaitError::Stopped));
    assert!(members[0].node.watch().borrow().stopped);
    assert_eq!(
        members[0].node.wait_for_leader(SECOND).await,
        Err(WaitError::Stopped)
    );
}

/// Options for the metrics cluster: snapshots on request, a short margin,
/// so that a member started late installs one.
fn options(id: NodeId, peers: &BTreeMap<NodeId, SocketAddr>) -> GroupOptions {
    GroupOptions {
        raft: RaftOptions {
            compaction_margin: 10,
            ..fast_raft(id, GroupId(1))
        },
        snapshot_interval: None,
        ..GroupOptions::new(GroupId(1), id, peers.clone())
    }
}

fn start(servers: &[NodeManager], dir: &Path, i: usize) -> Member {
    let id = NodeId(i as u64 + 1);
    let store = Store::Disk(dir.join(format!("n{i}")));
    start_member_with_options(&servers[i], options(id, &peers_of(servers)), store)
}

/// A parsed exposition: (name, sorted labels) → value.
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Parses an exposition into (name, labels) → value; a histogram's value
/// is its `_count`, its buckets checked to be cumulative.
fn parse(text: &str) -> Samples {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let mut out = BTreeMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<(String, String)> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
                buckets.last().expect("buckets").count
            }
            other => panic!("unexpected {other:?}"),
        };
        out.insert((sample.metric, labels), value);
    }
    out
}

/// The sum of `name` over every label set (and every scrape given).
fn total(scrapes: &[&Samples], name: &str) -> f64 {
    scrapes
        .iter()
        .flat_map(|s| s.iter())
        .filter(|((metric, _), _)| metric == name)
        .map(|(_, v)| v)
        .sum()
}

async fn scrape_all(
    servers: &[NodeManager],
) -> Vec<BTreeMap<(String, Vec<(String, String)>), f64>> {
    let mut out = Vec::new();
    for server in servers {
        out.push(parse(&get(server.local_addr(), "/metrics").await));
    }
    out
}

/// Closed-loop writers at whichever member leads.
async fn load(nodes: &[Node], clients: usize, writes: usize) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let nodes = nodes.to_vec();
        tasks.push(tokio::spawn(async move {
            let refs: Vec<&Node> = nodes.iter().collect();
            for i in 0..writes {
                let command = Bytes::from(format!("set k{c} v{i}"));
                apply_anywhere(&refs, command).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scraped_under_load_name_every_metric_and_move() {
    let servers = servers(3).await;
    let dir = tempfile::tempdir().unwrap();
    // Two of three voters run: a quorum; the third starts late.
    let mut members: Vec<Member> = (0..2).map(|i| start(&servers, dir.path(), i)).collect();
    let (leader, _) = members[0].node.wait_for_leader(10 * SECOND).await.unwrap();
    let before = scrape_all(&servers).await;

    let nodes: Vec<Node> = members.iter().map(|m| m.node.clone()).collect();
    let scraper = {
        let servers = servers.clone();
        tokio::spawn(async move {
            let mut during = Vec::new();
            for _ in 0..5 {
                during.push(scrape_all(&servers).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            during
        })
    };
    load(&nodes, 16, 40).await;
    assert!(!scraper.await.unwrap().is_empty());

    // Snapshots on both live members; the late one installs the leader's.
    let l = members.iter().position(|m| m.node.id() == leader).unwrap();
    let snapshot = members[l].node.snapshot().await.expect("snapshot");
    members[1 - l].node.snapshot().await.expect("snapshot");
    members.push(start(&servers, dir.path(), 2));
    members[2]
        .node
        .wait_for_applied(snapshot.index, 20 * SECOND)
        .await
        .expect("the late member caught up");
    // A leader change, and a stranger refused at the handshake.
    let to = NodeId(if leader == NodeId(3) { 1 } else { 3 });
    members[l]
        .node
        .transfer_leadership(to)
        .await
        .expect("transfer");
    members[2]
        .node
        .wait_for_status(10 * SECOND, |s| s.role == Role::Leader)
        .await
        .ok();
    {
        use tokio::io::AsyncWriteExt;
        let mut junk = tokio::net::TcpStream::connect(servers[0].local_addr())
            .await
            .unwrap();
        junk.write_all(b"\x16\x03\x01\x00\x05hello").await.unwrap();
        let _ = junk.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = scrape_all(&servers).await;

    let names: std::collections::BTreeSet<&str> = after
        .iter()
        .flat_map(|s| s.keys())
        .map(|(n, _)| n.as_str())
        .collect();
    for name in METRIC_NAMES {
        assert!(
            names.contains(name),
            "{name} missing from /metrics; got {names:?}"
        );
    }
    let b: Vec<_> = before.iter().collect();
    let a: Vec<_> = after.iter().collect();
    for name in METRIC_NAMES {
        let (was, now) = (total(&b, name), total(&a, name));
        let steady = [
            "oar_group_voters",
            "oar_group_role",
            "oar_group_pending_proposals",
            "oar_peer_inflight_messages",
            "oar_connections_open",
            "oar_proposals_refused_total",
            "oar_forbidden_messages_total",
            "oar_peer_replication_lag_entries",
            "oar_peer_servers_lost_total",
        ];
        if !steady.contains(name) {
            assert!(now > was, "{name} did not move: {was} → {now}");
        }
    }
    // The leader reports its peers; the stranger was refused by reason.
    let leader_now = members
        .iter()
        .position(|m| m.node.leader() == Some(m.node.id()));
    let leader_now = leader_now.expect("a leader");
    let peers = after[leader_now]
        .keys()
        .filter(|(n, _)| n == "oar_peer_match_index")
        .count();
    assert_eq!(peers, 2, "one series per follower");
    let handshake = (
        "oar_refused_total".to_string(),
        vec![("reason".to_string(), "handshake".to_string())],
    );
    assert!(after[0][&handshake] > before[0][&handshake]);
    for s in &a {
        assert_eq!(total(&[s], "oar_group_role"), 1.0, "one role at a time");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_pages_show_raft_stat_details() {
    let servers = servers(3).await;
    let members = start_group(&servers, GroupId(4), |_| Store::Mem(Default::default()));
    let (leader, _) = members[0].node.wait_for_leader(10 * SECOND).await.unwrap();
    let l = members.iter().position(|m| m.node.id() == leader).unwrap();
    let applied = members[l]
        .node
        .apply(Bytes::from_static(b"set x 1"))
        .await
        .unwrap();
    for m in &members {
        m.node
            .wait_for_applied(applied.index, 10 * SECOND)
            .await
            .unwrap();
    }
    let addr = servers[l].local_addr();
    let page: serde_json::Value = serde_json::from_str(&get(addr, "/groups/4").await).unwrap();
    assert_eq!(page["role"], "leader");
    assert_eq!(page["leader"], leader.0);
    assert_eq!(page["log"]["applied"], applied.index.0);
    assert_eq!(page["pending_proposals"], 0);
    let peers = page["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    for p in peers {
        assert_eq!(p["match_index"], applied.index.0, "{p}");
        assert_eq!(p["next_index"], applied.index.0 + 1, "{p}");
        assert_eq!(p["state"], "replicate");
        assert!(p["inflight_messages"].is_u64());
        assert!(p["last_contact_ms"].as_u64().unwrap() < 5_000, "{p}");
    }
    let all: serde_json::Value = serde_json::from_str(&get(addr, "/status.json").await).unwrap();
    assert_eq!(all["groups"].as_array().unwrap().len(), 1);
    assert_eq!(all["groups"][0]["group"], 4);
    assert!(all["server"]["connections_accepted"].as_u64().unwrap() >= 1);
    // A follower's page names no progress but still its contacts.
    let f = (l + 1) % 3;
    let page: serde_json::Value =
        serde_json::from_str(&get(servers[f].local_addr(), "/groups/4").await).unwrap();
    assert_eq!(page["role"], "follower");
    let contact = page["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == leader.0);
    assert!(contact.unwrap()["last_contact_ms"].is_u64());
    // An unknown group, and a page without the token.
    let missing = https_get(
        addr,
        "GET /groups/99 HTTP/1.1\r\nAuthorization: Bearer operator-secret\r\n\r\n",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.0 404"), "{missing}");
    let refused = https_get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.0 401"), "{refused}");
}
