//! Concurrent clients on a small key space: put, get, append, cas and incr
//! (on counter keys of their own), each recorded in the history with its
//! invoke and completion times. A client retries at the leader a refusal
//! names; through a session it retries an attempt of unknown outcome too
//! (`sessions.rs`), without one it gives up on the operation (outcome
//! unknown) after the operation timeout. Gets go through the log or through
//! a read barrier of any policy, on leaders and followers (`reads.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oar::runtime::Node;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::SimCluster;
use crate::history::{History, Operation, Outcome, Reply};
use crate::kv_machine::{KvCommand, KvReply, decode_reply};
use crate::sessions::{ClientSession, Ended, apply_plain};

/// What the clients share.
#[derive(Clone)]
pub struct ClientContext {
    /// Each server's member handle (`None` while down).
    pub members: Vec<Arc<Mutex<Option<Node>>>>,
    /// Each running state machine's map, for barrier reads.
    pub read_maps: crate::reads::ReadMaps,
    /// The history every client records into.
    pub history: Arc<Mutex<History>>,
    /// Acknowledged writes: history op index → the command it logged.
    pub acknowledged: Arc<Mutex<Vec<(usize, Bytes)>>>,
    /// Set when the fault phase ends.
    pub stop: Arc<AtomicBool>,
    /// Keys to choose from.
    pub keys: usize,
    /// When a client gives up on an attempt.
    pub op_timeout: Duration,
    /// Writes go through client sessions.
    pub sessions: bool,
    /// Every other period of this length all clients pause, so that the
    /// group can go quiet (`quiet.rs`); `None`: no pauses.
    pub idle_period: Option<Duration>,
}

/// Runs one client until `stop` is set.
pub async fn run_client(client: u64, seed: u64, ctx: ClientContext) {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (client + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut target = rng.random_range(0..ctx.members.len());
    let mut sequence = 0u64;
    let mut last_seen: Vec<Option<String>> = vec![None; ctx.keys];
    let mut session = ClientSession::default();
    while !ctx.stop.load(Ordering::Relaxed) {
        if let Some(period) = ctx.idle_period {
            crate::quiet::wait_out_idle_phase(period, &ctx.stop).await;
        }
        let member = ctx.members[target].lock().expect("member").clone();
        let Some(member) = member else {
            target = rng.random_range(0..ctx.members.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let key_index = rng.random_range(0..ctx.keys);
        let mut key = format!("k{key_index}");
        sequence += 1;
        let value = format!("c{client}-{sequence}");
        let operation = match rng.random_range(0..12) {
            0..3 => Operation::Put { value },
            3..6 => Operation::Get,
            6..8 => Operation::Append { value },
            8..10 => Operation::Cas {
                expected: last_seen[key_index].clone().unwrap_or_default(),
                new: value,
            },
            _ => {
                key = format!("n{key_index}");
                Operation::Incr { id: value }
            }
        };
        let read_policy = match operation {
            Operation::Get => crate::reads::pick_policy(&mut rng),
            _ => None,
        };
        let bytes = KvCommand::of(&key, &operation).encode();
        let op = ctx.history.lock().expect("history").invoke(
            client,
            key.clone(),
            operation,
            SimCluster::now_ns(),
        );
        if let Some(policy) = read_policy {
            let n = ctx.members.len();
            let reader = crate::reads::pick_reader(&mut rng, target, n, policy);
            // The handle and its map together (no await between).
            let node = ctx.members[reader].lock().expect("member").clone();
            let id = oar::core::NodeId(reader as u64 + 1);
            let map = ctx.read_maps.lock().expect("read maps").get(&id).cloned();
            let read = match (node, map) {
                (Some(node), Some(map)) => {
                    crate::reads::barrier_read(node, map, policy, &key, ctx.op_timeout).await
                }
                _ => crate::reads::BarrierRead {
                    outcome: Outcome::Fail,
                    value: None,
                    leader: None,
                },
            };
            if let Some(value) = read.value {
                last_seen[key_index] = value;
            }
            if let Some(leader) = read.leader {
                target = (leader.0 as usize).saturating_sub(1).min(n - 1);
            }
            let now = SimCluster::now_ns();
            ctx.history
                .lock()
                .expect("history")
                .complete(op, now, read.outcome)
                .expect("history accepts the completion");
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
            continue;
        }
        let ended = if ctx.sessions {
            session
                .apply(&ctx, &mut rng, &mut target, bytes.clone())
                .await
        } else {
            apply_plain(&ctx, &mut rng, &mut target, &member, bytes.clone()).await
        };
        let outcome = match ended {
            Ended::Applied(response) => {
                let reply = match decode_reply(&response) {
                    KvReply::Done => Reply::Done,
                    KvReply::Value(v) => {
                        last_seen[key_index] = v.clone();
                        Reply::Value(v)
                    }
                    KvReply::Swapped(swapped) => Reply::Swapped(swapped),
                    KvReply::Count(count) => Reply::Count(count),
                    KvReply::Invalid => panic!("the state machine refused a well-formed command"),
                };
                if !matches!(reply, Reply::Value(_) | Reply::Swapped(false)) {
                    ctx.acknowledged
                        .lock()
                        .expect("acknowledged")
                        .push((op.index(), bytes));
                }
                Outcome::Ok(reply)
            }
            Ended::Fail => Outcome::Fail,
            Ended::Unknown => Outcome::Unknown,
        };
        let now = SimCluster::now_ns();
        ctx.history
            .lock()
            .expect("history")
            .complete(op, now, outcome)
            .expect("history accepts the completion");
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
    }
}
