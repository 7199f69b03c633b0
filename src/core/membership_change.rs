//! Membership changes on the leader: joint consensus, learners, promotion
//! with a catch-up margin, and the unsafe `reset_peers` (braft's
//! `change_peers`, `add_peer`/`remove_peer`, `reset_peers`).
//!
//! Every change of the voter set goes through joint consensus, as braft's
//! `change_peers` does (dissertation §4.3): the leader appends C(old,new);
//! from then on elections and commits need a majority of both halves; once
//! C(old,new) commits the leader appends C(new) by itself; a leader not in
//! C(new) steps down once C(new) commits. Adding or removing a single voter
//! is a convenience over the same machinery. A change of learners alone
//! leaves every quorum as it is, so it is appended as a simple
//! configuration. Configurations take effect when appended (§4.1); the
//! history in `config_manager.rs` rolls them back when truncated.
//!
//! One change at a time: a change is refused while a configuration entry
//! is uncommitted or a joint configuration has not been left.

use std::collections::BTreeSet;

use super::entry::EntryPayload;
use super::error::ConfChangeError;
use super::ids::{LogId, LogIndex, NodeId};
use super::membership::Membership;
use super::node::{RaftNode, RoleState};
use super::progress::Progress;
use super::time::Instant;

impl RaftNode {
    /// Moves the group to the simple configuration `target` (voters and
    /// learners). A change of voters goes through a joint configuration
    /// C(old,new), left automatically once committed; the returned id is the
    /// first configuration entry's. Every voter `target` adds must be a
    /// learner now that acknowledged an append from this leader and is
    /// caught up within `RaftOptions::catchup_margin`
    /// (dissertation §4.2.1: new servers join without a vote and catch up
    /// first, so that the change does not stall commits).
    ///
    /// # Errors
    /// [`ConfChangeError`]: not the leader, a change or transfer in flight,
    /// an invalid or unchanged target, a new voter that is not a caught-up
    /// learner.
    pub fn change_membership(
        &mut self,
        now: Instant,
        target: Membership,
    ) -> Result<LogId, ConfChangeError> {
        self.advance_time(now);
        self.mark_busy();
        self.check_can_change()?;
        self.validate_target(&target)?;
        let current = self.configs.effective().clone();
        let payload = if target.voters == current.voters {
            // Learners only: no quorum changes, no joint phase needed.
            target
        } else {
            Membership {
                voters: target.voters,
                outgoing_voters: current.voters,
                learners: target.learners,
            }
        };
        let id = self.append_as_leader(EntryPayload::Config(payload.into()));
        self.finish_input();
        Ok(id)
    }

    /// Adds `id` as a learner: it receives the log but never votes nor
    /// counts toward a quorum.
    ///
    /// # Errors
    /// As [`change_membership`](Self::change_membership); `AlreadyAMember`.
    pub fn add_learner(&mut self, now: Instant, id: NodeId) -> Result<LogId, ConfChangeError> {
        let mut target = self.configs.effective().clone();
        if target.contains(id) {
            return Err(ConfChangeError::AlreadyAMember { id });
        }
        target.learners.insert(id);
        self.change_membership(now, target)
    }

    /// Promotes the learner `id` to voter (through joint consensus), once it
    /// acknowledged an append from this leader and holds entries within
    /// `catchup_margin` of the leader's last index.
    ///
    /// # Errors
    /// As [`change_membership`](Self::change_membership); `NotAMember` for a
    /// stranger, `AlreadyAMember` for a voter, `LearnerLagging` while it lags.
    pub fn promote_learner(&mut self, now: Instant, id: NodeId) -> Result<LogId, ConfChangeError> {
        let mut target = self.configs.effective().clone();
        if target.is_voter(id) {
            return Err(ConfChangeError::AlreadyAMember { id });
        }
        if !target.learners.remove(&id) {
            return Err(ConfChangeError::NotAMember { id });
        }
        target.voters.insert(id);
        self.change_membership(now, target)
    }

    /// Removes the voter or learner `id` (a voter through joint consensus).
    /// Removing the leader itself is allowed: it steps down once C(new)
    /// commits (dissertation §4.2.2).
    ///
    /// # Errors
    /// As [`change_membership`](Self::change_membership); `NotAMember`;
    /// `EmptyVoters` when removing the last voter.
    pub fn remove_member(&mut self, now: Instant, id: NodeId) -> Result<LogId, ConfChangeError> {
        let mut target = self.configs.effective().clone();
        if !target.voters.remove(&id) && !target.learners.remove(&id) {
            return Err(ConfChangeError::NotAMember { id });
        }
        self.change_membership(now, target)
    }

    /// **Unsafe** disaster recovery (braft's `reset_peers`): forces this
    /// node's configuration to `membership`, without consensus, for a group
    /// that lost a majority for good. The node steps down into a new term;
    /// once elected in `membership` it writes it as its first entry.
    ///
    /// Two nodes reset to disjoint configurations can both elect leaders and
    /// diverge, and entries acknowledged by the lost majority may be lost:
    /// use it only when the lost nodes will never come back, on the
    /// survivors, with the same `membership`.
    ///
    /// # Errors
    /// `EmptyVoters`, or `Invalid` for a joint configuration or a learner
    /// that is also a voter; `TermAtCeiling` when no new term can start.
    pub fn reset_peers(
        &mut self,
        now: Instant,
        membership: Membership,
    ) -> Result<(), ConfChangeError> {
        self.advance_time(now);
        self.mark_busy();
        check_shape(&membership)?;
        let Some(next) = self.term().next() else {
            return Err(ConfChangeError::TermAtCeiling { term: self.term() });
        };
        tracing::warn!(node = %self.id(), ?membership, "reset_peers: configuration forced");
        self.configs.force(self.log.last_index(), membership);
        // What members said of the old configurations no longer applies.
        self.removed_at = None;
        self.become_follower(next, None);
        self.finish_input();
        Ok(())
    }

    /// Refuses a change unless this node leads, is settled in its term, and
    /// no change nor transfer is in flight.
    fn check_can_change(&self) -> Result<(), ConfChangeError> {
        if !matches!(self.role, RoleState::Leader { .. }) {
            return Err(ConfChangeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if let Some(transfer) = &self.transfer {
            return Err(ConfChangeError::TransferInProgress {
                target: transfer.target,
            });
        }
        if self.membership_change_pending() {
            return Err(ConfChangeError::InProgress {
                pending: self.configs.effective_index(),
            });
        }
        // Until an entry of its term commits, a new leader may not know the
        // latest committed configuration (the single-server-change bug of
        // dissertation §4.1's erratum applies to any change).
        if self.log.term_at(self.log.committed()) != Some(self.term()) {
            return Err(ConfChangeError::LeaderNotReady);
        }
        Ok(())
    }

    /// Whether a configuration entry is uncommitted or a joint
    /// configuration has not been left yet.
    pub fn membership_change_pending(&self) -> bool {
        self.configs.effective_index() > self.log.committed() || self.configs.effective().is_joint()
    }

    /// Whether this node may start elections: a voter of the configuration
    /// in effect, or of the one before while the latest is not known to be
    /// committed — a server a pending C(new) removes may still be needed to
    /// elect a leader that finishes the change (dissertation §4.2.2). Its own
    /// vote counts only where it is a voter. Never once a member said a
    /// committed configuration at or after our newest one drops us
    /// (`removed.rs`).
    pub(super) fn may_campaign(&self) -> bool {
        let me = self.id();
        !self.removal_known()
            && (self.configs.effective().is_voter(me)
                || (self.configs.effective_index() > self.log.committed()
                    && self.configs.previous().is_voter(me)))
    }

    fn validate_target(&self, target: &Membership) -> Result<(), ConfChangeError> {
        check_shape(target)?;
        let current = self.configs.effective();
        if target == current {
            return Err(ConfChangeError::Unchanged);
        }
        if !target.learners.is_disjoint(&current.voters) {
            return Err(ConfChangeError::Invalid {
                reason: "a voter cannot become a learner in one change; remove it first",
            });
        }
        let added: BTreeSet<NodeId> = target.voters.difference(&current.voters).copied().collect();
        let RoleState::Leader { progress } = &self.role else {
            unreachable!("checked by check_can_change")
        };
        let last_index = self.log.last_index();
        let margin = self.options.catchup_margin;
        for id in added {
            if !current.learners.contains(&id) {
                return Err(ConfChangeError::NotALearner { id });
            }
            // Only a learner that answered this leader: `matched` starts at
            // 0, within the margin of any short log, for one that never did.
            let (matched, acknowledged) = progress
                .get(&id)
                .map_or((LogIndex(0), false), |p| (p.matched, p.acknowledged));
            if !acknowledged || matched.0.saturating_add(margin) < last_index.0 {
                return Err(ConfChangeError::LearnerLagging {
                    id,
                    matched,
                    acknowledged,
                    last_index,
                    margin,
                });
            }
        }
        Ok(())
    }

    /// Leader: the commit index moved. Leaves a committed joint
    /// configuration by appending C(new) (dissertation §4.3); steps down once
    /// a C(new) that removed this node commits (§4.2.2); stops replicating
    /// to peers a committed configuration removed.
    pub(super) fn on_leader_commit(&mut self) {
        if self.configs.effective_index() > self.log.committed() {
            return;
        }
        // Borrowed, not cloned: this runs on every commit, and only the
        // rare joint case needs a copy.
        let effective = self.configs.effective();
        if effective.is_joint() {
            let new = Membership {
                voters: effective.voters.clone(),
                outgoing_voters: BTreeSet::new(),
                learners: effective.learners.clone(),
            };
            self.append_as_leader(EntryPayload::Config(new.into()));
        } else if !effective.is_voter(self.id()) {
            tracing::info!(node = %self.id(), "removed from the configuration: stepping down");
            self.become_follower(self.term(), None);
        } else {
            self.sync_progress();
        }
    }

    /// Leader: tracks progress for exactly the members of the effective
    /// configuration, plus — while it is uncommitted — those of the one
    /// before, so that members being removed still receive the entry that
    /// removes them and stop campaigning.
    pub(super) fn sync_progress(&mut self) {
        if self.progress_in_sync() {
            return;
        }
        let mut wanted = self.configs.effective().members();
        if self.configs.effective_index() > self.log.committed() {
            wanted.extend(self.configs.previous().members());
        }
        wanted.remove(&self.id());
        // From the last entry (usually the configuration just appended),
        // so that a new peer is probed at once rather than at the next
        // heartbeat.
        let next = self.log.last_index().max(LogIndex(1));
        let (msgs_max, bytes_max) = (
            self.options.inflight_msgs_max,
            self.options.inflight_bytes_max,
        );
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        progress.retain(|id, _| wanted.contains(id));
        for id in wanted {
            progress
                .entry(id)
                .or_insert_with(|| Progress::new(next, msgs_max, bytes_max));
        }
    }
}

impl RaftNode {
    /// Whether the leader tracks exactly the peers `sync_progress` wants
    /// (then it changes nothing). It runs on every commit and almost always
    /// finds so; answering without building the sets saves their
    /// allocations.
    fn progress_in_sync(&self) -> bool {
        let RoleState::Leader { progress } = &self.role else {
            return true;
        };
        let me = self.id();
        let effective = self.configs.effective();
        let committed = self.configs.effective_index() <= self.log.committed();
        if committed && !effective.is_joint() {
            // The usual case, by counting: every tracked peer is wanted and
            // there are as many as wanted. (Voters and learners are
            // disjoint; were they not, the count would come out too high and
            // `sync_progress` would rebuild the map, as it always did.)
            let wanted = effective.voters.len() + effective.learners.len()
                - usize::from(effective.contains(me));
            return progress.len() == wanted
                && progress
                    .keys()
                    .all(|&id| id != me && effective.contains(id));
        }
        let previous = (!committed).then(|| self.configs.previous());
        let wanted = |id: NodeId| {
            id != me && (effective.contains(id) || previous.is_some_and(|p| p.contains(id)))
        };
        progress.keys().all(|&id| wanted(id))
            && std::iter::once(effective)
                .chain(previous)
                .flat_map(|m| m.voters.iter().chain(&m.outgoing_voters).chain(&m.learners))
                .all(|id| *id == me || progress.contains_key(id))
    }
}

/// The rules every target configuration obeys.
fn check_shape(target: &Membership) -> Result<(), ConfChangeError> {
    if target.is_joint() {
        return Err(ConfChangeError::Invalid {
            reason: "a target configuration cannot be joint",
        });
    }
    if target.voters.is_empty() {
        return Err(ConfChangeError::EmptyVoters);
    }
    if !target.learners.is_disjoint(&target.voters) {
        return Err(ConfChangeError::Invalid {
            reason: "a node cannot be both voter and learner",
        });
    }
    Ok(())
}
