//! The apply task (braft's `FSMCaller`): runs the user's state machine on
//! committed entries in log order, batched, and completes each client's
//! request exactly once with its response.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::error::Error;
use super::state_machine::{Committed, StateMachine};
use crate::core::{Entry, EntryPayload, LogIndex, NodeId, Role, Term};

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
pub(crate) type Closure = oneshot::Sender<Result<Applied, Error>>;

/// Work for the apply task, in log order.
pub(crate) enum ApplyTask {
    /// Committed entries, with the waiting client (if any) of each.
    Entries {
        entries: Vec<Entry>,
        closures: Vec<Option<Closure>>,
    },
    /// The node's role changed.
    Role {
        role: Role,
        term: Term,
        leader: Option<NodeId>,
    },
    /// The group stopped on an error.
    Failed(Error),
}

/// Runs the apply loop until the group closes the queue.
pub(crate) async fn run_apply_loop(
    mut sm: Box<dyn StateMachine>,
    mut tasks: mpsc::UnboundedReceiver<ApplyTask>,
    applied_index: Arc<AtomicU64>,
) -> Box<dyn StateMachine> {
    let mut leading = false;
    let mut following: Option<NodeId> = None;
    while let Some(task) = tasks.recv().await {
        match task {
            ApplyTask::Entries { entries, closures } => {
                let last = entries.last().map(|e| e.id.index);
                apply_batch(sm.as_mut(), entries, closures);
                if let Some(last) = last {
                    applied_index.store(last.0, Ordering::Release);
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
            ApplyTask::Failed(error) => sm.on_error(&error),
        }
    }
    sm.on_shutdown();
    sm
}

fn apply_batch(sm: &mut dyn StateMachine, entries: Vec<Entry>, closures: Vec<Option<Closure>>) {
    // Commands go to the state machine in runs between configuration
    // entries, so that each callback sees the log order.
    let mut run: Vec<Committed> = Vec::new();
    let mut run_closures: Vec<Option<Closure>> = Vec::new();
    for (entry, closure) in entries.into_iter().zip(closures) {
        match entry.payload {
            EntryPayload::Command(data) => {
                run.push(Committed { id: entry.id, data });
                run_closures.push(closure);
            }
            EntryPayload::Config(membership) => {
                flush_run(sm, &mut run, &mut run_closures);
                sm.on_configuration_committed(&membership);
            }
            EntryPayload::Noop => {}
        }
    }
    flush_run(sm, &mut run, &mut run_closures);
}

fn flush_run(
    sm: &mut dyn StateMachine,
    run: &mut Vec<Committed>,
    closures: &mut Vec<Option<Closure>>,
) {
    if run.is_empty() {
        return;
    }
    let responses = sm.on_apply(run);
    let broken = responses.len() != run.len();
    let mut responses = responses.into_iter();
    for (command, closure) in run.drain(..).zip(closures.drain(..)) {
        let result = match responses.next() {
            Some(response) if !broken => Ok(Applied {
                index: command.id.index,
                response,
            }),
            _ => Err(Error::StateMachine(
                "on_apply returned a response count unlike the command count".into(),
            )),
        };
        if let Some(closure) = closure {
            let _ = closure.send(result);
        }
    }
}
