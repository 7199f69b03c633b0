//! The apply task (braft's `FSMCaller`): runs the user's state machine on
//! committed entries in log order, batched, and completes each client's
//! request exactly once with its response. It also saves snapshots (every
//! N entries or on request) and loads installed ones, in the same order, so
//! a snapshot is always of exactly the applied prefix.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::blocking::run_blocking;
use super::error::Error;
use super::group::{GroupInput, SharedState};
use super::snapshot_storage::SnapshotStorage;
use super::state_machine::{Committed, SnapshotError, SnapshotFiles, StateMachine};
use crate::core::{
    Entry, EntryPayload, LogId, LogIndex, Membership, NodeId, Role, SnapshotInfo, Term,
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
        entries: Vec<Entry>,
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
    /// durable.
    Install {
        snapshot: SnapshotInfo,
        files: SnapshotFiles,
    },
    /// A read barrier: resolves once everything through `index` is
    /// applied (queued behind the entries that reach it).
    ReadBarrier {
        index: LogIndex,
        reply: super::read_barrier::ReadReply,
    },
    /// The group stopped on an error.
    Failed(Error),
}

/// When the apply task saves snapshots on its own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SnapshotPolicy {
    /// Save after this many applied entries; `None`: only on request.
    pub(crate) interval: Option<u64>,
}

/// The apply task's state.
pub(crate) struct ApplyLoop {
    pub(crate) sm: Box<dyn StateMachine>,
    pub(crate) snapshots: Arc<dyn SnapshotStorage>,
    /// Where saved and installed snapshots are reported.
    pub(crate) group: mpsc::Sender<GroupInput>,
    pub(crate) applied_index: Arc<AtomicU64>,
    /// The group's watchable status and metrics.
    pub(crate) shared: Arc<SharedState>,
    /// The last entry applied (or loaded from a snapshot).
    pub(crate) last_applied: LogId,
    /// The configuration in effect at `last_applied`.
    pub(crate) membership: Membership,
    pub(crate) policy: SnapshotPolicy,
    /// Entries applied since the last snapshot.
    pub(crate) since_snapshot: u64,
}

impl ApplyLoop {
    /// Runs until the group closes the queue.
    pub(crate) async fn run(
        mut self,
        mut tasks: mpsc::UnboundedReceiver<ApplyTask>,
    ) -> Box<dyn StateMachine> {
        let mut leading = false;
        let mut following: Option<NodeId> = None;
        while let Some(task) = tasks.recv().await {
            let sm = self.sm.as_mut();
            match task {
                ApplyTask::Entries { entries, replies } => {
                    let Some(last) = entries.last().map(|e| e.id) else {
                        continue;
                    };
                    self.since_snapshot += entries.len() as u64;
                    if let Some(m) = apply_batch(sm, entries, replies) {
                        self.membership = m;
                    }
                    self.last_applied = last;
                    self.applied_index.store(last.index.0, Ordering::Release);
                    self.shared.status.set_applied(last.index);
                    if self
                        .policy
                        .interval
                        .is_some_and(|n| self.since_snapshot >= n)
                    {
                        self.save_snapshot().await.ok();
                    }
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
                ApplyTask::Snapshot { reply } => {
                    let _ = reply.send(self.save_snapshot().await);
                }
                ApplyTask::Install { snapshot, files } => self.install(snapshot, files).await,
                ApplyTask::ReadBarrier { index, reply } => {
                    // The core hands the barrier out after the entries that
                    // reach `index`, so it is always reached here; a
                    // shortfall would be a stale read, so it fails instead.
                    let reached = self.last_applied.index >= index;
                    let result = match reached {
                        true => Ok(self.last_applied.index),
                        false => Err(Error::StateMachine(format!(
                            "read barrier at {index} before its apply (applied {})",
                            self.last_applied.index
                        ))),
                    };
                    let _ = reply.send(result);
                }
                ApplyTask::Failed(error) => sm.on_error(&error),
            }
        }
        self.sm.on_shutdown();
        self.sm
    }

    /// Saves the state as a durable snapshot and tells the group, which
    /// compacts the log.
    async fn save_snapshot(&mut self) -> Result<LogId, Error> {
        self.since_snapshot = 0;
        let last = self.last_applied;
        let files = self.sm.on_snapshot_save().map_err(|e| {
            if e == SnapshotError::Unsupported {
                // Never ask again on our own.
                self.policy.interval = None;
            }
            Error::StateMachine(format!("saving a snapshot: {e}"))
        })?;
        let bytes = files_bytes(&files);
        // Writing and syncing the files may take long: off the workers.
        let snapshots = Arc::clone(&self.snapshots);
        let membership = self.membership.clone();
        run_blocking(move || {
            snapshots
                .save(last, membership, &files)
                .map_err(StorageError::from_failure)
        })
        .await
        .unwrap_or(Err(StorageError::Panicked {
            during: "snapshot save",
        }))?;
        self.shared.metrics.observe_snapshot(false, bytes);
        let snapshot = SnapshotInfo {
            last,
            membership: self.membership.clone(),
        };
        let _ = self.group.send(GroupInput::SnapshotSaved(snapshot)).await;
        Ok(last)
    }

    /// Loads an installed snapshot and tells the group.
    async fn install(&mut self, snapshot: SnapshotInfo, files: SnapshotFiles) {
        let bytes = files_bytes(&files);
        let report = match self.sm.on_snapshot_load(snapshot.last, files) {
            Ok(()) => {
                self.shared.metrics.observe_snapshot(true, bytes);
                self.shared.status.set_applied(snapshot.last.index);
                self.last_applied = snapshot.last;
                self.membership = snapshot.membership.clone();
                self.since_snapshot = 0;
                self.applied_index
                    .store(snapshot.last.index.0, Ordering::Release);
                GroupInput::SnapshotInstalled(snapshot)
            }
            Err(e) => {
                tracing::error!(last = %snapshot.last, error = %e, "loading a snapshot failed");
                GroupInput::SnapshotInstallFailed(snapshot)
            }
        };
        let _ = self.group.send(report).await;
    }
}

/// The bytes of a snapshot's files.
fn files_bytes(files: &SnapshotFiles) -> u64 {
    files.values().map(|b| b.len() as u64).sum()
}

/// Applies a batch; returns the last configuration it carried.
fn apply_batch(
    sm: &mut dyn StateMachine,
    entries: Vec<Entry>,
    replies: Vec<Option<ProposalReply>>,
) -> Option<Membership> {
    let mut membership = None;
    // Commands go to the state machine in runs between configuration
    // entries, so that each callback sees the log order.
    let mut run: Vec<Committed> = Vec::new();
    let mut run_replies: Vec<Option<ProposalReply>> = Vec::new();
    for (entry, reply_to) in entries.into_iter().zip(replies) {
        match entry.payload {
            EntryPayload::Command(data) => {
                run.push(Committed { id: entry.id, data });
                run_replies.push(reply_to);
            }
            EntryPayload::Config(m) => {
                flush_run(sm, &mut run, &mut run_replies);
                sm.on_configuration_committed(&m);
                membership = Some(m);
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
