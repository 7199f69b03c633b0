//! `Node`: the handle a service holds on one Raft group member (braft's
//! `Node`): apply commands, ask who leads, read status, shut down.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::apply_loop::Applied;
use super::error::Error;
use super::group::{GroupInput, SharedState};
use super::group_id::GroupId;
use crate::core::{LogIndex, NodeId, Status};

/// A handle on one member of a Raft group running on a
/// [`NodeManager`](super::NodeManager). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Node {
    pub(crate) group: GroupId,
    pub(crate) id: NodeId,
    pub(crate) inbox: mpsc::Sender<GroupInput>,
    pub(crate) shared: Arc<SharedState>,
}

impl Node {
    /// The group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Replicates `command` and applies it; resolves once the local state
    /// machine applied it, with its index and the state machine's response.
    ///
    /// # Errors
    /// `NotLeader` (with the leader's address when known) on a non-leader;
    /// `Overwritten` when a new leader replaced the entry; `NotRunning` when
    /// the group had stopped (not applied); `Shutdown` when it stops with
    /// the command in flight (it may or may not have committed);
    /// `Storage` after a storage failure.
    pub async fn apply(&self, command: Bytes) -> Result<Applied, Error> {
        let (reply, response) = oneshot::channel();
        self.inbox
            .send(GroupInput::Propose { command, reply })
            .await
            .map_err(|_| Error::NotRunning)?;
        response.await.map_err(|_| Error::Shutdown)?
    }

    /// The leader this member knows of, if any.
    pub fn leader(&self) -> Option<NodeId> {
        *self.shared.leader.lock().expect("leader lock")
    }

    /// The highest index the state machine has applied.
    pub fn applied_index(&self) -> LogIndex {
        LogIndex(self.shared.applied_index.load(Ordering::Acquire))
    }

    /// The member's role, term, log pointers and (when leading) per-peer progress.
    ///
    /// # Errors
    /// `NotRunning` if the group stopped.
    pub async fn status(&self) -> Result<Status, Error> {
        let (reply, status) = oneshot::channel();
        self.inbox
            .send(GroupInput::Status { reply })
            .await
            .map_err(|_| Error::NotRunning)?;
        status.await.map_err(|_| Error::NotRunning)
    }

    /// Stops the member: pending requests fail with `Shutdown`, queued disk
    /// writes finish, the state machine gets `on_shutdown`. Resolves once
    /// all of that is done; a no-op on a stopped member.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.inbox.send(GroupInput::Shutdown { done }).await.is_ok() {
            let _ = finished.await;
        }
    }
}
