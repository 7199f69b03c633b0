//! Liveness as bounds, not one bit. After every heal a write must commit
//! within a bound derived from the election timeout (and from what finding
//! a swallowed connection takes); over the fault-free tail of a run
//! leadership must stay put; and in the end every member converges.

use std::time::Duration;

use bytes::Bytes;
use oar::core::{NodeId, RaftOptions, Role};
use oar::runtime::{Node, TransportOptions};
use tokio::time::Instant;

use crate::cluster::SimCluster;
use crate::kv_machine::KvCommand;

/// Slack on top of the recovery bound's parts: restarts recovering their
/// disks, slow fsyncs, a pre-vote round before the vote.
const RECOVERY_SLACK: Duration = Duration::from_millis(500);

/// A reconnect after the heal: a handshake hung in the blackhole is given
/// up after the transport's connect timeout (500 ms), then the backoff
/// waits at most its cap (100 ms, which issue 20 asks to stay small).
/// Constants, not read from the options: a regression in either must fail
/// the bound, not widen it.
const RECONNECT: Duration = Duration::from_millis(600);

/// How long a write attempt at one member may take before it is retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);

/// Most elections the fault-free tail may see once the cluster converged
/// (none in 1,000 seeds of 3 nodes and 300 of 5; one is allowed for a
/// server that rejoins late).
pub const TAIL_ELECTIONS_MAX: u64 = 1;

/// How long a healed cluster may go without progress: two election
/// timeouts (a rejoining server without pre-vote may depose the first
/// leader), plus finding a connection a blackhole swallowed (a probe sent
/// up to a quarter timeout late, unanswered for the probe timeout), plus a
/// reconnect, plus slack.
pub fn recovery_bound(raft: &RaftOptions, transport: &TransportOptions) -> Duration {
    let elections = raft.election_timeout_max * 2;
    let detection = transport.probe_timeout + transport.probe_timeout / 4;
    elections + detection + RECONNECT + RECOVERY_SLACK
}

/// How a healed cluster recovered.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    /// Time from the heal to the first commit.
    pub committed: Duration,
    /// The longest stretch without progress before it (see [`recover`]):
    /// what the bound holds.
    pub stall: Duration,
    /// The member that committed it.
    pub leader: NodeId,
}

fn probe_command() -> Bytes {
    KvCommand::Put {
        key: "liveness".into(),
        value: "probe".into(),
    }
    .encode()
}

/// What only a working leader moves: the followers' durable log ends (a
/// catch-up) and the highest commit index. A leader cut off from everyone
/// still appends, and terms rise in a livelock of elections: neither
/// counts.
async fn progress(cluster: &SimCluster, g: usize) -> (u64, u64) {
    let (mut followers, mut committed) = (0, 0);
    for i in 0..cluster.nodes.len() {
        if let Some(member) = cluster.member_in(g, i)
            && let Ok(status) = member.status().await
        {
            if status.role != Role::Leader {
                followers += status.persisted.0;
            }
            committed = committed.max(status.committed.0);
        }
    }
    (followers, committed)
}

/// After a heal at `since`: tries a write in group `g` (by index) at every
/// running member at once,
/// again every 20 ms, until one commits. A lagging quorum may need long to
/// catch up, so the bound holds the stalls, not the total: the cluster
/// fails once `bound` passes without progress (see [`progress`]), or
/// `deadline` passes in all.
///
/// # Errors
/// No write committed in time: how long nothing moved, and each member's
/// state.
pub async fn recover(
    cluster: &SimCluster,
    g: usize,
    since: Instant,
    bound: Duration,
    deadline: Duration,
) -> Result<Recovery, String> {
    let probe = probe_command();
    let (mut last, mut moved, mut stall) = (progress(cluster, g).await, since, Duration::ZERO);
    loop {
        let members: Vec<Node> = (0..cluster.nodes.len())
            .filter_map(|i| cluster.member_in(g, i))
            .collect();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for member in &members {
            let (member, probe, tx) = (member.clone(), probe.clone(), tx.clone());
            tokio::spawn(async move {
                let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, member.apply(probe)).await;
                let _ = tx.send(matches!(attempt, Ok(Ok(_))).then(|| member.id()));
            });
        }
        drop(tx);
        while let Some(outcome) = rx.recv().await {
            if let Some(leader) = outcome {
                let now = Instant::now();
                return Ok(Recovery {
                    committed: now - since,
                    stall: stall.max(now - moved),
                    leader,
                });
            }
        }
        let now = Instant::now();
        let current = progress(cluster, g).await;
        if current != last {
            stall = stall.max(now - moved);
            (last, moved) = (current, now);
        }
        if now >= moved + bound || now >= since + deadline {
            let waited = now - moved;
            return Err(format!(
                "no write committed after the heal: nothing moved for {:.2}s (bound {:.2}s; {:.2}s since the heal); nodes: {}",
                waited.as_secs_f64(),
                bound.as_secs_f64(),
                (now - since).as_secs_f64(),
                roles(cluster, g).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every running member's id, role and term in group `g` (by index), for
/// messages.
pub async fn roles(cluster: &SimCluster, g: usize) -> String {
    let mut roles = Vec::new();
    for i in 0..cluster.nodes.len() {
        if let Some(member) = cluster.member_in(g, i)
            && let Ok(s) = member.status().await
        {
            let voters: Vec<u64> = s.membership.voters.iter().map(|v| v.0).collect();
            roles.push(format!(
                "{}:{:?}@{}{} (vote {:?}, log {}, commit {}, voters {voters:?}, leader {:?})",
                s.id,
                s.role,
                s.hard_state.term,
                if s.quiet { " quiet" } else { "" },
                s.hard_state.voted_for.map(|v| v.0),
                s.last_log_id,
                s.committed.0,
                s.leader.map(|l| l.0),
            ));
        }
    }
    roles.join(" ")
}

/// Leadership over a fault-free stretch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Churn {
    /// Terms entered (elections started, split votes included): the
    /// highest term at the end less the highest at the start.
    pub elections: u64,
    /// Terms that got a leader.
    pub leaders: usize,
}

/// The highest term among the voters of the newest leader's
/// configuration (both halves of a joint one). A server removed while it
/// was away keeps the old configuration and campaigns on its own, refused
/// by every member: that is not churn of the cluster.
async fn highest_term(cluster: &SimCluster, g: usize) -> u64 {
    let mut statuses = Vec::new();
    for i in 0..cluster.nodes.len() {
        if let Some(member) = cluster.member_in(g, i)
            && let Ok(status) = member.status().await
        {
            statuses.push(status);
        }
    }
    let leading = statuses
        .iter()
        .filter(|s| s.role == Role::Leader)
        .max_by_key(|s| s.hard_state.term);
    let counts = |id: NodeId| match leading {
        Some(leader) => {
            let membership = &leader.membership;
            membership.voters.contains(&id) || membership.outgoing_voters.contains(&id)
        }
        None => true,
    };
    statuses
        .iter()
        .filter(|s| counts(s.id))
        .map(|s| s.hard_state.term.0)
        .max()
        .unwrap_or(0)
}

/// Runs `length` of fault-free time with a write to group `g` (by index)
/// every 100 ms and counts the elections and leaders it saw.
pub async fn fault_free_tail(cluster: &SimCluster, g: usize, length: Duration) -> Churn {
    let observations = &cluster.groups[g].observations;
    let leaders_before = observations.lock().expect("observations").leader_terms();
    let term_before = highest_term(cluster, g).await;
    let end = Instant::now() + length;
    let probe = probe_command();
    let mut at = 0;
    while Instant::now() < end {
        // The last member that took a write first; the others in turn.
        for k in 0..cluster.nodes.len() {
            let i = (at + k) % cluster.nodes.len();
            let Some(member) = cluster.member_in(g, i) else {
                continue;
            };
            let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, member.apply(probe.clone())).await;
            if matches!(attempt, Ok(Ok(_))) {
                at = i;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leaders_after = observations.lock().expect("observations").leader_terms();
    Churn {
        elections: highest_term(cluster, g).await.saturating_sub(term_before),
        leaders: leaders_after - leaders_before,
    }
}

/// Every member of group `g`'s (by index) leader's configuration (servers
/// removed by a membership change no longer follow) has applied and
/// persisted up to the same commit index by `end`. Returns the leader.
///
/// # Errors
/// They did not: each member's commit, apply and persist indexes.
pub async fn converge(cluster: &SimCluster, g: usize, end: Instant) -> Result<NodeId, String> {
    loop {
        let mut statuses = Vec::new();
        for i in 0..cluster.nodes.len() {
            if let Some(member) = cluster.member_in(g, i)
                && let Ok(status) = member.status().await
            {
                statuses.push(status);
            }
        }
        let leading = statuses
            .iter()
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.hard_state.term);
        let converged = leading.filter(|leading| {
            leading.membership.members().iter().all(|id| {
                let index = (id.0 as usize).saturating_sub(1);
                cluster.unrecoverable_in(g, index)
                    || statuses.iter().any(|s| {
                        s.id == *id
                            && s.committed == leading.committed
                            && s.applied == s.committed
                            && s.persisted >= s.committed
                    })
            })
        });
        if let Some(leading) = converged {
            return Ok(leading.id);
        }
        if Instant::now() >= end {
            let states: Vec<_> = statuses
                .iter()
                .map(|s| (s.id, s.committed, s.applied, s.persisted))
                .collect();
            return Err(format!(
                "servers did not converge after healing: {states:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `message` about group `g` (by index) of `groups`, naming the group when
/// there are several.
pub fn in_group(groups: usize, g: usize, message: String) -> String {
    match groups {
        0 | 1 => message,
        _ => format!("group {}: {message}", crate::groups::group_id(g).0),
    }
}

/// [`recover`] in every group at once, from the same heal: the recovery
/// with the longest stall, or the first group (in order) that failed.
///
/// # Errors
/// A group did not commit a write in time: which, and why.
pub async fn recover_all(
    cluster: &SimCluster,
    since: Instant,
    bound: Duration,
    deadline: Duration,
) -> Result<Recovery, String> {
    let groups = cluster.groups.len();
    let attempts = (0..groups).map(|g| recover(cluster, g, since, bound, deadline));
    let mut worst: Option<Recovery> = None;
    for (g, result) in crate::groups::join_all(attempts)
        .await
        .into_iter()
        .enumerate()
    {
        let recovery = result.map_err(|e| in_group(groups, g, e))?;
        if worst.is_none_or(|w| recovery.stall > w.stall) {
            worst = Some(recovery);
        }
    }
    worst.ok_or_else(|| "no group to recover".into())
}

/// [`converge`] in every group at once: each group's leader.
///
/// # Errors
/// A group did not converge by `end`: which, and its members' indexes.
pub async fn converge_all(cluster: &SimCluster, end: Instant) -> Result<Vec<NodeId>, String> {
    let groups = cluster.groups.len();
    let waits = (0..groups).map(|g| converge(cluster, g, end));
    crate::groups::join_all(waits)
        .await
        .into_iter()
        .enumerate()
        .map(|(g, result)| result.map_err(|e| in_group(groups, g, e)))
        .collect()
}

/// [`fault_free_tail`] in every group at once: each group's churn.
pub async fn fault_free_tails(cluster: &SimCluster, length: Duration) -> Vec<Churn> {
    let tails = (0..cluster.groups.len()).map(|g| fault_free_tail(cluster, g, length));
    crate::groups::join_all(tails).await
}
