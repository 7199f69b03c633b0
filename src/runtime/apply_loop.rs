//! The apply task (braft's `FSMCaller`): runs the user's state machine on
//! committed entries in log order, batched, and completes each client's
//! request exactly once with its response. It also takes snapshot views
//! (every N entries or on request) and loads installed snapshots, in the
//! same order, so a snapshot is always of exactly the applied prefix; a
//! view is written out on a thread of its own, at a lower CPU priority
//! than the workers, while applies go on (one save
//! at a time), and the group learns of it once it is durable.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use super::blocking::{run_in_background, state_machine_call};
use super::error::Error;
use super::group::{GroupInput, SharedState};
use super::queue;
use super::snapshot_policy::{ENTRY_OVERHEAD_BYTES, SinceSnapshot, SnapshotPolicy};
use super::snapshot_storage::SnapshotStorage;
use super::snapshot_view::SnapshotView;
use super::state_machine::{Committed, QueryError, SnapshotError, StateMachine};
use super::throttle::Throttle;
use crate::core::{
    Entry, EntryBatch, EntryPayload, LogId, LogIndex, Membership, NodeId, Role, SnapshotInfo, Term,
};
use crate::storage::StorageError;

/// A client's result: where its command landed and what the state machine
/// answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The command's log index.
    pub index: LogIndex,
    /// The state machine's response.
    pub response: Bytes,
}

/// Completes a client request.
pub(crate) type ProposalReply = oneshot::Sender<Result<Applied, Error>>;

/// Completes a snapshot request with the snapshot's last entry.
pub(crate) type SnapshotReply = oneshot::Sender<Result<LogId, Error>>;

/// Work for the apply task, in log order.
pub(crate) enum ApplyTask {
    /// Committed entries, with the waiting client (if any) of each.
    Entries {
        entries: EntryBatch,
        replies: Vec<Option<ProposalReply>>,
    },
    /// The node's role changed.
    Role {
        role: Role,
        term: Term,
        leader: Option<NodeId>,
    },
    /// Save a snapshot now (a user's request).
    Snapshot { reply: SnapshotReply },
    /// Replace the state with a snapshot pulled from the leader and made
    /// durable (the newest in the group's snapshot storage).
    Install { snapshot: SnapshotInfo },
    /// Read barriers, each resolving once everything through its index is
    /// applied (queued behind the entries that reach them).
    ReadBarriers(super::read_barrier::ReadyBarriers),
    /// A read batch finished (`read_batch.rs`): published once everything
    /// through its index is applied (queued as a barrier is).
    ReadBatch {
        batch: u64,
        outcome: Result<LogIndex, Error>,
    },
    /// A query, answered by the state machine once everything through
    /// `index` is applied (queued as a barrier is).
    Query {
        index: LogIndex,
        query: Bytes,
        reply: super::read_barrier::QueryReply,
    },
    /// The group stopped on an error.
    Failed(Error),
}

/// The apply task's state.
pub(crate) struct ApplyLoop {
    pub(crate) sm: Box<dyn StateMachine>,
    pub(crate) snapshots: Arc<dyn SnapshotStorage>,
    /// Where saved and installed snapshots are reported.
    pub(crate) group: queue::Sender<GroupInput>,
    pub(crate) applied_index: Arc<AtomicU64>,
    /// The group's watchable status and metrics.
    pub(crate) shared: Arc<SharedState>,
    /// The last entry applied (or loaded from a snapshot).
    pub(crate) last_applied: LogId,
    /// The configuration in effect at `last_applied`.
    pub(crate) membership: Membership,
    pub(crate) policy: SnapshotPolicy,
    /// What was applied since the last snapshot.
    pub(crate) since_snapshot: SinceSnapshot,
    /// When the last snapshot was taken (or the task started).
    pub(crate) snapshot_at: Instant,
    /// The save being written out, if any.
    pub(crate) saving: Option<JoinHandle<()>>,
    /// The server's save rate, which the save's file writes take from.
    pub(crate) save_throttle: Throttle,
}

impl ApplyLoop {
    /// Runs until the group closes the queue. Boxed, and the rare snapshot
    /// work boxed in turn, so that every member's task future stays small
    /// (an async fn's future holds its arguments twice; issue 15).
    pub(crate) async fn run(
        mut self: Box<Self>,
        mut tasks: queue::Receiver<ApplyTask>,
    ) -> Box<dyn StateMachine> {
        let mut leading = false;
        let mut following: Option<NodeId> = None;
        // The snapshot period's timer, kept while its deadline stands: a
        // fresh sleep for every task read the clock and registered a timer
        // each time, a cost every read barrier paid.
        let mut timer: Option<(Instant, Pin<Box<Sleep>>)> = None;
        loop {
            let task = match self.policy.period_after(self.since_snapshot) {
                Some(period) => {
                    let deadline = self.snapshot_at + period;
                    if timer.as_ref().is_none_or(|(at, _)| *at != deadline) {
                        timer = Some((deadline, Box::pin(tokio::time::sleep_until(deadline))));
                    }
                    let (_, sleep) = timer.as_mut().expect("set above");
                    // Biased: an unbiased select draws its order from
                    // tokio's per-thread RNG, which the simulator's seed
                    // does not set (runs with quiet groups differed between
                    // processes); a queued task goes first.
                    tokio::select! {
                        biased;
                        task = tasks.recv() => task,
                        () = sleep.as_mut() => {
                            timer = None;
                            self.maybe_save(true).await;
                            continue;
                        }
                    }
                }
                None => tasks.recv().await,
            };
            let Some(task) = task else { break };
            let may_block = self.sm.may_block();
            let sm = self.sm.as_mut();
            match task {
                ApplyTask::Entries { entries, replies } => {
                    let Some(last) = entries.last().map(|e| e.id) else {
                        continue;
                    };
                    self.since_snapshot.entries += entries.len() as u64;
                    self.since_snapshot.log_bytes += entries.iter().map(entry_bytes).sum::<u64>();
                    if let Some(m) =
                        state_machine_call(may_block, || apply_batch(sm, entries, replies))
                    {
                        self.membership = m;
                    }
                    self.last_applied = last;
                    self.applied_index.store(last.index.0, Ordering::Release);
                    self.shared.read_lease.on_applied();
                    self.shared.status.set_applied(last.index);
                    self.maybe_save(false).await;
                }
                ApplyTask::Role { role, term, leader } => {
                    if leading && role != Role::Leader {
                        leading = false;
                        sm.on_leader_stop();
                    }
                    if let Some(old) =
                        following.filter(|&old| Some(old) != leader || role != Role::Follower)
                    {
                        following = None;
                        sm.on_stop_following(old);
                    }
                    match (role, leader) {
                        (Role::Leader, _) if !leading => {
                            leading = true;
                            sm.on_leader_start(term);
                        }
                        (Role::Follower, Some(l)) if following.is_none() => {
                            following = Some(l);
                            sm.on_start_following(l, term);
                        }
                        _ => {}
                    }
                }
                ApplyTask::Snapshot { reply } => Box::pin(self.save_snapshot(Some(reply))).await,
                ApplyTask::Install { snapshot } => Box::pin(self.install(snapshot)).await,
                ApplyTask::ReadBarriers(barriers) => {
                    for (index, reply) in barriers {
                        let _ = reply.send(reached(self.last_applied.index, index));
                    }
                }
                ApplyTask::ReadBatch { batch, outcome } => {
                    let outcome = outcome.and_then(|index| reached(self.last_applied.index, index));
                    self.shared.read_batches.finish(batch, outcome);
                }
                ApplyTask::Query {
                    index,
                    query,
                    reply,
                } => {
                    let result = reached(self.last_applied.index, index).and_then(|_| {
                        state_machine_call(may_block, || sm.on_query(&query)).map_err(Error::Query)
                    });
                    if matches!(result, Err(Error::Query(QueryError::Unsupported))) {
                        self.shared
                            .queries_unsupported
                            .store(true, Ordering::Relaxed);
                    }
                    let _ = reply.send(result);
                }
                ApplyTask::Failed(error) => sm.on_error(&error),
            }
        }
        // A save under way must end before storage is handed back (a
        // restart would race it).
        if let Some(saving) = self.saving.take() {
            let _ = saving.await;
        }
        // Nothing is applied from here on: readers waiting for an index
        // fail instead of waiting forever (the group task may be gone
        // without closing it, e.g. after a panic).
        self.shared.read_lease.close();
        self.shared.read_batches.close();
        self.sm.on_shutdown();
        self.sm
    }

    /// Starts a save if the policy says one is due. One save at a time: a
    /// due one waits for the next batch, or (`wait`, from the timer, which
    /// would otherwise fire again at once) for the save under way.
    async fn maybe_save(&mut self, wait: bool) {
        let elapsed = self.snapshot_at.elapsed();
        if !self.policy.due(self.since_snapshot, elapsed) {
            return;
        }
        if wait || self.saving.as_ref().is_none_or(|s| s.is_finished()) {
            Box::pin(self.save_snapshot(None)).await;
        }
    }

    /// Takes a view of the applied state and starts writing it out as a
    /// durable snapshot (after the save under way, if any); the group hears
    /// of it, and `reply` gets its last entry, once it is durable.
    async fn save_snapshot(&mut self, reply: Option<SnapshotReply>) {
        if let Some(previous) = self.saving.take() {
            let _ = previous.await;
        }
        self.since_snapshot = SinceSnapshot::default();
        self.snapshot_at = Instant::now();
        let last = self.last_applied;
        let view = match state_machine_call(self.sm.may_block(), || self.sm.on_snapshot_save()) {
            Ok(view) => view,
            Err(e) => {
                if matches!(e, SnapshotError::Unsupported) {
                    // Never ask again on our own.
                    self.policy = SnapshotPolicy::never();
                }
                let error = Error::StateMachine(format!("saving a snapshot: {e}"));
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error));
                }
                return;
            }
        };
        let save = Save {
            snapshots: Arc::clone(&self.snapshots),
            snapshot: SnapshotInfo {
                last_included: last,
                membership: self.membership.clone().into(),
            },
            group: self.group.clone(),
            shared: Arc::clone(&self.shared),
            throttle: self.save_throttle.clone(),
        };
        self.saving = Some(tokio::spawn(async move {
            let result = save.run(view).await;
            if let Err(e) = &result {
                tracing::warn!(%last, error = %e, "snapshot save failed");
            }
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        }));
    }

    /// Loads an installed snapshot and tells the group.
    async fn install(&mut self, snapshot: SnapshotInfo) {
        let report = match self.load(&snapshot) {
            Ok(bytes) => {
                self.shared.metrics.observe_snapshot(true, bytes);
                self.shared.status.set_applied(snapshot.last_included.index);
                self.last_applied = snapshot.last_included;
                self.membership = Membership::clone(&snapshot.membership);
                self.since_snapshot = SinceSnapshot::default();
                self.snapshot_at = Instant::now();
                self.applied_index
                    .store(snapshot.last_included.index.0, Ordering::Release);
                self.shared.read_lease.on_applied();
                GroupInput::SnapshotInstalled(snapshot)
            }
            Err(e) => {
                tracing::error!(last = %snapshot.last_included, error = %e, "loading a snapshot failed");
                GroupInput::SnapshotInstallFailed(snapshot)
            }
        };
        let _ = self.group.send(report).await;
    }

    /// Loads the newest snapshot in storage, which must be `snapshot`;
    /// returns its bytes.
    fn load(&mut self, snapshot: &SnapshotInfo) -> Result<u64, String> {
        let reader = self
            .snapshots
            .open()
            .map_err(|e| e.to_string())?
            .filter(|r| r.meta().last_included == snapshot.last_included)
            .ok_or("the installed snapshot is no longer the newest")?;
        let may_block = self.sm.may_block();
        state_machine_call(may_block, || {
            self.sm.on_snapshot_load(snapshot.last_included, &reader)
        })
        .map_err(|e| e.to_string())?;
        Ok(reader.meta().files.iter().map(|f| f.len).sum())
    }
}

/// A snapshot save under way, off the apply task.
struct Save {
    snapshots: Arc<dyn SnapshotStorage>,
    snapshot: SnapshotInfo,
    group: queue::Sender<GroupInput>,
    shared: Arc<SharedState>,
    throttle: Throttle,
}

impl Save {
    /// Writes `view` off the runtime's workers at a lower CPU priority
    /// (`run_in_background`), commits it, and tells the group.
    async fn run(self, view: Box<dyn SnapshotView>) -> Result<LogId, Error> {
        let last = self.snapshot.last_included;
        let snapshots = Arc::clone(&self.snapshots);
        let membership = Membership::clone(&self.snapshot.membership);
        let throttle = self.throttle.clone();
        let meta = run_in_background(move || {
            let mut writer = snapshots.begin(false).map_err(StorageError::from_failure)?;
            if throttle.bytes_per_sec().is_some() {
                writer.pace_writes(Arc::new(move |bytes| throttle.acquire_blocking(bytes)));
            }
            view.write_to(&mut writer)
                .map_err(|e| Error::StateMachine(format!("saving snapshot {last}: {e}")))?;
            snapshots
                .commit(writer, last, membership)
                .map_err(|e| Error::Storage(StorageError::from_failure(e)))
        })
        .await
        .unwrap_or(Err(Error::Storage(StorageError::Panicked {
            during: "snapshot save",
        })))?;
        let bytes = meta.files.iter().map(|f| f.len).sum();
        self.shared.metrics.observe_snapshot(false, bytes);
        let _ = self
            .group
            .send(GroupInput::SnapshotSaved(self.snapshot))
            .await;
        Ok(last)
    }
}

/// A read at `index` may be served once the state machine applied through
/// it. The core hands a read out after the entries that reach its index,
/// so it is always reached here; a shortfall would be a stale read, so it
/// fails instead. Returns the index applied.
fn reached(applied: LogIndex, index: LogIndex) -> Result<LogIndex, Error> {
    match applied >= index {
        true => Ok(applied),
        false => Err(Error::StateMachine(format!(
            "read at {index} before its apply (applied {applied})"
        ))),
    }
}

/// An entry's bytes as the snapshot policy counts them.
fn entry_bytes(entry: &Entry) -> u64 {
    let payload = match &entry.payload {
        EntryPayload::Command(data) => data.len() as u64,
        EntryPayload::Config(_) | EntryPayload::Noop => 0,
    };
    payload + ENTRY_OVERHEAD_BYTES
}

/// Applies a batch; returns the last configuration it carried.
fn apply_batch(
    sm: &mut dyn StateMachine,
    entries: EntryBatch,
    replies: Vec<Option<ProposalReply>>,
) -> Option<Membership> {
    let mut membership = None;
    // Commands go to the state machine in runs between configuration
    // entries, so that each callback sees the log order.
    let mut run: Vec<Committed> = Vec::with_capacity(entries.len());
    let mut run_replies: Vec<Option<ProposalReply>> = Vec::with_capacity(entries.len());
    for (entry, reply_to) in entries.iter().zip(replies) {
        match &entry.payload {
            EntryPayload::Command(data) => {
                let data = data.clone();
                run.push(Committed { id: entry.id, data });
                run_replies.push(reply_to);
            }
            EntryPayload::Config(m) => {
                flush_run(sm, &mut run, &mut run_replies);
                sm.on_configuration_committed(m);
                membership = Some(Membership::clone(m));
            }
            EntryPayload::Noop => {}
        }
    }
    flush_run(sm, &mut run, &mut run_replies);
    membership
}

fn flush_run(
    sm: &mut dyn StateMachine,
    run: &mut Vec<Committed>,
    replies: &mut Vec<Option<ProposalReply>>,
) {
    if run.is_empty() {
        return;
    }
    let responses = sm.on_apply(run);
    let broken = responses.len() != run.len();
    let mut responses = responses.into_iter();
    for (command, reply_to) in run.drain(..).zip(replies.drain(..)) {
        let result = match responses.next() {
            Some(response) if !broken => Ok(Applied {
                index: command.id.index,
                response,
            }),
            _ => Err(Error::StateMachine(
                "on_apply returned a response count unlike the command count".into(),
            )),
        };
        if let Some(reply_to) = reply_to {
            let _ = reply_to.send(result);
        }
    }
}
