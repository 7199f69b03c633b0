//! The fault scheduler: every few hundred simulated milliseconds it draws a
//! fault kind from the run's mix ([`FaultWeights`]: each kind's chance is
//! its weight over the total) — partitions, one-way clogs, slow links,
//! crashes, pauses, disk I/O errors, bit flips, membership changes,
//! leadership transfers, snapshots, the stranger — or a recovery. It never
//! takes down more than a minority at once, so that the cluster may make
//! progress between faults; the liveness phase then heals everything.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oar::storage::FsOp;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::cluster::{SimCluster, data_dir};
use crate::fault_mix::{FaultClass, FaultKind, FaultWeights};
use crate::liveness::{Recovery, recover_all};
use crate::observe::Observations;
use crate::stranger::Stranger;
use crate::trace::Trace;

/// The fault scheduler of one run.
pub struct Nemesis {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) reconfig: crate::reconfigure::SharedReconfig,
    mix: FaultWeights,
    pub(crate) trace: Trace,
    /// The process outside the cluster, for [`FaultKind::Stranger`].
    pub stranger: Stranger,
    /// Faults injected so far.
    pub injected: u64,
    /// Faults injected so far, by kind (splits for replacements are not
    /// counted here).
    pub injected_by_kind: BTreeMap<FaultKind, u64>,
    /// How long a healed cluster may go without progress (lulls).
    pub recovery_bound: Duration,
    /// How each lull's cluster recovered.
    pub lull_recoveries: Vec<Recovery>,
    /// The first lull whose cluster did not recover in time: why.
    pub lull_failure: Option<String>,
    /// Where tactics report what they catch.
    pub(crate) observations: Arc<Mutex<Observations>>,
    /// The clients' history and handles, for tactics that read and write
    /// themselves (`lease_pause`); none, and those tactics miss.
    pub clients: Option<crate::workload::ClientContext>,
}

impl Nemesis {
    /// A scheduler drawing from `mix`, seeded by the run; what the stranger
    /// gets away with goes to `observations`.
    pub fn new(
        seed: u64,
        nodes: usize,
        mix: FaultWeights,
        observations: Arc<Mutex<Observations>>,
        trace: Trace,
    ) -> Self {
        let reconfig = crate::reconfigure::ReconfigState {
            in_flight: false,
            changed: false,
            voters: nodes,
            split_request: None,
            split_done: false,
        };
        Nemesis {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x006e_656d_6573_6973),
            reconfig: Arc::new(Mutex::new(reconfig)),
            mix,
            stranger: Stranger::new(observations.clone(), trace.clone()),
            observations,
            trace,
            injected: 0,
            injected_by_kind: BTreeMap::new(),
            recovery_bound: Duration::from_secs(60),
            lull_recoveries: Vec::new(),
            lull_failure: None,
            clients: None,
        }
    }

    /// Injects faults until `phase` of simulated time has passed.
    pub async fn run(&mut self, cluster: &mut SimCluster, phase: Duration) {
        let end = tokio::time::Instant::now() + phase;
        if self.mix.total() == 0 {
            tokio::time::sleep_until(end).await;
            return;
        }
        while tokio::time::Instant::now() < end {
            let pause = Duration::from_millis(self.rng.random_range(200..1200));
            tokio::time::sleep(
                pause.min(end.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
            let drawn = self.step(cluster);
            if drawn == Some(FaultKind::Lull) {
                self.lull(cluster).await;
            } else if let Some(kind) = drawn.filter(|k| k.is_tactic())
                && self.tactic(kind, cluster).await
            {
                self.injected += 1;
                *self.injected_by_kind.entry(kind).or_insert(0) += 1;
            }
        }
    }

    /// Heals everything, then injects nothing until a write commits in
    /// every group (or the recovery bound passes without progress: a
    /// liveness failure).
    async fn lull(&mut self, cluster: &mut SimCluster) {
        self.heal_all(cluster);
        let healed = tokio::time::Instant::now();
        self.trace.event(SimCluster::now_ns(), "lull", json!({}));
        let deadline = self.recovery_bound * 4;
        match recover_all(cluster, healed, self.recovery_bound, deadline).await {
            Ok(recovery) => {
                self.lull_recoveries.push(recovery);
                self.check_configurations(cluster, Duration::ZERO).await;
            }
            Err(e) => {
                let t = SimCluster::now_ns() as f64 / 1e9;
                self.lull_failure
                    .get_or_insert(format!("in a lull (at {t:.1}s): {e}"));
            }
        }
    }

    /// Whether losing one server for good surely leaves the voters a
    /// majority: the configuration never changed (a change that timed out
    /// leaves it unknown) and has at least three voters.
    fn loss_survivable(&self) -> bool {
        let state = self.reconfig.lock().expect("reconfig");
        !state.in_flight && !state.changed && state.voters >= 3
    }

    /// Whether a membership change may start: every server is fine and no
    /// change is in flight.
    pub(crate) fn change_allowed(&self, cluster: &SimCluster) -> bool {
        Self::out(cluster) == 0 && !self.reconfig.lock().expect("reconfig").in_flight
    }

    /// A change the nemesis runs itself is under way.
    pub(crate) fn mark_change_started(&self) {
        let mut state = self.reconfig.lock().expect("reconfig");
        state.in_flight = true;
        state.changed = true;
    }

    /// The change is over: the voters it left (the smaller half of a joint
    /// configuration; none if the leader cannot tell).
    pub(crate) async fn mark_change_finished(&self, leader: &oar::runtime::Node) {
        let voters = match leader.status().await {
            Ok(status) if status.membership.is_joint() => status
                .membership
                .voters
                .len()
                .min(status.membership.outgoing_voters.len()),
            Ok(status) => status.membership.voters.len(),
            Err(_) => 0,
        };
        let mut state = self.reconfig.lock().expect("reconfig");
        state.in_flight = false;
        state.voters = voters;
    }

    /// How many servers are out (down, paused, or unable to recover).
    pub(crate) fn out(cluster: &SimCluster) -> usize {
        (0..cluster.nodes.len())
            .filter(|&i| {
                let node = &cluster.nodes[i];
                node.down || node.paused || node.disk_error_injected || cluster.unrecoverable(i)
            })
            .count()
    }

    /// Injects the next fault; the kind drawn, which for a lull is left to
    /// the caller.
    fn step(&mut self, cluster: &mut SimCluster) -> Option<FaultKind> {
        let n = cluster.nodes.len();
        let split = self.reconfig.lock().expect("reconfig").split_request.take();
        if let Some(leaving) = split {
            let side: Vec<usize> = (0..n)
                .filter(|&i| leaving.contains(&cluster.nodes[i].id))
                .collect();
            cluster.partition(&side);
            self.reconfig.lock().expect("reconfig").split_done = true;
            self.injected += 1;
            return None;
        }
        let kind = self.mix.kind_at(self.rng.random_range(0..self.mix.total()));
        if kind.is_tactic() {
            return Some(kind);
        }
        if kind == FaultKind::Lull || self.inject(kind, cluster) {
            self.injected += 1;
            *self.injected_by_kind.entry(kind).or_insert(0) += 1;
        }
        Some(kind)
    }

    /// Injects one fault of `kind`, unless the cluster's state rules it
    /// out (never more than a minority out, no change on a half-done one);
    /// whether it did.
    fn inject(&mut self, kind: FaultKind, cluster: &mut SimCluster) -> bool {
        let n = cluster.nodes.len();
        let minority = (n - 1) / 2;
        let out = Self::out(cluster);
        let change_allowed = out == 0 && !self.reconfig.lock().expect("reconfig").in_flight;
        match kind {
            FaultKind::PartitionLeader => {
                // Cut the leader off, the fault that forces elections and
                // leaves deposed leaders with uncommitted tails.
                let g = self.aimed_group(cluster);
                let Some(leader) = cluster.leader_index_in(g) else {
                    return false;
                };
                cluster.partition(&[leader]);
            }
            FaultKind::PartitionRandom => {
                // A random side: a lone node, a minority, or a majority.
                let size = self.rng.random_range(1..n.max(2));
                let mut side = self.shuffled(n);
                side.truncate(size);
                side.sort_unstable();
                cluster.partition(&side);
            }
            FaultKind::PartitionBridge if n >= 3 => {
                // A bridge: two halves that reach each other only through
                // one node, which sees a majority on both sides.
                let order = self.shuffled(n);
                let (bridge, rest) = order.split_first().expect("n >= 3");
                let (left, right) = rest.split_at(rest.len() / 2);
                cluster.bridge(*bridge, left, right);
            }
            FaultKind::Blackhole => {
                // Half the time the leader alone, whose followers must then
                // elect another and whose connections die with it.
                let g = self.aimed_group(cluster);
                let leader = cluster
                    .leader_index_in(g)
                    .filter(|_| self.rng.random_range(0..2) == 0);
                let side = match leader {
                    Some(leader) => vec![leader],
                    None => {
                        let size = self.rng.random_range(1..n.max(2));
                        let mut side = self.shuffled(n);
                        side.truncate(size);
                        side.sort_unstable();
                        side
                    }
                };
                let one_way = self.rng.random_range(0..4) == 0;
                cluster.blackhole(&side, one_way);
            }
            FaultKind::ClogLink => {
                let from = self.rng.random_range(0..n);
                let to = (from + self.rng.random_range(1..n)) % n;
                cluster.clog_link(from, to);
            }
            FaultKind::SlowNetwork => {
                cluster.slow_network(Duration::from_millis(self.rng.random_range(20..200)))
            }
            FaultKind::HealNetwork => cluster.heal_network(),
            FaultKind::Crash if out < minority => return self.crash(cluster),
            FaultKind::Restart => return self.restart(cluster),
            FaultKind::Pause if out < minority => {
                let Some(i) = self.pick(n, |i| !cluster.nodes[i].down && !cluster.nodes[i].paused)
                else {
                    return false;
                };
                cluster.pause(i);
            }
            FaultKind::Resume => {
                let Some(i) = self.pick(n, |i| cluster.nodes[i].paused) else {
                    return false;
                };
                cluster.resume(i);
            }
            FaultKind::SyncError if out < minority => return self.sync_error(cluster),
            // A permanent loss only where the voters left keep a majority.
            FaultKind::MetaBitFlip if out < minority && self.loss_survivable() => {
                return self.meta_bit_flip(cluster);
            }
            // A change only while every server is fine, so that a crash or
            // a permanent loss cannot meet a half-done change.
            FaultKind::MembershipChange if change_allowed => {
                let Some(leader) = cluster.leader_index().and_then(|i| cluster.member(i)) else {
                    return false;
                };
                let target = self.rng.random_range(0..n);
                let (state, trace) = (self.reconfig.clone(), self.trace.clone());
                crate::reconfigure::spawn_membership_change(cluster, leader, target, state, trace);
            }
            FaultKind::Replacement if change_allowed => {
                let Some(leader) = cluster.leader_index().and_then(|i| cluster.member(i)) else {
                    return false;
                };
                let picks = [self.rng.random_range(0..n), self.rng.random_range(0..n)];
                // With network faults, half the replacements are made while
                // the leaving voters are cut off (the nemesis' next step).
                let split = self.mix.any_on(FaultClass::Net) && self.rng.random_range(0..2) == 0;
                let (state, trace) = (self.reconfig.clone(), self.trace.clone());
                crate::reconfigure::spawn_replacement(cluster, leader, picks, split, state, trace);
            }
            FaultKind::Transfer => {
                let g = self.aimed_group(cluster);
                let Some(leader) = cluster
                    .leader_index_in(g)
                    .and_then(|i| cluster.member_in(g, i))
                else {
                    return false;
                };
                let to = cluster.nodes[self.rng.random_range(0..n)].id;
                crate::reconfigure::spawn_transfer(cluster, leader, to, self.trace.clone());
            }
            FaultKind::Snapshot => {
                let g = self.aimed_group(cluster);
                let i = self.rng.random_range(0..n);
                let Some(member) = cluster.member_in(g, i) else {
                    return false;
                };
                crate::reconfigure::spawn_snapshot(cluster, member, self.trace.clone());
            }
            FaultKind::Stranger => self.stranger.act(cluster, &mut self.rng),
            _ => return false,
        }
        true
    }

    /// The group (by index) a fault aimed at a leader or a member aims at:
    /// any of the run's groups, drawn only when there are several, so that
    /// a run of one group replays as it always did. (Membership changes
    /// and the tactics stay with the first group, whose configuration the
    /// nemesis tracks.)
    fn aimed_group(&mut self, cluster: &SimCluster) -> usize {
        match cluster.groups.len() {
            0 | 1 => 0,
            groups => self.rng.random_range(0..groups),
        }
    }

    /// A random server among those `cond` accepts.
    fn pick(&mut self, n: usize, cond: impl Fn(usize) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..n).filter(|&i| cond(i)).collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.random_range(0..candidates.len())])
    }

    fn crash(&mut self, cluster: &mut SimCluster) -> bool {
        // Half the time a leader, whose death matters most.
        let g = self.aimed_group(cluster);
        let leader = cluster
            .leader_index_in(g)
            .filter(|_| self.rng.random_range(0..2) == 0);
        let Some(i) = leader.or_else(|| {
            self.pick(cluster.nodes.len(), |i| {
                !cluster.nodes[i].down && !cluster.nodes[i].paused
            })
        }) else {
            return false;
        };
        // A quarter of the time the process dies but the power stays: the
        // next start recovers writes never synced.
        match self.rng.random_range(0..4) {
            0 => cluster.kill_process(i),
            _ => cluster.kill(i),
        }
        true
    }

    fn restart(&mut self, cluster: &mut SimCluster) -> bool {
        let Some(i) = self.pick(cluster.nodes.len(), |i| {
            (cluster.nodes[i].down || cluster.nodes[i].disk_error_injected)
                && !cluster.unrecoverable(i)
        }) else {
            return false;
        };
        match cluster.nodes[i].down {
            false => cluster.kill(i),
            true if cluster.nodes[i].disk_error_injected => cluster.cut_power(i),
            true => {}
        }
        cluster.restart(i);
        true
    }

    /// The next sync fails: the group stops (fail-stop) until the nemesis
    /// restarts the server.
    fn sync_error(&mut self, cluster: &mut SimCluster) -> bool {
        let Some(i) = self.pick(cluster.nodes.len(), |i| {
            !cluster.nodes[i].down && !cluster.nodes[i].paused
        }) else {
            return false;
        };
        cluster.nodes[i]
            .fs
            .inject_error(FsOp::Sync, self.rng.random_range(0..3));
        cluster.nodes[i].disk_error_injected = true;
        self.trace.event(
            SimCluster::now_ns(),
            "inject_sync_error",
            json!({ "node": cluster.nodes[i].id.0 }),
        );
        true
    }

    /// Latent corruption of a crashed server's durable state, detected at
    /// restart, the server staying out: its term/vote file, or with the
    /// shared log (which keeps terms and votes in its frames) a closed
    /// segment (a flip in the open one's tail would read as a torn write).
    fn meta_bit_flip(&mut self, cluster: &mut SimCluster) -> bool {
        let n = cluster.nodes.len();
        let Some(i) = self.pick(n, |i| !cluster.nodes[i].down && !cluster.nodes[i].paused) else {
            return false;
        };
        if (0..n).any(|j| cluster.unrecoverable(j)) {
            return false;
        }
        cluster.kill(i);
        let target = match cluster.keeps_shared_log() {
            true => self.closed_segment(&cluster.nodes[i].fs),
            false => Some(data_dir().join("raft_meta")),
        };
        let bit = self.rng.random_range(0..8u8);
        let offset = self.rng.random_range(0..16);
        if let Some(path) = target
            && cluster.nodes[i].fs.flip_bit(&path, offset, bit).is_ok()
        {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            self.trace.event(
                SimCluster::now_ns(),
                "flip_bit",
                json!({ "node": cluster.nodes[i].id.0, "file": file }),
            );
        }
        cluster.restart(i);
        true
    }

    /// A closed segment of a server's shared log, drawn from the seed.
    fn closed_segment(&mut self, fs: &oar::storage::MemFileSystem) -> Option<std::path::PathBuf> {
        use oar::storage::FileSystem;
        let dir = crate::cluster::shared_log_dir();
        let mut closed: Vec<String> = fs.list_dir(&dir).ok()?;
        closed.retain(|name| name.starts_with("log_") && !name.starts_with("log_inprogress"));
        // The listing's order is the file system's: sort, so the draw replays.
        closed.sort();
        if closed.is_empty() {
            return None;
        }
        let pick = self.rng.random_range(0..closed.len());
        Some(dir.join(&closed[pick]))
    }

    /// The servers in a random order.
    fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.rng.random_range(0..=i);
            order.swap(i, j);
        }
        order
    }

    /// Ends every fault: heals the network, resumes and restarts servers
    /// (except those whose storage refused to open).
    pub fn heal_all(&mut self, cluster: &mut SimCluster) {
        cluster.heal_network();
        for i in 0..cluster.nodes.len() {
            if cluster.nodes[i].paused {
                cluster.resume(i);
            }
            if cluster.nodes[i].disk_error_injected {
                match cluster.nodes[i].down {
                    false => cluster.kill(i),
                    true => cluster.cut_power(i),
                }
            }
            if cluster.nodes[i].down && !cluster.unrecoverable(i) {
                cluster.restart(i);
            }
        }
    }
}
