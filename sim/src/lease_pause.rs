//! The lease's edge: a leader whose process stops while the others elect a
//! new leader and write, then resumes still believing its lease. Random
//! faults almost never line this up; a lease held a drift too long (one
//! that ignores `max_clock_drift`, or is measured from when the quorum's
//! acknowledgements arrived instead of when the round was sent) serves a
//! stale read only when a deposed leader is read in the few milliseconds
//! between a new leader's write and its own lease's end.
//!
//! The tactic aims every clock at the edge the drift bound allows — the
//! leader's at its slowest rate, the others' at their fastest, so that
//! over an election timeout they differ by the whole `max_clock_drift` —
//! and makes the network fast (elections and commits then fit in the
//! margin). It pauses the leader (its tasks stop: a GC or scheduling
//! stall, or SIGSTOP), waits for another server to lead, writes a fresh
//! value through it, queues a `Lease` read at the paused leader (so that
//! the read is the first thing it handles when it runs again) and resumes
//! it; a second read follows just after the resume, when the
//! acknowledgements that reached it while paused have been handled. Every
//! operation goes into the history; the linearizability check judges.

use std::time::Duration;

use bytes::Bytes;
use oar::core::Role;
use oar::runtime::ReadPolicy;
use rand::RngExt;
use serde_json::json;
use tokio::time::{Instant, sleep, timeout};

use crate::cluster::SimCluster;
use crate::history::{Operation, Outcome, Reply};
use crate::kv_machine::{KvCommand, KvReply, decode_reply};
use crate::nemesis::Nemesis;
use crate::tactics::leader;
use crate::workload::ClientContext;

/// How long the others may take to elect a new leader.
const ELECTION_WAIT: Duration = Duration::from_secs(3);
/// The history's client ids for the tactic's own operations start here
/// (one id an operation, far from the workload's clients).
const CLIENT_BASE: u64 = 1 << 32;

impl Nemesis {
    /// Runs the tactic once; whether a new leader wrote while the old one
    /// was paused (the window the stale read needs).
    pub(crate) async fn lease_pause(&mut self, cluster: &mut SimCluster) -> bool {
        let Some(ctx) = self.clients.clone() else {
            return false;
        };
        let Some((old_at, _, status)) = leader(cluster).await else {
            return false;
        };
        let old_id = cluster.nodes[old_at].id;
        let old_term = status.hard_state.term;
        // The links as they should be: the scenario is a pause, not a cut.
        cluster.heal_network();
        for (id, clock) in cluster.clocks().lock().expect("clocks").iter() {
            clock.aim(*id == old_id);
        }
        cluster.fast_network();
        // Strike at a random point of the heartbeat cycle: sometimes with
        // a round's acknowledgements still on their way back.
        sleep(Duration::from_micros(self.rng.random_range(0..50_000))).await;
        let key_index = self.rng.random_range(0..ctx.keys);
        let key = format!("k{key_index}");
        cluster.pause(old_at);

        let written = self
            .write_at_new_leader(cluster, &ctx, old_at, old_term, &key)
            .await;
        let old = ctx.members[old_at].lock().expect("member").clone();
        let map = ctx
            .read_maps
            .lock()
            .expect("read maps")
            .get(&old_id)
            .cloned();
        let mut reads = Vec::new();
        if let (Some(node), Some(map)) = (old, map) {
            // Queued while paused: handled at the resume, before any
            // message that arrived meanwhile.
            reads.push(spawn_read(
                &ctx,
                self.op_counter(),
                node.clone(),
                map.clone(),
                &key,
            ));
            sleep(Duration::from_micros(10)).await;
            cluster.resume(old_at);
            sleep(Duration::from_micros(200)).await;
            reads.push(spawn_read(&ctx, self.op_counter(), node, map, &key));
        } else {
            cluster.resume(old_at);
        }
        let mut served = Vec::new();
        for read in reads {
            served.push(read.await.unwrap_or(false));
        }
        self.trace.event(
            SimCluster::now_ns(),
            "lease_pause",
            json!({ "node": old_id.0, "written": written, "served": served }),
        );
        written
    }

    /// A fresh number for the tactic's next operation in the history.
    fn op_counter(&mut self) -> u64 {
        CLIENT_BASE + self.rng.random_range(0..u64::from(u32::MAX))
    }

    /// Waits for a server other than `old_at` to lead a newer term, then
    /// puts a fresh value under `key` through it; whether it was applied.
    async fn write_at_new_leader(
        &mut self,
        cluster: &SimCluster,
        ctx: &ClientContext,
        old_at: usize,
        old_term: oar::core::Term,
        key: &str,
    ) -> bool {
        let give_up = Instant::now() + ELECTION_WAIT;
        let new = loop {
            if Instant::now() >= give_up {
                return false;
            }
            let mut found = None;
            for i in (0..cluster.nodes.len()).filter(|&i| i != old_at) {
                let Some(member) = cluster.member(i) else {
                    continue;
                };
                if let Ok(status) = member.status().await
                    && status.role == Role::Leader
                    && status.hard_state.term > old_term
                {
                    found = Some(member);
                }
            }
            if let Some(member) = found {
                break member;
            }
            sleep(Duration::from_millis(1)).await;
        };
        let client = self.op_counter();
        let value = format!("lease-{client}");
        let operation = Operation::Put { value };
        let bytes: Bytes = KvCommand::of(key, &operation).encode();
        let op = ctx.history.lock().expect("history").invoke(
            client,
            key.to_string(),
            operation,
            SimCluster::now_ns(),
        );
        let outcome = match timeout(ctx.op_timeout, new.apply(bytes.clone())).await {
            Ok(Ok(applied)) => match decode_reply(&applied.response) {
                KvReply::Done => Outcome::Ok(Reply::Done),
                _ => Outcome::Unknown,
            },
            Ok(Err(e)) if crate::sessions::not_applied(&e) => Outcome::Fail,
            _ => Outcome::Unknown,
        };
        let applied = matches!(outcome, Outcome::Ok(_));
        if applied {
            ctx.acknowledged
                .lock()
                .expect("acknowledged")
                .push((op.index(), bytes));
        }
        ctx.history
            .lock()
            .expect("history")
            .complete(op, SimCluster::now_ns(), outcome)
            .expect("history accepts the completion");
        applied
    }
}

/// Starts a `Lease` read of `key` at `node`, recorded in the history;
/// resolves to whether it was served.
fn spawn_read(
    ctx: &ClientContext,
    client: u64,
    node: oar::runtime::Node,
    map: crate::reads::SharedMap,
    key: &str,
) -> tokio::task::JoinHandle<bool> {
    let op = ctx.history.lock().expect("history").invoke(
        client,
        key.to_string(),
        Operation::Get,
        SimCluster::now_ns(),
    );
    let (history, key, op_timeout) = (ctx.history.clone(), key.to_string(), ctx.op_timeout);
    tokio::spawn(async move {
        let read = crate::reads::barrier_read(node, map, ReadPolicy::Lease, &key, op_timeout).await;
        let served = matches!(read.outcome, Outcome::Ok(_));
        history
            .lock()
            .expect("history")
            .complete(op, SimCluster::now_ns(), read.outcome)
            .expect("history accepts the completion");
        served
    })
}
