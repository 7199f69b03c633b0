//! Targeted tactics for membership states that random faults rarely reach
//! or never hold: learners that linger while voters are cut off, a leader
//! struck while it holds an uncommitted configuration, a server that
//! campaigns (or restarts) right after installing a snapshot that carried a
//! membership change it missed, a leader that loses power the moment it
//! won. Each waits on the cluster's state (polling
//! the leader's status every millisecond) and strikes at the moment the
//! window is open.

use std::time::Duration;

use oar::core::{NodeId, Role, Status};
use oar::runtime::Node;
use rand::RngExt;
use serde_json::json;
use tokio::time::{Instant, sleep, timeout};

use crate::cluster::SimCluster;
use crate::fault_mix::FaultKind;
use crate::final_checks::check_configurations_agree;
use crate::nemesis::Nemesis;
use crate::reconfigure::spawn_membership_change;

/// How long a tactic's admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a tactic looks at the cluster while it waits for its window.
const POLL: Duration = Duration::from_millis(1);
/// How often it looks while it waits for an install to finish.
const INSTALL_POLL: Duration = Duration::from_micros(50);

/// The leader's position, handle and status, if some server leads.
pub(crate) async fn leader(cluster: &SimCluster) -> Option<(usize, Node, Status)> {
    let i = cluster.leader_index()?;
    let member = cluster.member(i)?;
    let status = member.status().await.ok()?;
    (status.role == Role::Leader).then_some((i, member, status))
}

fn position(cluster: &SimCluster, id: NodeId) -> Option<usize> {
    cluster.nodes.iter().position(|n| n.id == id)
}

impl Nemesis {
    /// Runs one tactic; whether it hit its window (a learner left
    /// lingering, a leader struck, an install followed up).
    pub(crate) async fn tactic(&mut self, kind: FaultKind, cluster: &mut SimCluster) -> bool {
        if !self.change_allowed(cluster) {
            return false;
        }
        match kind {
            FaultKind::LingeringLearner => self.linger(cluster).await,
            FaultKind::ConfigWindow => self.config_window(cluster).await,
            FaultKind::InstallCampaign => self.after_install(cluster, false).await,
            FaultKind::InstallRestart => self.after_install(cluster, true).await,
            FaultKind::LeasePause => self.lease_pause(cluster).await,
            FaultKind::FreshLeaderRestart => self.fresh_leader_restart(cluster).await,
            _ => false,
        }
    }

    /// Adds a server as a learner and leaves it one: half the time cut
    /// off at once (its catch-up stalls), otherwise with the leader and
    /// its learners cut off from the other voters — where a quorum that
    /// counts learners would commit without a majority of voters.
    async fn linger(&mut self, cluster: &mut SimCluster) -> bool {
        let Some((leader_at, leader, status)) = leader(cluster).await else {
            return false;
        };
        let outsiders: Vec<usize> = (0..cluster.nodes.len())
            .filter(|&i| !status.membership.contains(cluster.nodes[i].id))
            .collect();
        if outsiders.is_empty() {
            return false;
        }
        let i = outsiders[self.rng.random_range(0..outsiders.len())];
        let id = cluster.nodes[i].id;
        self.mark_change_started();
        let added = timeout(ADMIN_TIMEOUT, leader.add_learner(id, cluster.raft_addr(i))).await;
        self.mark_change_finished(&leader).await;
        let outcome = match &added {
            Ok(Ok(at)) => format!("added at {at}"),
            Ok(Err(e)) => format!("refused: {e}"),
            Err(_) => "timed out".into(),
        };
        self.trace.event(
            SimCluster::now_ns(),
            "linger",
            json!({ "node": id.0, "outcome": outcome }),
        );
        if !matches!(added, Ok(Ok(_))) {
            // No learner to leave lingering: the window was not hit.
            return false;
        }
        if self.rng.random_range(0..2) == 0 {
            cluster.partition(&[i]);
        } else if let Ok(status) = leader.status().await {
            let mut side = vec![leader_at];
            side.extend(
                status
                    .membership
                    .learners
                    .iter()
                    .filter_map(|&l| position(cluster, l)),
            );
            if side.len() < cluster.nodes.len() {
                cluster.partition(&side);
            }
        }
        true
    }

    /// Starts a membership change and strikes the leader — cut off,
    /// blackholed or crashed — the moment it holds an uncommitted
    /// configuration: C(old,new) just appended, or (half the time) the
    /// C(new) that follows it. The entry is then either finished by a new
    /// leader or truncated, and the struck leader must roll it back.
    async fn config_window(&mut self, cluster: &mut SimCluster) -> bool {
        let Some((leader_at, leader, _)) = leader(cluster).await else {
            return false;
        };
        let target = self.rng.random_range(0..cluster.nodes.len());
        let at_new = self.rng.random_range(0..2) == 0;
        let (state, trace) = (self.reconfig.clone(), self.trace.clone());
        spawn_membership_change(cluster, leader.clone(), target, state, trace);
        let end = Instant::now() + Duration::from_secs(1);
        let mut joint_seen = false;
        while Instant::now() < end {
            sleep(POLL).await;
            let Ok(status) = leader.status().await else {
                return false;
            };
            if status.role != Role::Leader {
                return false;
            }
            let joint = status.membership.is_joint();
            joint_seen |= joint;
            let open = match at_new {
                false => joint,
                true => joint_seen && !joint,
            };
            if open {
                let what = if at_new { "C(new)" } else { "C(old,new)" };
                if self.strike(cluster, leader_at, what) != "crash" {
                    // Heal after a while: the struck leader must follow the
                    // new one with the configuration its log now carries.
                    sleep(Duration::from_millis(self.rng.random_range(300..1500))).await;
                    cluster.heal_network();
                    self.check_configurations(cluster, Duration::from_secs(2))
                        .await;
                }
                return true;
            }
        }
        false
    }

    /// Cuts off, blackholes or crashes server `i`, which holds `what`;
    /// which it did.
    fn strike(&mut self, cluster: &mut SimCluster, i: usize, what: &str) -> &'static str {
        let how = match self.rng.random_range(0..4) {
            0 if Self::out(cluster) < (cluster.nodes.len() - 1) / 2 => {
                cluster.kill(i);
                "crash"
            }
            1 => {
                cluster.blackhole(&[i], false);
                "blackhole"
            }
            _ => {
                cluster.partition(&[i]);
                "partition"
            }
        };
        let fields = json!({ "node": cluster.nodes[i].id.0, "holding": what, "how": how });
        self.trace
            .event(SimCluster::now_ns(), "config_window", fields);
        how
    }

    /// Watches the running servers for `within` (once if zero): any two
    /// whose logs end at the same entry must use the same configuration.
    pub(crate) async fn check_configurations(&mut self, cluster: &SimCluster, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let mut states = Vec::new();
            for i in 0..cluster.nodes.len() {
                if let Some(member) = cluster.member(i)
                    && let Ok(s) = member.status().await
                {
                    states.push((s.id, s.last_log_id, s.membership));
                }
            }
            let diverged = check_configurations_agree(&states);
            let settled = states.windows(2).all(|w| w[0].1 == w[1].1);
            if !diverged.is_empty() {
                let mut observations = self.observations.lock().expect("observations");
                for violation in diverged {
                    observations.violation(violation);
                }
                return;
            }
            if settled || Instant::now() >= end {
                return;
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cuts a voter off (half the time the leader, whose uncommitted tail
    /// a new leader's snapshot then replaces), changes the membership
    /// without it, snapshots the new leader and heals: the voter catches up
    /// through a snapshot that crossed the change. The moment it installed
    /// it, it campaigns (leadership is handed to it) or, with `restart`,
    /// loses its power before its log reset is durable, and comes back.
    async fn after_install(&mut self, cluster: &mut SimCluster, restart: bool) -> bool {
        let Some((leader_at, _, status)) = leader(cluster).await else {
            return false;
        };
        let voters: Vec<usize> = (0..cluster.nodes.len())
            .filter(|&i| status.membership.voters.contains(&cluster.nodes[i].id))
            .collect();
        let x = match self.rng.random_range(0..2) {
            0 => leader_at,
            _ => voters[self.rng.random_range(0..voters.len())],
        };
        cluster.partition(&[x]);
        // The rest elect a leader (the same one unless `x` led).
        let end = Instant::now() + Duration::from_secs(3);
        let (leader_at, leader, status) = loop {
            match self::leader(cluster).await {
                Some(found) if found.0 != x => break found,
                _ if Instant::now() >= end => return false,
                _ => sleep(Duration::from_millis(20)).await,
            }
        };
        // A change `x` misses, where one can finish without it (a restart
        // after an install is worth trying without one: `x` misses writes).
        match self.change_without(cluster, &status, leader_at, x) {
            Some(target) => {
                let (state, trace) = (self.reconfig.clone(), self.trace.clone());
                spawn_membership_change(cluster, leader.clone(), target, state, trace);
                let end = Instant::now() + Duration::from_secs(6);
                while self.reconfig.lock().expect("reconfig").in_flight && Instant::now() < end {
                    sleep(Duration::from_millis(20)).await;
                }
            }
            None if restart => sleep(Duration::from_millis(1500)).await,
            None => return false,
        }
        let _ = timeout(ADMIN_TIMEOUT, leader.snapshot()).await;
        cluster.heal_network();
        let Some(member) = cluster.member(x) else {
            return false;
        };
        let before = member.status().await.ok().and_then(|s| s.snapshot);
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            // Finely: the log reset that follows an install is durable a
            // device latency (50 µs to 20 ms) after the install.
            sleep(INSTALL_POLL).await;
            let Ok(now) = member.status().await else {
                return false;
            };
            if now.snapshot != before && now.snapshot.is_some() {
                let id = member.id();
                let then = if restart { "restart" } else { "campaign" };
                let snapshot = now.snapshot.map(|s| s.to_string());
                let fields = json!({ "node": id.0, "snapshot": snapshot, "then": then });
                self.trace
                    .event(SimCluster::now_ns(), "after_install", fields);
                if restart {
                    cluster.kill(x);
                    cluster.restart(x);
                } else if let Some((_, leader, _)) = self::leader(cluster).await {
                    let trace = self.trace.clone();
                    crate::reconfigure::spawn_transfer(cluster, leader, id, trace);
                }
                return true;
            }
        }
        false
    }

    /// Hands leadership to another voter and, once it has won (half the
    /// time at once, else once it appended a write after its no-op, or 30
    /// ms passed), cuts its power and restarts it. The term and vote it won
    /// with may not be durable yet (one device latency, 50 µs to 20 ms,
    /// after it campaigned), while the voters that elected it still hold
    /// their votes for it in that term: a server that led before its own
    /// term was durable could forget it and be elected in it again, with
    /// another log.
    async fn fresh_leader_restart(&mut self, cluster: &mut SimCluster) -> bool {
        let Some((old, leader_node, status)) = leader(cluster).await else {
            return false;
        };
        // A transfer: every other voter, the old leader too, may grant the
        // target its term, so their votes alone can elect it (with a
        // majority cut off from it, its own vote would be needed).
        let others: Vec<NodeId> = status
            .membership
            .voters
            .iter()
            .copied()
            .filter(|&id| id != status.id)
            .collect();
        let Some(&target) = others.get(self.rng.random_range(0..others.len().max(1))) else {
            return false;
        };
        crate::reconfigure::spawn_transfer(cluster, leader_node, target, self.trace.clone());
        let fresh = |cluster: &SimCluster| {
            (0..cluster.nodes.len()).find(|&i| {
                i != old
                    && cluster.nodes[i].id == target
                    && cluster
                        .member(i)
                        .is_some_and(|m| m.leader() == Some(m.id()))
            })
        };
        let end = Instant::now() + Duration::from_secs(3);
        let (at, member) = loop {
            sleep(INSTALL_POLL).await;
            if let Some(i) = fresh(cluster)
                && let Some(member) = cluster.member(i)
            {
                break (i, member);
            }
            if Instant::now() >= end {
                return false;
            }
        };
        let Ok(won) = member.status().await else {
            return false;
        };
        // Half the time at once (its term's write may still be on its
        // way), else once it has led a write (which a second election in
        // the same term would contradict).
        let wait = match self.rng.random_range(0..2) {
            0 => Duration::ZERO,
            _ => Duration::from_millis(30),
        };
        let strike = Instant::now() + wait;
        while Instant::now() < strike {
            match member.status().await {
                // `won` already holds its no-op: one entry more is a write.
                Ok(now) if now.last_log_id.index > won.last_log_id.index => break,
                Ok(_) => sleep(INSTALL_POLL).await,
                Err(_) => return false,
            }
        }
        let fields = json!({ "node": won.id.0, "term": won.hard_state.term.0 });
        self.trace
            .event(SimCluster::now_ns(), "fresh_leader_restart", fields);
        cluster.kill(at);
        cluster.restart(at);
        true
    }

    /// A server whose membership change can finish while `x` is cut off:
    /// a server outside the configuration (added), or a voter other than
    /// the leader and `x` whose removal leaves a live majority.
    fn change_without(
        &mut self,
        cluster: &SimCluster,
        status: &Status,
        leader_at: usize,
        x: usize,
    ) -> Option<usize> {
        let n = cluster.nodes.len();
        let outsiders: Vec<usize> = (0..n)
            .filter(|&i| !status.membership.contains(cluster.nodes[i].id))
            .collect();
        if !outsiders.is_empty() {
            return Some(outsiders[self.rng.random_range(0..outsiders.len())]);
        }
        let voters = status.membership.voters.len();
        // C(new) without the removed voter and without `x` still commits.
        let removable = voters >= 4 && voters - 2 > (voters - 1) / 2;
        let others: Vec<usize> = (0..n)
            .filter(|&i| {
                i != leader_at && i != x && status.membership.voters.contains(&cluster.nodes[i].id)
            })
            .collect();
        (removable && !others.is_empty()).then(|| others[self.rng.random_range(0..others.len())])
    }
}
