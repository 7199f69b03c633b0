//! Every `oarctl` verb against a live loopback cluster (mutual TLS and the
//! operator token, as in production): the built binary is run, its
//! `--output json` parsed back, its exit codes checked.

#[path = "../../tests/runtime/mod.rs"]
mod runtime;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use oar::core::NodeId;
use oar::runtime::{GroupId, MemStorage, Node, NodeManager};
use runtime::pki::{self, CLUSTER, OPERATOR_TOKEN};
use runtime::*;
use serde_json::Value;

/// A running cluster and the files oarctl needs to talk to it.
struct Cluster {
    servers: Vec<NodeManager>,
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

/// What one oarctl run gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The single JSON object printed.
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {self:?}"))
    }

    /// Each line as a JSON object (`watch`).
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

impl Cluster {
    /// `n` servers, `voters` of them in group 1's first configuration (the
    /// others start as bystanders: members to be added).
    async fn start(n: usize, voters: usize) -> Cluster {
        let servers = servers(n).await;
        let peers = peers_of(&servers);
        let first: BTreeSet<NodeId> = (1..=voters as u64).map(NodeId).collect();
        let members = (0..n)
            .map(|i| {
                start_member_with(
                    &servers[i],
                    GroupId(1),
                    NodeId(i as u64 + 1),
                    peers.clone(),
                    Store::Mem(MemStorage::new()),
                    Some(first.clone()),
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        pki::shared().write_server_files(dir.path(), "127.0.0.1".parse().unwrap());
        std::fs::write(dir.path().join("operator.token"), OPERATOR_TOKEN).unwrap();
        std::fs::write(dir.path().join("wrong.token"), "not-the-token").unwrap();
        let other = tempfile::tempdir().unwrap();
        let [other_ca, ..] =
            pki::Pki::new().write_server_files(other.path(), "127.0.0.1".parse().unwrap());
        std::fs::copy(other_ca, dir.path().join("other-ca.pem")).unwrap();
        let cluster = Cluster {
            servers,
            members,
            dir,
        };
        wait_for_leader(&cluster.nodes()[..voters]).await;
        cluster
    }

    fn nodes(&self) -> Vec<&Node> {
        self.members.iter().map(|m| &m.node).collect()
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.servers[i].local_addr()
    }

    /// The position of the member all of `first` agree leads.
    async fn leader(&self, first: usize) -> usize {
        wait_for_leader(&self.nodes()[..first]).await
    }

    /// Runs oarctl at server `at` with the operator's credentials.
    async fn oarctl(&self, at: usize, args: &[&str]) -> Run {
        self.oarctl_with(at, "operator.token", 10, args).await
    }

    /// Runs oarctl at server `at` with this token file and `--timeout`.
    async fn oarctl_with(&self, at: usize, token: &str, timeout: u64, args: &[&str]) -> Run {
        self.oarctl_files(at, "ca.pem", token, timeout, args).await
    }

    /// Runs oarctl at server `at` with this CA file, token file and `--timeout`.
    async fn oarctl_files(
        &self,
        at: usize,
        ca: &str,
        token: &str,
        timeout: u64,
        args: &[&str],
    ) -> Run {
        let server = self.addr(at).to_string();
        self.oarctl_at(&server, ca, token, timeout, args).await
    }

    /// Runs oarctl with this `--server` list, CA file, token file and `--timeout`.
    async fn oarctl_at(
        &self,
        server: &str,
        ca: &str,
        token: &str,
        timeout: u64,
        args: &[&str],
    ) -> Run {
        let dir: PathBuf = self.dir.path().into();
        let mut all: Vec<String> = vec![
            "--server".into(),
            server.into(),
            "--ca".into(),
            dir.join(ca).display().to_string(),
            "--token-file".into(),
            dir.join(token).display().to_string(),
            "--cluster-id".into(),
            CLUSTER.into(),
            "--timeout".into(),
            timeout.to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        run_oarctl(all).await
    }

    async fn write(&self, voters: usize, count: usize) {
        for i in 0..count {
            apply_anywhere(&self.nodes()[..voters], Bytes::from(format!("set k{i} v"))).await;
        }
    }
}

async fn run_oarctl(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_oarctl"))
            .args(&args)
            .env_remove("OARCTL_CA")
            .env_remove("OARCTL_TOKEN_FILE")
            .env_remove("OARCTL_CLUSTER_ID")
            .output()
            .expect("oarctl runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// Waits until every member of `nodes` names `leader`.
async fn wait_led_by(nodes: &[&Node], leader: NodeId) {
    wait_until(|| nodes.iter().all(|n| n.leader() == Some(leader))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_leader_list_groups_snapshot_and_watch() {
    let cluster = Cluster::start(3, 3).await;
    cluster.write(3, 10).await;
    let leader = cluster.leader(3).await;
    let follower = (leader + 1) % 3;

    // status: the member asked, as text and as the /groups/{id} object.
    let text = cluster.oarctl(follower, &["status"]).await.ok();
    assert!(text.stdout.contains("role Follower"), "{text:?}");
    let s = cluster
        .oarctl(follower, &["--output", "json", "status"])
        .await
        .ok()
        .json();
    assert_eq!(s["group"], 1);
    assert_eq!(s["id"], follower as u64 + 1);
    assert_eq!(s["role"], "follower");
    assert_eq!(ids(&s["membership"]["voters"]), vec![1, 2, 3]);
    let s = cluster
        .oarctl(follower, &["--output", "json", "--leader", "status"])
        .await
        .ok()
        .json();
    assert_eq!(s["role"], "leader");
    assert_eq!(s["peers"].as_array().unwrap().len(), 2, "{s}");

    // leader (and its old name), from a follower's address.
    for verb in ["leader", "get-leader"] {
        let l = cluster
            .oarctl(follower, &["--output", "json", verb])
            .await
            .ok()
            .json();
        assert_eq!(l["group"], 1);
        assert_eq!(l["leader"], leader as u64 + 1, "{l}");
        assert_eq!(l["leader_addr"], cluster.addr(leader).to_string());
        assert!(l["term"].as_u64().unwrap() >= 1);
    }
    let text = cluster.oarctl(follower, &["leader"]).await.ok();
    assert!(
        text.stdout.contains(&format!(
            "leader n{} at {}",
            leader + 1,
            cluster.addr(leader)
        )),
        "{text:?}"
    );

    // list-groups: every group on the server asked.
    let g2 = start_member(
        &cluster.servers[follower],
        GroupId(2),
        NodeId(1),
        [(NodeId(1), cluster.addr(follower))].into(),
        Store::Mem(MemStorage::new()),
    );
    let l = cluster
        .oarctl(follower, &["--output", "json", "list-groups"])
        .await
        .ok()
        .json();
    let groups = l["groups"].as_array().unwrap();
    let listed: Vec<u64> = groups
        .iter()
        .map(|g| g["group"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![1, 2], "{l}");
    assert_eq!(groups[0]["role"], "follower");
    assert_eq!(groups[0]["leader"], leader as u64 + 1);
    g2.node.shutdown().await;

    // snapshot: saved through the applied entries.
    let snap = cluster
        .oarctl(follower, &["--output", "json", "--leader", "snapshot"])
        .await
        .ok()
        .json();
    assert_eq!(snap["id"], leader as u64 + 1);
    assert!(snap["snapshot"]["index"].as_u64().unwrap() >= 10, "{snap}");
    let s = cluster
        .oarctl(leader, &["--output", "json", "status"])
        .await
        .ok()
        .json();
    assert_eq!(s["log"]["snapshot"], snap["snapshot"]);

    // watch: the first line is the status as is, then each change (here:
    // writes applied), bounded by --count.
    let writer = {
        let nodes: Vec<Node> = cluster.nodes().into_iter().cloned().collect();
        tokio::spawn(async move {
            let refs: Vec<&Node> = nodes.iter().collect();
            for i in 0..200 {
                apply_anywhere(&refs, Bytes::from(format!("set w{i} v"))).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let args = [
        "--output",
        "json",
        "watch",
        "--count",
        "3",
        "--interval",
        "20",
        "--timeout",
        "20",
    ];
    let lines = cluster.oarctl(follower, &args).await.ok().json_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for pair in lines.windows(2) {
        assert_ne!(pair[0], pair[1], "a line per change");
        assert!(pair[1]["applied"].as_u64() >= pair[0]["applied"].as_u64());
    }
    assert_eq!(lines[0]["role"], "follower");
    writer.await.unwrap();
    // A quiet group: the first line, then nothing until --timeout.
    let run = cluster
        .oarctl(follower, &["watch", "--count", "5", "--timeout", "1"])
        .await;
    assert_eq!(run.code, 6, "timeout before --count: {run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    assert!(run.stdout.contains("follower"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_verbs_and_leadership_transfer_from_any_server() {
    // n4 runs but is not a member yet.
    let cluster = Cluster::start(4, 3).await;
    cluster.write(3, 5).await;
    let leader = cluster.leader(3).await;
    let follower = (leader + 1) % 3;
    let n4 = cluster.addr(3).to_string();
    let json = |run: Run| run.ok().json();

    let r = json(
        cluster
            .oarctl(
                follower,
                &[
                    "--output",
                    "json",
                    "add-learner",
                    "--id",
                    "4",
                    "--addr",
                    &n4,
                ],
            )
            .await,
    );
    assert_eq!(r["verb"], "add_learner");
    assert_eq!(r["id"], 4);
    assert_eq!(ids(&r["membership"]["learners"]), vec![4]);
    assert!(r["committed_at"]["index"].as_u64().unwrap() > 5, "{r}");

    // Promotion waits for the learner to catch up; retry while it lags.
    let mut promoted = None;
    for _ in 0..100 {
        let run = cluster
            .oarctl(
                follower,
                &["--output", "json", "promote-learner", "--id", "4"],
            )
            .await;
        if run.code == 0 {
            promoted = Some(run.json());
            break;
        }
        assert_eq!(
            run.code, 1,
            "a lagging learner is refused, not more: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = promoted.expect("learner promoted");
    assert_eq!(r["verb"], "promote_learner");
    assert_eq!(ids(&r["membership"]["voters"]), vec![1, 2, 3, 4]);
    assert_eq!(ids(&r["membership"]["learners"]), Vec::<u64>::new());

    let r = json(
        cluster
            .oarctl(follower, &["--output", "json", "remove-peer", "--id", "4"])
            .await,
    );
    assert_eq!(ids(&r["membership"]["voters"]), vec![1, 2, 3]);

    let r = json(
        cluster
            .oarctl(
                follower,
                &[
                    "--output",
                    "json",
                    "add-peer",
                    "--id",
                    "4",
                    "--addr",
                    &n4,
                    "--catch-up",
                    "10",
                ],
            )
            .await,
    );
    assert_eq!(r["verb"], "add_peer");
    assert_eq!(ids(&r["membership"]["voters"]), vec![1, 2, 3, 4]);

    // change-peers: n4 out (through a joint configuration), then back as
    // a learner named with its address.
    let text = cluster
        .oarctl(follower, &["change-peers", "--voters", "1,2,3"])
        .await
        .ok();
    assert!(
        text.stdout.contains("voters n1,n2,n3 learners -"),
        "{text:?}"
    );
    let learner = format!("4={n4}");
    let args = [
        "--output",
        "json",
        "change-peers",
        "--voters",
        "1,2,3",
        "--learners",
        &learner,
    ];
    let r = json(cluster.oarctl(follower, &args).await);
    assert_eq!(r["verb"], "change_peers");
    assert_eq!(r["id"], Value::Null);
    assert_eq!(ids(&r["membership"]["voters"]), vec![1, 2, 3]);
    assert_eq!(ids(&r["membership"]["learners"]), vec![4]);
    assert_eq!(r["membership"]["joint"], false);

    // transfer-leader to a named voter, asked at a server that does not lead.
    let nodes = cluster.nodes();
    let leader = cluster.leader(3).await;
    let to = (leader + 1) % 3;
    let r = json(
        cluster
            .oarctl(
                (leader + 2) % 3,
                &[
                    "--output",
                    "json",
                    "transfer-leader",
                    "--to",
                    &(to + 1).to_string(),
                ],
            )
            .await,
    );
    assert_eq!(
        (r["from"].clone(), r["to"].clone()),
        ((leader + 1).into(), (to + 1).into())
    );
    wait_led_by(&nodes[..3], NodeId(to as u64 + 1)).await;

    // transfer-leader --any: the leader picks another voter.
    let leader = to;
    let r = json(
        cluster
            .oarctl(leader, &["--output", "json", "transfer-leader", "--any"])
            .await,
    );
    assert_eq!(r["from"], leader as u64 + 1);
    let picked = r["to"].as_u64().unwrap();
    assert!(
        picked != leader as u64 + 1 && (1..=3).contains(&picked),
        "{r}"
    );
    wait_led_by(&nodes[..3], NodeId(picked)).await;

    // --any picks the most caught-up voter: not a stopped one that lags
    // (the lower id, which a tie would favour).
    let leader = picked as usize - 1;
    let mut followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    followers.sort();
    let (lagging, current) = (followers[0], followers[1]);
    cluster.members[lagging].node.shutdown().await;
    for i in 0..20 {
        nodes[leader]
            .apply(Bytes::from(format!("set lag{i} v")))
            .await
            .unwrap();
    }
    let r = json(
        cluster
            .oarctl(leader, &["--output", "json", "transfer-leader", "--any"])
            .await,
    );
    assert_eq!(r["to"], current as u64 + 1, "{r}");
    let live = [nodes[leader], nodes[current]];
    wait_led_by(&live, NodeId(current as u64 + 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_error_class_has_its_exit_code() {
    let cluster = Cluster::start(3, 3).await;
    let leader = cluster.leader(3).await;

    // A wrong token: refused by the server, exit 5.
    let run = cluster
        .oarctl_with(leader, "wrong.token", 10, &["--output", "json", "status"])
        .await;
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(run.json()["error"]["class"], "credentials_refused");

    // A server certificate another CA signed: refused by us, exit 5.
    let run = cluster
        .oarctl_files(leader, "other-ca.pem", "operator.token", 10, &["status"])
        .await;
    assert_eq!(run.code, 5, "{run:?}");

    // No such group: exit 4.
    let run = cluster.oarctl(leader, &["--group", "77", "status"]).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("not found"), "{run:?}");

    // An invalid request: removing a non-member, exit 2 (as clap's usage
    // errors, e.g. transfer-leader without a target).
    let run = cluster
        .oarctl(leader, &["--output", "json", "remove-peer", "--id", "9"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.json()["error"]["class"], "invalid_argument");
    assert_eq!(cluster.oarctl(leader, &["transfer-leader"]).await.code, 2);

    // reset-peers without --force: refused before anything is sent.
    let run = cluster
        .oarctl(leader, &["reset-peers", "--voters", "1"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--force"), "{run:?}");
    let help = cluster
        .oarctl(leader, &["reset-peers", "--help"])
        .await
        .ok();
    assert!(help.stdout.contains("UNSAFE"), "{help:?}");
    let s = cluster
        .oarctl(leader, &["--output", "json", "status"])
        .await
        .ok()
        .json();
    assert_eq!(ids(&s["membership"]["voters"]), vec![1, 2, 3], "unchanged");

    // Lose the quorum: a follower left alone has no leader (exit 3 with a
    // short timeout), until reset-peers --force makes it the only voter.
    let survivor = (leader + 1) % 3;
    let me = survivor as u64 + 1;
    for (i, m) in cluster.members.iter().enumerate() {
        if i != survivor {
            m.node.shutdown().await;
        }
    }
    wait_until(|| cluster.members[survivor].node.leader().is_none()).await;
    let run = cluster
        .oarctl_with(
            survivor,
            "operator.token",
            2,
            &["--output", "json", "leader"],
        )
        .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.json()["error"]["class"], "not_leader");
    let voters = me.to_string();
    let args = [
        "--output",
        "json",
        "reset-peers",
        "--voters",
        &voters,
        "--force",
    ];
    let r = cluster.oarctl(survivor, &args).await.ok().json();
    assert_eq!(
        ids(&r["members"][0]["membership"]["voters"]),
        vec![me],
        "{r}"
    );
    let l = cluster
        .oarctl(survivor, &["--output", "json", "leader"])
        .await
        .ok()
        .json();
    assert_eq!(l["leader"], me);

    // An unreachable server: exit 7.
    cluster.servers[leader].shutdown().await;
    let run = cluster
        .oarctl_with(leader, "operator.token", 1, &["status"])
        .await;
    assert_eq!(run.code, 7, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_is_found_among_admin_addresses() {
    // Operators moved to admin addresses: a redirect names the leader's
    // Raft address, which refuses operators, so oarctl goes on with the
    // admin addresses it was given.
    let cluster = Cluster::start(3, 3).await;
    let leader = cluster.leader(3).await;
    let mut admin = Vec::new();
    for server in &cluster.servers {
        admin.push(
            server
                .serve_admin("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
        );
    }
    // Followers first, so that the leader is found by redirect and retry.
    let order = [(leader + 1) % 3, (leader + 2) % 3, leader];
    let list: Vec<String> = order.iter().map(|&i| admin[i].to_string()).collect();
    let list = list.join(",");
    let run = |args: &'static [&'static str]| {
        cluster.oarctl_at(&list, "ca.pem", "operator.token", 10, args)
    };
    let l = run(&["--output", "json", "leader"]).await.ok().json();
    assert_eq!(l["leader"], leader as u64 + 1, "{l}");
    assert_eq!(l["leader_addr"], admin[leader].to_string());
    let r = run(&["--output", "json", "transfer-leader", "--any"])
        .await
        .ok()
        .json();
    assert_eq!(r["from"], leader as u64 + 1, "{r}");
    wait_led_by(&cluster.nodes(), NodeId(r["to"].as_u64().unwrap())).await;
}
