//! What the group's driver notes for operators as it runs: the watchable
//! status it publishes, the metrics it counts, and braft `/raft_stat`
//! details (when each peer was last heard from). Kept apart from the
//! driver so that the driver carries one call per hook.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;

use super::error::Error;
use super::group::{GroupInput, SharedState};
use super::metrics::{CommitClock, RoleCounter};
use super::node::Node;
use super::watch::Published;
use crate::core::{Instant, LogIndex, NodeId, RaftNode, Role, Status};

/// A member's full status with what only the driver knows: braft's
/// `/raft_stat` for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDetails {
    /// The core's status (role, term, log pointers, per-peer progress).
    pub status: Status,
    /// Proposals accepted here and waiting to be applied.
    pub pending_proposals: usize,
    /// How long ago each peer's last message arrived (`None`: never since
    /// this member started), by peer.
    pub last_contact: BTreeMap<NodeId, Option<Duration>>,
    /// The member's address book: every node's Raft address it knows.
    pub addresses: BTreeMap<NodeId, SocketAddr>,
}

/// The driver's operator-facing bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct GroupObserver {
    published: Published,
    commits: CommitClock,
    roles: RoleCounter,
    /// When each peer's last message arrived.
    last_contact: BTreeMap<NodeId, Instant>,
}

impl GroupObserver {
    /// A message from `from` arrived at `now`.
    pub(crate) fn on_message(&mut self, from: NodeId, now: Instant) {
        match self.last_contact.get_mut(&from) {
            Some(at) => *at = now,
            None => {
                self.last_contact.insert(from, now);
            }
        }
    }

    /// The core accepted a proposal at `index`.
    pub(crate) fn on_proposed(&mut self, index: LogIndex, now: Instant, shared: &SharedState) {
        let metrics = &shared.metrics;
        metrics.add(&metrics.proposals, 1);
        if metrics.enabled {
            self.commits.on_proposed(index, now);
        }
    }

    /// A proposal was refused: this member does not lead.
    pub(crate) fn on_refused(&self, shared: &SharedState) {
        shared.metrics.add(&shared.metrics.proposals_refused, 1);
    }

    /// Entries through `last` were handed to the apply task.
    pub(crate) fn on_committed(&mut self, last: LogIndex, now: Instant, shared: &SharedState) {
        self.commits.on_committed(last, now, &shared.metrics);
    }

    /// The core announced a role, term or leader change.
    pub(crate) fn on_role(&mut self, role: Role, leader: Option<NodeId>, shared: &SharedState) {
        self.roles.on_role(role, leader, &shared.metrics);
        if role != Role::Leader {
            self.commits.clear();
        }
    }

    /// Publishes the watchable status if it changed (once per wake-up).
    pub(crate) fn maybe_publish(
        &mut self,
        raft: &RaftNode,
        peers: &BTreeMap<NodeId, SocketAddr>,
        shared: &SharedState,
    ) {
        self.published
            .maybe_publish(raft, |id| peers.get(&id).copied(), &shared.status);
    }

    /// The details for a `/raft_stat`-style request.
    pub(crate) fn details(
        &self,
        raft: &RaftNode,
        peers: &BTreeMap<NodeId, SocketAddr>,
        pending: usize,
        now: Instant,
    ) -> GroupDetails {
        let status = raft.status();
        let last_contact = status
            .membership
            .voter_ids()
            .into_iter()
            .chain(status.membership.learners.iter().copied())
            .filter(|&id| id != status.id)
            .map(|id| {
                let ago = self
                    .last_contact
                    .get(&id)
                    .map(|&at| now.saturating_duration_since(at));
                (id, ago)
            })
            .collect();
        GroupDetails {
            status,
            pending_proposals: pending,
            last_contact,
            addresses: peers.clone(),
        }
    }
}

impl Node {
    /// This member's status with braft `/raft_stat`'s details: pending
    /// proposals, when each peer was last heard from, the address book.
    ///
    /// # Errors
    /// `NotRunning` if the group stopped.
    pub async fn details(&self) -> Result<GroupDetails, Error> {
        let (reply, details) = oneshot::channel();
        self.inbox
            .send(GroupInput::Details { reply })
            .await
            .map_err(|_| Error::NotRunning)?;
        details.await.map_err(|_| Error::NotRunning)
    }
}
