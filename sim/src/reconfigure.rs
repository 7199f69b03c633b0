//! Membership changes and leadership transfers as nemesis actions: each
//! runs as an admin client against the current leader, like an operator's
//! tool would, and its outcome goes to the trace. Which server and which
//! action are drawn by the nemesis from the seed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oar::core::NodeId;
use oar::runtime::Node;
use serde_json::json;

use crate::cluster::SimCluster;
use crate::trace::Trace;

/// How long an admin request may take before the tool gives up.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The fewest voters a change may leave (two, so that a 3-server cluster
/// still sees removals and re-additions).
const VOTERS_MIN: usize = 2;

/// What the nemesis must know of reconfigurations to keep its faults
/// survivable: a change in flight, and the voter count it last saw.
#[derive(Debug)]
pub struct ReconfigState {
    /// A change is running.
    pub in_flight: bool,
    /// A change was ever attempted.
    pub changed: bool,
    /// Voters after the last change (all servers at start).
    pub voters: usize,
    /// A replacement asks the nemesis to cut these leaving voters off from
    /// everyone else just before its joint change: the one moment where a
    /// joint quorum that counts only one half lets both sides commit.
    pub split_request: Option<Vec<NodeId>>,
    /// The nemesis made the cut.
    pub split_done: bool,
}

/// Shared between the nemesis and the admin tasks.
pub type SharedReconfig = Arc<Mutex<ReconfigState>>;

/// Records that a change is under way (and that the configuration may no
/// longer be the initial one).
fn mark_started(state: &SharedReconfig) {
    let mut state = state.lock().expect("reconfig");
    state.in_flight = true;
    state.changed = true;
}

/// Toggles `target`'s membership through the leader: a voter is removed
/// (while enough remain), a learner promoted, a non-member added back as a
/// voter (learner first, promoted once caught up).
pub fn spawn_membership_change(
    cluster: &SimCluster,
    leader: Node,
    target: usize,
    state: SharedReconfig,
    trace: Trace,
) {
    let target_id = cluster.nodes[target].id;
    let addr = cluster.raft_addr(target);
    mark_started(&state);
    cluster.admin_node().spawn(async move {
        let attempt = tokio::time::timeout(ADMIN_TIMEOUT, async {
            let membership = leader.status().await?.membership;
            if membership.voters.contains(&target_id) {
                if membership.voters.len() <= VOTERS_MIN {
                    return Ok("kept: too few voters");
                }
                leader.remove_peer(target_id).await.map(|_| "removed")
            } else if membership.learners.contains(&target_id) {
                leader.promote_learner(target_id).await.map(|_| "promoted")
            } else {
                leader
                    .add_peer(target_id, addr, ADMIN_TIMEOUT)
                    .await
                    .map(|_| "added")
            }
        })
        .await;
        let attempt = attempt.map(|result| result.map(str::to_string));
        let fields = json!({ "node": target_id.0 });
        finish_change(
            &leader,
            &state,
            &trace,
            "membership_change",
            attempt,
            fields,
        )
        .await;
    });
}

/// Asks the leader to hand leadership to `to`.
pub fn spawn_transfer(cluster: &SimCluster, leader: Node, to: NodeId, trace: Trace) {
    let group = leader.group();
    cluster.admin_node().spawn(async move {
        let attempt = tokio::time::timeout(ADMIN_TIMEOUT, leader.transfer_leadership(to)).await;
        let outcome = match attempt {
            Ok(Ok(())) => "started".to_string(),
            Ok(Err(e)) => format!("refused: {e}"),
            Err(_) => "timed out".to_string(),
        };
        trace.event(
            SimCluster::now_ns(),
            "transfer_leadership",
            json!({ "group": group.0, "to": to.0, "outcome": outcome }),
        );
    });
}

/// Asks `member` to save a snapshot now (and compact its log).
pub fn spawn_snapshot(cluster: &SimCluster, member: Node, trace: Trace) {
    cluster.admin_node().spawn(async move {
        let attempt = tokio::time::timeout(ADMIN_TIMEOUT, member.snapshot()).await;
        let outcome = match attempt {
            Ok(Ok(last)) => format!("saved through {last}"),
            Ok(Err(e)) => format!("failed: {e}"),
            Err(_) => "timed out".to_string(),
        };
        trace.event(
            SimCluster::now_ns(),
            "snapshot",
            json!({ "group": member.group().0, "node": member.id().0, "outcome": outcome }),
        );
    });
}

/// Replaces two voters by two other servers in one joint change,
/// C(old,new) with disjoint majorities — the case where counting only one
/// half is unsafe. The newcomers join as learners first; `picks` are the
/// nemesis' random draws, so the choice follows the seed.
pub fn spawn_replacement(
    cluster: &SimCluster,
    leader: Node,
    picks: [usize; 2],
    split: bool,
    state: SharedReconfig,
    trace: Trace,
) {
    let addrs: Vec<(NodeId, std::net::SocketAddr)> = (0..cluster.nodes.len())
        .map(|i| (cluster.nodes[i].id, cluster.raft_addr(i)))
        .collect();
    mark_started(&state);
    cluster.admin_node().spawn(async move {
        let attempt = tokio::time::timeout(ADMIN_TIMEOUT, async {
            let current = leader.status().await?.membership;
            let outsiders: Vec<_> = addrs
                .iter()
                .filter(|(id, _)| !current.voters.contains(id))
                .collect();
            let voters: Vec<NodeId> = current.voters.iter().copied().collect();
            if outsiders.len() < 2 || voters.len() < 3 {
                return Ok("kept: nobody to swap in".to_string());
            }
            let incoming = [
                outsiders[picks[0] % outsiders.len()],
                outsiders[(picks[0] + 1) % outsiders.len()],
            ];
            let leaving = [
                voters[picks[1] % voters.len()],
                voters[(picks[1] + 1) % voters.len()],
            ];
            for &&(id, addr) in &incoming {
                if !current.learners.contains(&id) {
                    leader.add_learner(id, addr).await?;
                }
            }
            let mut target = current.clone();
            for id in leaving {
                target.voters.remove(&id);
            }
            for &&(id, _) in &incoming {
                target.learners.remove(&id);
                target.voters.insert(id);
            }
            if split {
                request_split(&state, leaving.to_vec()).await;
            }
            loop {
                match leader.change_membership(target.clone()).await {
                    Err(oar::runtime::Error::ConfChange(
                        oar::core::ConfChangeError::LearnerLagging { .. },
                    )) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    result => {
                        return result.map(|_| {
                            format!(
                                "replaced {leaving:?} by {:?}",
                                [incoming[0].0, incoming[1].0]
                            )
                        });
                    }
                }
            }
        })
        .await;
        finish_change(
            &leader,
            &state,
            &trace,
            "replace_voters",
            attempt,
            json!({}),
        )
        .await;
    });
}

/// Asks the nemesis to cut `leaving` off and waits (briefly) until it did;
/// the nemesis acts at its next step.
async fn request_split(state: &SharedReconfig, leaving: Vec<NodeId>) {
    {
        let mut state = state.lock().expect("reconfig");
        state.split_request = Some(leaving);
        state.split_done = false;
    }
    for _ in 0..100 {
        if state.lock().expect("reconfig").split_done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    state.lock().expect("reconfig").split_request = None;
}

/// Records a change's outcome and the voter count it left, whatever the
/// outcome: a joint configuration still in force counts by its smaller half
/// (both halves need a live majority); an unknown one (the leader died)
/// counts as none.
async fn finish_change(
    leader: &Node,
    state: &SharedReconfig,
    trace: &Trace,
    event: &str,
    attempt: Result<Result<String, oar::runtime::Error>, tokio::time::error::Elapsed>,
    mut fields: serde_json::Value,
) {
    let outcome = match attempt {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => format!("refused: {e}"),
        Err(_) => "timed out".to_string(),
    };
    let voters = match leader.status().await {
        Ok(status) if status.membership.is_joint() => status
            .membership
            .voters
            .len()
            .min(status.membership.outgoing_voters.len()),
        Ok(status) => status.membership.voters.len(),
        Err(_) => 0,
    };
    {
        let mut state = state.lock().expect("reconfig");
        state.in_flight = false;
        state.voters = voters;
    }
    fields["outcome"] = json!(outcome);
    trace.event(SimCluster::now_ns(), event, fields);
}
