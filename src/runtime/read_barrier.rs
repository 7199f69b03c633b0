//! Read barriers: the runtime half of reads without the log (the core's
//! `read.rs` decides; this file waits for the apply).
//!
//! `Node::read_barrier(policy)` asks the core for a read; when the core
//! says `ReadReady { index }`, every entry through `index` was handed to the
//! apply task before that, so a barrier queued behind them on the apply
//! task resolves exactly when the state machine has applied through it.
//! The caller then reads its own state: it reflects every write that
//! completed before the barrier was asked.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::apply_loop::ApplyTask;
use super::error::Error;
use super::group::GroupDriver;
use crate::core::{Instant, LogIndex, NodeId, ReadError, ReadFailure, ReadId, ReadPolicy};

/// Completes a read barrier with the read index the state machine reached.
pub(crate) type ReadReply = oneshot::Sender<Result<LogIndex, Error>>;

/// Barriers waiting on the core, by read id.
pub(crate) type PendingReads = BTreeMap<ReadId, ReadReply>;

impl GroupDriver {
    /// A client asks for a read barrier.
    pub(crate) fn on_read(&mut self, policy: ReadPolicy, reply: ReadReply, now: Instant) {
        match self.raft.read(now, policy) {
            Ok(id) => {
                self.pending_reads.insert(id, reply);
            }
            Err(ReadError::NotLeader { leader_hint }) => {
                let _ = reply.send(Err(self.not_leader(leader_hint)));
            }
            Err(ReadError::Busy { pending_max }) => {
                let _ = reply.send(Err(Error::Busy { pending_max }));
            }
        }
    }

    /// The core confirmed read `id` at `index`: the barrier resolves once
    /// the apply task got through what it was handed before.
    pub(crate) fn on_read_ready(&mut self, id: ReadId, index: LogIndex) {
        if let Some(reply) = self.pending_reads.remove(&id) {
            let _ = self.apply.send(ApplyTask::ReadBarrier { index, reply });
        }
    }

    /// The core failed read `id`.
    pub(crate) fn on_read_failed(&mut self, id: ReadId, error: ReadFailure) {
        let Some(reply) = self.pending_reads.remove(&id) else {
            return;
        };
        let error = match error {
            ReadFailure::NotLeader { leader_hint } => self.not_leader(leader_hint),
            ReadFailure::LeadershipLost { leader_hint } => Error::LeadershipLost {
                leader: leader_hint,
            },
            ReadFailure::Timeout => Error::Timeout,
        };
        let _ = reply.send(Err(error));
    }

    fn not_leader(&self, leader: Option<NodeId>) -> Error {
        let leader_addr = leader.and_then(|l| self.peers.get(&l).copied());
        Error::NotLeader {
            leader,
            leader_addr,
        }
    }
}
