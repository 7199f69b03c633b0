//! Leadership transfer (dissertation §3.10; braft's `transfer_leadership_to`).
//!
//! The leader stops accepting proposals, brings the target's log up to its
//! own last entry, then sends it TimeoutNow; the target campaigns at once,
//! skipping pre-vote, and its vote requests carry `leadership_transfer` so
//! that voters skip the leader lease. If no new leader took over within an
//! election timeout, the transfer is abandoned and the leader resumes.

use super::error::TransferError;
use super::ids::NodeId;
use super::message::MessageBody;
use super::node::{RaftNode, RoleState};
use super::time::Instant;

/// A leadership transfer in progress on the leader.
#[derive(Clone, Debug)]
pub(super) struct Transfer {
    /// The voter to hand leadership to.
    pub(super) target: NodeId,
    /// When the transfer is abandoned.
    pub(super) deadline: Instant,
    /// Whether TimeoutNow went out.
    pub(super) timeout_now_sent: bool,
}

impl RaftNode {
    /// Hands leadership to the voter `to`. Proposals are refused until the
    /// transfer ends: when `to` takes over (this node steps down on its
    /// vote request), or after an election timeout, when this node resumes.
    ///
    /// # Errors
    /// [`TransferError`]: not the leader, `to` is this node or not a voter,
    /// or a transfer or membership change is in flight.
    pub fn transfer_leadership(&mut self, now: Instant, to: NodeId) -> Result<(), TransferError> {
        self.advance_time(now);
        self.mark_busy();
        if !matches!(self.role, RoleState::Leader { .. }) {
            return Err(TransferError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if to == self.id() {
            return Err(TransferError::ToSelf);
        }
        if let Some(transfer) = &self.transfer {
            return Err(TransferError::InProgress {
                target: transfer.target,
            });
        }
        if self.membership_change_pending() {
            return Err(TransferError::ConfChangeInProgress);
        }
        if !self.configs.effective().voters.contains(&to) {
            return Err(TransferError::NotAVoter { id: to });
        }
        self.forfeit_lease();
        self.transfer = Some(Transfer {
            target: to,
            deadline: self.now + self.options.election_timeout_max,
            timeout_now_sent: false,
        });
        self.maybe_send_timeout_now(to);
        self.finish_input();
        Ok(())
    }

    /// The target of the leadership transfer in progress, if any.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.as_ref().map(|t| t.target)
    }

    /// Leader: abandons a transfer whose deadline passed; proposals resume.
    pub(super) fn check_transfer_deadline(&mut self) {
        if let Some(transfer) = &self.transfer
            && self.now >= transfer.deadline
        {
            tracing::info!(node = %self.id(), target = %transfer.target, "leadership transfer timed out");
            self.transfer = None;
        }
    }

    /// Leader: sends TimeoutNow to the transfer target once its log holds
    /// every entry of ours, durably.
    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let last = self.log.last_index();
        let RoleState::Leader { progress } = &self.role else {
            return;
        };
        let Some(transfer) = &mut self.transfer else {
            return;
        };
        let caught_up = progress.get(&peer).is_some_and(|p| p.matched == last);
        if transfer.target == peer && caught_up && !transfer.timeout_now_sent {
            transfer.timeout_now_sent = true;
            self.send(peer, MessageBody::TimeoutNow);
        }
    }

    /// TimeoutNow from the leader of our term: campaign at once, without
    /// pre-vote (the leader vouched that our log is up to date).
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        let voter = self.may_campaign();
        if self.leader != Some(from) || !voter || matches!(self.role, RoleState::Leader { .. }) {
            tracing::debug!(node = %self.id(), %from, "TimeoutNow ignored");
            return;
        }
        self.campaign(true);
    }
}
