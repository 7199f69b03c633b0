//! The fault scheduler: every few hundred simulated milliseconds it draws a
//! fault from the enabled classes — partitions, one-way clogs, slow links,
//! crashes, pauses, disk I/O errors, bit flips, membership changes and
//! leadership transfers — or heals one. It never
//! takes down more than a minority at once, so that the cluster may make
//! progress between faults; the liveness phase then heals everything.

use std::time::Duration;

use oar::storage::FsOp;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::cluster::{SimCluster, data_dir};
use crate::options::FaultSet;
use crate::trace::Trace;

/// The fault scheduler of one run.
pub struct Nemesis {
    rng: ChaCha8Rng,
    reconfig: crate::reconfigure::SharedReconfig,
    faults: FaultSet,
    trace: Trace,
    /// Faults injected so far.
    pub injected: u64,
}

impl Nemesis {
    /// A scheduler drawing from `faults`, seeded by the run.
    pub fn new(seed: u64, nodes: usize, faults: FaultSet, trace: Trace) -> Self {
        let reconfig = crate::reconfigure::ReconfigState {
            in_flight: false,
            changed: false,
            voters: nodes,
            split_request: None,
            split_done: false,
        };
        Nemesis {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x006e_656d_6573_6973),
            reconfig: std::sync::Arc::new(std::sync::Mutex::new(reconfig)),
            faults,
            trace,
            injected: 0,
        }
    }

    /// Injects faults until `phase` of simulated time has passed.
    pub async fn run(&mut self, cluster: &mut SimCluster, phase: Duration) {
        let end = tokio::time::Instant::now() + phase;
        if self.faults == FaultSet::None {
            tokio::time::sleep_until(end).await;
            return;
        }
        while tokio::time::Instant::now() < end {
            let pause = Duration::from_millis(self.rng.random_range(200..1200));
            tokio::time::sleep(
                pause.min(end.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
            self.step(cluster);
        }
    }

    /// Whether losing one server for good surely leaves the voters a
    /// majority: the configuration never changed (a change that timed out
    /// leaves it unknown) and has at least three voters.
    fn loss_survivable(&self) -> bool {
        let state = self.reconfig.lock().expect("reconfig");
        !state.in_flight && !state.changed && state.voters >= 3
    }

    /// How many servers are out (down, paused, or unable to recover).
    fn out(cluster: &SimCluster) -> usize {
        (0..cluster.nodes.len())
            .filter(|&i| {
                let node = &cluster.nodes[i];
                node.down || node.paused || node.disk_error_injected || cluster.unrecoverable(i)
            })
            .count()
    }

    fn step(&mut self, cluster: &mut SimCluster) {
        let n = cluster.nodes.len();
        let split = self.reconfig.lock().expect("reconfig").split_request.take();
        if let Some(leaving) = split {
            let side: Vec<usize> = (0..n)
                .filter(|&i| leaving.contains(&cluster.nodes[i].id))
                .collect();
            cluster.partition(&side);
            self.reconfig.lock().expect("reconfig").split_done = true;
            self.injected += 1;
            return;
        }
        let minority = (n - 1) / 2;
        // Draws past 100 are membership changes and transfers, when enabled;
        // the last few ask a server for a snapshot (whatever the faults).
        let top = if self.faults.membership() { 124 } else { 100 };
        let choice = self.rng.random_range(0..top + 6);
        if choice >= top {
            let i = self.rng.random_range(0..n);
            if let Some(member) = cluster.member(i) {
                crate::reconfigure::spawn_snapshot(cluster, member, self.trace.clone());
                self.injected += 1;
            }
            return;
        }
        let pick = |rng: &mut ChaCha8Rng, cond: &dyn Fn(usize) -> bool| -> Option<usize> {
            let candidates: Vec<usize> = (0..n).filter(|&i| cond(i)).collect();
            (!candidates.is_empty()).then(|| candidates[rng.random_range(0..candidates.len())])
        };
        match choice {
            0..8 if self.faults.net() => {
                // Cut the leader off, the fault that forces elections and
                // leaves deposed leaders with uncommitted tails.
                let Some(leader) = cluster.leader_index() else {
                    return;
                };
                cluster.partition(&[leader]);
            }
            8..17 if self.faults.net() => {
                // A random side: a lone node, a minority, or a majority.
                let size = self.rng.random_range(1..n.max(2));
                let mut side = self.shuffled(n);
                side.truncate(size);
                side.sort_unstable();
                cluster.partition(&side);
            }
            17..20 if self.faults.net() && n >= 3 => {
                // A bridge: two halves that reach each other only through
                // one node, which sees a majority on both sides.
                let order = self.shuffled(n);
                let (bridge, rest) = order.split_first().expect("n >= 3");
                let (left, right) = rest.split_at(rest.len() / 2);
                cluster.bridge(*bridge, left, right);
            }
            20..30 if self.faults.net() => {
                let from = self.rng.random_range(0..n);
                let to = (from + self.rng.random_range(1..n)) % n;
                cluster.clog_link(from, to);
            }
            30..36 if self.faults.net() => {
                cluster.slow_network(Duration::from_millis(self.rng.random_range(20..200)))
            }
            36..50 if self.faults.net() => cluster.heal_network(),
            50..62 if self.faults.crash() && Self::out(cluster) < minority => {
                // Half the time the leader, whose death matters most.
                let leader = cluster
                    .leader_index()
                    .filter(|_| self.rng.random_range(0..2) == 0);
                let Some(i) = leader.or_else(|| {
                    pick(&mut self.rng, &|i| {
                        !cluster.nodes[i].down && !cluster.nodes[i].paused
                    })
                }) else {
                    return;
                };
                // A quarter of the time the process dies but the power
                // stays: the next start recovers writes never synced.
                match self.rng.random_range(0..4) {
                    0 => cluster.kill_process(i),
                    _ => cluster.kill(i),
                }
            }
            62..76 if self.faults.crash() => {
                let Some(i) = pick(&mut self.rng, &|i| {
                    (cluster.nodes[i].down || cluster.nodes[i].disk_error_injected)
                        && !cluster.unrecoverable(i)
                }) else {
                    return;
                };
                if !cluster.nodes[i].down {
                    cluster.kill(i);
                }
                cluster.restart(i);
            }
            76..82 if self.faults.crash() && Self::out(cluster) < minority => {
                let Some(i) = pick(&mut self.rng, &|i| {
                    !cluster.nodes[i].down && !cluster.nodes[i].paused
                }) else {
                    return;
                };
                cluster.pause(i);
            }
            82..90 if self.faults.crash() => {
                let Some(i) = pick(&mut self.rng, &|i| cluster.nodes[i].paused) else {
                    return;
                };
                cluster.resume(i);
            }
            90..96 if self.faults.disk() && Self::out(cluster) < minority => {
                // The next sync fails: the group stops (fail-stop) until the
                // nemesis restarts the server.
                let Some(i) = pick(&mut self.rng, &|i| {
                    !cluster.nodes[i].down && !cluster.nodes[i].paused
                }) else {
                    return;
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
            }
            // A permanent loss only where the voters left keep a majority.
            96..100
                if self.faults.disk()
                    && Self::out(cluster) < minority
                    && self.loss_survivable() =>
            {
                // Latent corruption of the term/vote file of a crashed
                // server: detected at restart, the server stays out.
                let Some(i) = pick(&mut self.rng, &|i| {
                    !cluster.nodes[i].down && !cluster.nodes[i].paused
                }) else {
                    return;
                };
                if (0..n).any(|j| cluster.unrecoverable(j)) {
                    return;
                }
                cluster.kill(i);
                let meta = data_dir().join("raft_meta");
                let bit = self.rng.random_range(0..8u8);
                if cluster.nodes[i]
                    .fs
                    .flip_bit(&meta, self.rng.random_range(0..16), bit)
                    .is_ok()
                {
                    self.trace.event(
                        SimCluster::now_ns(),
                        "flip_bit",
                        json!({ "node": cluster.nodes[i].id.0, "file": "raft_meta" }),
                    );
                }
                cluster.restart(i);
            }
            // A change only while every server is fine, so that a crash or
            // a permanent loss cannot meet a half-done change.
            100..114
                if Self::out(cluster) == 0
                    && !self.reconfig.lock().expect("reconfig").in_flight =>
            {
                let Some(leader) = cluster.leader_index().and_then(|i| cluster.member(i)) else {
                    return;
                };
                let target = self.rng.random_range(0..n);
                let (state, trace) = (self.reconfig.clone(), self.trace.clone());
                crate::reconfigure::spawn_membership_change(cluster, leader, target, state, trace);
            }
            120..124
                if Self::out(cluster) == 0
                    && !self.reconfig.lock().expect("reconfig").in_flight =>
            {
                let Some(leader) = cluster.leader_index().and_then(|i| cluster.member(i)) else {
                    return;
                };
                let picks = [self.rng.random_range(0..n), self.rng.random_range(0..n)];
                // With network faults, half the replacements are made while
                // the leaving voters are cut off (the nemesis' next step).
                let split = self.faults.net() && self.rng.random_range(0..2) == 0;
                let (state, trace) = (self.reconfig.clone(), self.trace.clone());
                crate::reconfigure::spawn_replacement(cluster, leader, picks, split, state, trace);
            }
            114..120 => {
                let Some(leader) = cluster.leader_index().and_then(|i| cluster.member(i)) else {
                    return;
                };
                let to = cluster.nodes[self.rng.random_range(0..n)].id;
                crate::reconfigure::spawn_transfer(cluster, leader, to, self.trace.clone());
            }
            _ => return,
        }
        self.injected += 1;
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
            if cluster.nodes[i].disk_error_injected && !cluster.nodes[i].down {
                cluster.kill(i);
            }
            if cluster.nodes[i].down && !cluster.unrecoverable(i) {
                cluster.restart(i);
            }
        }
    }
}
