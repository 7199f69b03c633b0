//! Membership changes and leadership transfer on the group task (braft's
//! `CliService` entry points, driver half): admin requests go to the core,
//! and a change's client is answered once the change is complete — for a
//! joint change, once the leader has left the joint configuration.

use std::net::SocketAddr;

use tokio::sync::oneshot;

use super::error::Error;
use super::group::GroupDriver;
use crate::core::{Entry, EntryPayload, Instant, LogId, Membership, NodeId};

/// An admin request for a group member.
#[derive(Clone, Debug)]
pub(crate) enum AdminRequest {
    /// Move to this simple configuration (voters and learners).
    ChangeMembership(Membership),
    /// Add a learner, reachable at this address.
    AddLearner(NodeId, SocketAddr),
    /// Promote a caught-up learner to voter.
    PromoteLearner(NodeId),
    /// Remove a voter or learner.
    RemoveMember(NodeId),
    /// Unsafe: force this configuration on this node.
    ResetPeers(Membership),
    /// Hand leadership to this voter.
    TransferLeadership(NodeId),
    /// Learn (or change) a member's address.
    SetAddress(NodeId, SocketAddr),
}

/// Answers an admin request: the log id of the configuration entry that
/// completed the change, or `None` for requests without one.
pub(crate) type AdminReply = oneshot::Sender<Result<Option<LogId>, Error>>;

/// A membership change waiting to complete.
pub(crate) struct PendingChange {
    /// The first configuration entry the change appended.
    first: LogId,
    /// Whether that entry (a joint configuration) has been applied.
    joint_applied: bool,
    reply: AdminReply,
}

impl GroupDriver {
    /// Runs an admin request; the reply comes now, or for changes, once
    /// the change completes.
    pub(crate) fn on_admin(&mut self, request: AdminRequest, reply: AdminReply, now: Instant) {
        let change = match request {
            AdminRequest::SetAddress(id, addr) => {
                self.peers.insert(id, addr);
                self.publish_peer_servers();
                let _ = reply.send(Ok(None));
                return;
            }
            AdminRequest::TransferLeadership(to) => {
                return reply_at_once(reply, self.raft.transfer_leadership(now, to));
            }
            AdminRequest::ResetPeers(membership) => {
                return reply_at_once(reply, self.raft.reset_peers(now, membership));
            }
            AdminRequest::ChangeMembership(target) => self.raft.change_membership(now, target),
            AdminRequest::AddLearner(id, addr) => {
                self.peers.insert(id, addr);
                self.publish_peer_servers();
                self.raft.add_learner(now, id)
            }
            AdminRequest::PromoteLearner(id) => self.raft.promote_learner(now, id),
            AdminRequest::RemoveMember(id) => self.raft.remove_member(now, id),
        };
        match change {
            Ok(first) => self.pending_changes.push(PendingChange {
                first,
                joint_applied: false,
                reply,
            }),
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// Answers the changes that these applied entries complete (or show
    /// overwritten).
    pub(crate) fn resolve_changes(&mut self, applied: &[Entry]) {
        for entry in applied {
            let EntryPayload::Config(membership) = &entry.payload else {
                continue;
            };
            let mut waiting = Vec::new();
            for mut change in std::mem::take(&mut self.pending_changes) {
                let done = if entry.id == change.first {
                    change.joint_applied = membership.is_joint();
                    !membership.is_joint()
                } else if entry.id.index == change.first.index {
                    let _ = change.reply.send(Err(Error::Overwritten(change.first)));
                    continue;
                } else {
                    // The leader leaves the joint configuration by itself.
                    entry.id.index > change.first.index
                        && change.joint_applied
                        && !membership.is_joint()
                };
                if done {
                    let _ = change.reply.send(Ok(Some(entry.id)));
                } else {
                    waiting.push(change);
                }
            }
            self.pending_changes = waiting;
        }
    }

    /// Fails every waiting change (the group stops).
    pub(crate) fn fail_changes(&mut self, error: &Error) {
        for change in std::mem::take(&mut self.pending_changes) {
            let _ = change.reply.send(Err(error.clone()));
        }
    }
}

/// Answers a request that completes when the core accepts it (no entry to
/// wait for).
fn reply_at_once<E: Into<Error>>(reply: AdminReply, result: Result<(), E>) {
    let _ = reply.send(result.map(|()| None).map_err(Into::into));
}
