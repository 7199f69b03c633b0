//! Quiet groups over loopback TCP with TLS (`core::quiesce` with the
//! runtime's server-level liveness, `runtime/liveness.rs`): three servers,
//! six groups led two by each server, all gone quiet; then the server that
//! leads two of them dies (or is cut off), and those two elect among the
//! survivors while the other four stay available.

mod runtime;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use oar::core::{NodeId, RaftOptions, Term};
use oar::runtime::{GroupId, GroupOptions, Node, NodeManager};
use runtime::proxy::swallowing_proxy;
use runtime::*;

const GROUPS: u64 = 6;

/// The test's fast timers, quiet after 300 ms idle.
fn quiet_raft(id: NodeId, group: GroupId) -> RaftOptions {
    RaftOptions {
        quiesce_after: Some(Duration::from_millis(300)),
        ..fast_raft(id, group)
    }
}

/// Starts every group with member `i + 1` on server `i`, which reaches the
/// others at `book(i)`. Returns the members by group, then by server.
fn start_groups(
    servers: &[NodeManager],
    book: impl Fn(usize) -> BTreeMap<NodeId, SocketAddr>,
) -> Vec<Vec<Member>> {
    (1..=GROUPS)
        .map(|g| {
            let group = GroupId(g);
            (0..servers.len())
                .map(|i| {
                    let id = NodeId(i as u64 + 1);
                    let mut options = GroupOptions::new(group, id, book(i));
                    options.raft = quiet_raft(id, group);
                    start_member_with_options(&servers[i], options, Store::Mem(Default::default()))
                })
                .collect()
        })
        .collect()
}

fn nodes(members: &[Member]) -> Vec<&Node> {
    members.iter().map(|m| &m.node).collect()
}

/// The member that should lead group number `g` (0-based): two groups per
/// server.
fn intended_leader(g: usize) -> NodeId {
    NodeId(g as u64 % 3 + 1)
}

/// Moves each group's leadership to its intended leader and commits one
/// command in each.
async fn spread_leaders_and_write(groups: &[Vec<Member>]) {
    for (g, members) in groups.iter().enumerate() {
        let nodes = nodes(members);
        let target = intended_leader(g);
        let mut led = false;
        for _ in 0..200 {
            let leader = wait_for_leader(&nodes).await;
            if nodes[leader].id() == target {
                led = true;
                break;
            }
            let _ = nodes[leader].transfer_leadership(target).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(led, "group {g}: leadership never reached {target}");
        apply_anywhere(&nodes, Bytes::from(format!("set g{g} before"))).await;
    }
}

/// Every member's (term, quiet).
async fn states(groups: &[Vec<Member>]) -> Vec<(Term, bool)> {
    let mut out = Vec::new();
    for member in groups.iter().flatten() {
        let status = member.node.status().await.expect("running");
        out.push((status.hard_state.term, status.quiet));
    }
    out
}

/// Waits (10 s at most) until every member of every group is quiet, then
/// checks that they stay so, in the same term, for a second: more than
/// three election timeouts, so no timer and no heartbeat ran.
async fn wait_quiet_and_steady(groups: &[Vec<Member>]) {
    let mut quiet = false;
    for _ in 0..200 {
        if states(groups).await.iter().all(|&(_, q)| q) {
            quiet = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        quiet,
        "not every member went quiet: {:?}",
        states(groups).await
    );
    let before = states(groups).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        states(groups).await,
        before,
        "a quiet member woke or moved on"
    );
}

/// Three servers, every one reaching the others directly, running the
/// groups with leaders spread and one write each, all gone quiet.
async fn quiet_cluster() -> (Vec<NodeManager>, Vec<Vec<Member>>) {
    let servers = servers(3).await;
    let peers = peers_of(&servers);
    let groups = start_groups(&servers, |_| peers.clone());
    spread_leaders_and_write(&groups).await;
    wait_quiet_and_steady(&groups).await;
    (servers, groups)
}
/// After server 0 is gone: every group commits among members 2 and 3, and
/// those led by member 1 got a new leader there.
async fn survivors_serve_every_group(groups: &[Vec<Member>]) {
    for (g, members) in groups.iter().enumerate() {
        let survivors = nodes(&members[1..]);
        // Waits (10 s at most, twice) for a leader among the survivors
        // that both agree on: member 1's groups must have elected one.
        let leader = match tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if survivors.iter().all(|n| n.leader() != Some(NodeId(1))) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
        .await
        {
            Ok(()) => wait_for_leader(&survivors).await,
            Err(_) => panic!("group {g}: the survivors still follow member 1 after 10 s"),
        };
        if intended_leader(g) != NodeId(1) {
            assert_eq!(
                survivors[leader].id(),
                intended_leader(g),
                "group {g}: a group led elsewhere changed leader"
            );
        }
        apply_anywhere(&survivors, Bytes::from(format!("set g{g} after"))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_groups_elect_among_survivors_when_their_leaders_server_dies() {
    let (servers, groups) = quiet_cluster().await;

    servers[0].shutdown().await;
    survivors_serve_every_group(&groups).await;
    for server in &servers[1..] {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_groups_elect_among_survivors_when_their_leaders_server_is_cut_off() {
    let servers = servers(3).await;
    let direct = peers_of(&servers);
    let swallow = Arc::new(AtomicBool::new(false));
    // Every path to and from server 0 runs through a proxy that can
    // swallow it silently; the others are direct.
    let mut books = Vec::new();
    for i in 0..servers.len() {
        let mut book = direct.clone();
        for (&id, &addr) in &direct {
            let j = id.0 as usize - 1;
            if j != i && (i == 0 || j == 0) {
                book.insert(id, swallowing_proxy(addr, swallow.clone()).await);
            }
        }
        books.push(book);
    }
    let groups = start_groups(&servers, |i| books[i].clone());
    spread_leaders_and_write(&groups).await;
    wait_quiet_and_steady(&groups).await;

    swallow.store(true, Ordering::SeqCst);
    survivors_serve_every_group(&groups).await;

    // Healed: server 0 catches up on everything committed without it.
    swallow.store(false, Ordering::SeqCst);
    let records: Vec<_> = groups.iter().flatten().map(|m| m.record.clone()).collect();
    wait_applied(&records, 2).await;
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_at_a_dead_servers_address_does_not_keep_its_groups_quiet() {
    let (servers, groups) = quiet_cluster().await;

    // Server 0 dies and a server of another cluster (its own CA) takes
    // its address: it would answer probes, but it cannot authenticate as
    // server 0, so it counts as silence.
    let addr = servers[0].local_addr();
    servers[0].shutdown().await;
    let stranger = NodeManager::bind(
        addr,
        pki::Pki::new().security(addr.ip()),
        Default::default(),
    )
    .await
    .expect("the dead server's port is free");
    survivors_serve_every_group(&groups).await;
    stranger.shutdown().await;
    for server in &servers[1..] {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_on_a_live_server_wakes_its_quiet_groups() {
    let (servers, groups) = quiet_cluster().await;

    let lost = |server: &NodeManager| server.stats().peer_servers_lost.load(Ordering::Relaxed);
    assert!(
        servers.iter().all(|s| lost(s) == 0),
        "a quiet healthy cluster loses no peer"
    );

    // Server 0 lives on (it answers every probe), but its members leave:
    // its probes' answers count them, and its peers wake those groups.
    for members in &groups {
        servers[0]
            .remove_group(members[0].node.group())
            .await
            .unwrap();
    }
    survivors_serve_every_group(&groups).await;
    for server in &servers[1..] {
        assert!(lost(server) >= 1, "the peers counted server 0 as lost");
    }
    for server in &servers {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_within_the_silence_bound_wakes_its_quiet_groups() {
    let (servers, groups) = quiet_cluster().await;

    // Server 0 comes back at once (no silence to speak of) without its
    // members, as a server whose storage was refused: its new incarnation
    // tells its peers.
    let addr = servers[0].local_addr();
    servers[0].shutdown().await;
    let restarted = server_at(addr, Default::default()).await;
    survivors_serve_every_group(&groups).await;
    restarted.shutdown().await;
    for server in &servers[1..] {
        server.shutdown().await;
    }
}
