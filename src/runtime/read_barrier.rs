//! Read barriers: the runtime half of reads without the log (the core's
//! `read.rs` decides; this file hands the core's answers out).
//!
//! `Node::read_barrier(policy)` asks the core for a read; when the core
//! says `ReadReady { index }`, every entry through `index` was handed to the
//! apply task before that, so the barrier resolves once the state machine
//! has applied through it. The caller then reads its own state: it reflects
//! every write that completed before the barrier was asked.
//!
//! A `Lease` barrier on a leader whose lease holds never reaches this task
//! (`read_lease.rs`); a `ReadIndex` barrier, or a `Lease` one outside the
//! lease, joins a read batch: one read in the core for every barrier that
//! joined (`read_batch.rs`). `Log` barriers and queries come here one by
//! one. All resolve on the apply task, queued behind the entries they must
//! see.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::apply_loop::ApplyTask;
use super::error::Error;
use super::group::GroupDriver;
use crate::core::{Instant, LogIndex, NodeId, ReadError, ReadFailure, ReadId, ReadPolicy};

/// Completes a read barrier with the read index the state machine reached.
pub(crate) type ReadReply = oneshot::Sender<Result<LogIndex, Error>>;

/// Completes a query with the state machine's answer.
pub(crate) type QueryReply = oneshot::Sender<Result<Bytes, Error>>;

/// Who waits for a read the core is confirming.
pub(crate) enum ReadWaiter {
    /// A barrier: the caller reads its own state once it resolves.
    Barrier(ReadReply),
    /// A query the apply task answers from the state machine once it has
    /// applied through the read index (a client read that skips the log).
    Query { query: Bytes, reply: QueryReply },
}

impl ReadWaiter {
    /// Fails the read: nothing was served.
    pub(crate) fn fail(self, error: Error) {
        match self {
            ReadWaiter::Barrier(reply) => {
                let _ = reply.send(Err(error));
            }
            ReadWaiter::Query { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// Read batches a group keeps in its core at once. One: readers arriving
/// while its round is out join the next batch, started when it resolves.
/// Two (the next batch queued in the core for the next round) measured
/// worse, 0.47 of main's ReadIndex reads/s at the leader in memory against
/// 2.06 for one: a reader arriving once the queued batch started waited
/// for the round after next. Two with two rounds in flight in the core
/// (3337669) measured 0.30: batches shrank to the few readers that rejoined
/// first (README, "Reads without the log").
const BATCHES_IN_FLIGHT: usize = 1;

/// Reads waiting on the core, by read id.
pub(crate) type PendingReads = BTreeMap<ReadId, ReadWaiter>;

/// Barriers the core confirmed in one drain of its actions whose index the
/// state machine has not applied yet: they go to the apply task together,
/// as one task, once the drain ends (behind every entry it handed out).
pub(crate) type ReadyBarriers = Vec<(LogIndex, ReadReply)>;

impl GroupDriver {
    /// A client asks for a read barrier or a query.
    pub(crate) fn on_read(&mut self, policy: ReadPolicy, waiter: ReadWaiter, now: Instant) {
        match self.raft.read(now, policy) {
            Ok(id) => {
                self.pending_reads.insert(id, waiter);
            }
            Err(ReadError::NotLeader { leader_hint }) => {
                waiter.fail(self.not_leader(leader_hint));
            }
            Err(ReadError::Busy { pending_max }) => {
                waiter.fail(Error::Busy { pending_max });
            }
        }
    }

    /// The core confirmed read `id` at `index`: it resolves once the apply
    /// task got through what it was handed before. Barriers wait for the
    /// end of the drain and go together (one task, one wake-up of the apply
    /// task for a round's worth of reads); a query goes at once.
    pub(crate) fn on_read_ready(&mut self, id: ReadId, index: LogIndex) {
        if let Some(batch) = self.take_batch_read(id) {
            return self.finish_read_batch(batch, Ok(index));
        }
        match self.pending_reads.remove(&id) {
            Some(ReadWaiter::Barrier(reply)) => self.ready_barriers.push((index, reply)),
            Some(ReadWaiter::Query { query, reply }) => {
                let task = ApplyTask::Query {
                    index,
                    query,
                    reply,
                };
                let _ = self.apply.try_send(task);
            }
            None => {}
        }
    }

    /// Hands the barriers confirmed during a drain to the apply task, as
    /// one task (called once the drain ends).
    pub(crate) fn flush_ready_barriers(&mut self) {
        if !self.ready_barriers.is_empty() {
            let barriers = std::mem::take(&mut self.ready_barriers);
            let _ = self.apply.try_send(ApplyTask::ReadBarriers(barriers));
        }
    }

    /// Publishes the core's lease for reads and its commit index for
    /// `Node::read_barrier(Lease)` to serve without this task (see
    /// `read_lease.rs` for why this runs before any action is performed).
    pub(crate) fn publish_read_lease(&self) {
        let lease = &self.shared.read_lease;
        match self.raft.lease_read_until() {
            Some(end) => lease.grant(self.raft.log().committed(), end),
            None => lease.revoke(),
        }
    }

    /// The core failed read `id`.
    pub(crate) fn on_read_failed(&mut self, id: ReadId, error: ReadFailure) {
        let error = match error {
            ReadFailure::NotLeader { leader_hint } => self.not_leader(leader_hint),
            ReadFailure::LeadershipLost { leader_hint } => Error::LeadershipLost {
                leader: leader_hint,
            },
            ReadFailure::Timeout => Error::Timeout,
        };
        if let Some(batch) = self.take_batch_read(id) {
            return self.finish_read_batch(batch, Err(error));
        }
        if let Some(waiter) = self.pending_reads.remove(&id) {
            waiter.fail(error);
        }
    }

    /// Starts a read batch if a reader wants one and fewer than
    /// [`BATCHES_IN_FLIGHT`] are: one core read for every reader that joined
    /// since the last one started (`read_batch.rs`).
    pub(crate) fn maybe_start_read_batch(&mut self) {
        if self.batch_reads.len() >= BATCHES_IN_FLIGHT {
            return;
        }
        let Some(batch) = self.shared.read_batches.start_if_wanted() else {
            return;
        };
        // Counted before the core fixes the read index: the order the
        // module doc of `read_batch.rs` rests on.
        let now = self.clock.local(tokio::time::Instant::now());
        let error = match self.raft.read(now, ReadPolicy::ReadIndex) {
            Ok(id) => return self.batch_reads.push_back((batch, id)),
            Err(ReadError::NotLeader { leader_hint }) => self.not_leader(leader_hint),
            Err(ReadError::Busy { pending_max }) => Error::Busy { pending_max },
        };
        // Published behind the entries already handed out, as every outcome.
        let _ = self.apply.try_send(ApplyTask::ReadBatch {
            batch,
            outcome: Err(error),
        });
    }

    /// The batch whose core read is `id`, no longer in flight.
    fn take_batch_read(&mut self, id: ReadId) -> Option<u64> {
        let at = self.batch_reads.iter().position(|&(_, read)| read == id)?;
        self.batch_reads.remove(at).map(|(batch, _)| batch)
    }

    /// Batch `batch` resolved: its outcome goes to the apply task (which
    /// wakes its readers once applied reached it), and the next batch
    /// starts if a reader joined meanwhile.
    fn finish_read_batch(&mut self, batch: u64, outcome: Result<LogIndex, Error>) {
        let _ = self.apply.try_send(ApplyTask::ReadBatch { batch, outcome });
        self.maybe_start_read_batch();
    }

    fn not_leader(&self, leader: Option<NodeId>) -> Error {
        let leader_addr = leader.and_then(|l| self.peers.get(&l).copied());
        Error::NotLeader {
            leader,
            leader_addr,
        }
    }
}
