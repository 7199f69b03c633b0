//! Quiescence (hibernation): a group with nothing to replicate stops its
//! timers (dragonboat's quiesce, CockroachDB's quiescence, TiKV's
//! hibernate regions), so that a server hosting thousands of idle groups
//! pays nothing per tick for them. Off unless
//! [`RaftOptions::quiesce_after`](super::RaftOptions::quiesce_after) is set.
//!
//! **Going quiet.** At a heartbeat deadline, a leader that has been idle
//! (no proposal, read, membership change or transfer) for `quiesce_after`
//! and whose every peer holds and has acknowledged its whole log, which is
//! committed and durable, with nothing pending (proposals, reads, transfer,
//! snapshot installs, a joint or uncommitted configuration), sends each peer
//! a [`MessageBody::Quiesce`] (a heartbeat, with its round) instead of a
//! heartbeat, and goes quiet. A follower goes quiet on its leader's
//! `Quiesce` when its own log is exactly the committed, durable log the
//! leader described; otherwise it stays awake (and its timer will wake the
//! leader, whose answer brings it up to date).
//!
//! **While quiet** a node has no deadline (`poll_timeout` is
//! [`Instant::NEVER`]): a leader sends no heartbeats and runs no quorum
//! check, a follower starts no election. With check-quorum (the vote
//! stickiness that comes with it) a quiet follower refuses every
//! (pre-)vote, as if it had just heard from its leader: the runtime's
//! liveness stands in for the heartbeats (below), and refusing a vote is
//! always safe. Without check-quorum it votes as it would awake.
//!
//! **Waking.** A proposal or read the node accepts (a follower refuses
//! proposals, and stays quiet), a membership change or a leadership
//! transfer wakes a node; so does every message, except that a quiet leader takes
//! heartbeat answers without waking (they answer its own `Quiesce`) and a
//! quiet follower takes vote requests without waking (it refuses them: a
//! peer that missed the `Quiesce` must not pull the group into elections
//! while its leader lives). A leadership transfer's vote request wakes it,
//! and so does one from its leader itself, which campaigns only once it
//! lost its leadership (a restart faster than the driver's liveness can
//! see). A message from an older term wakes nobody: it is answered with
//! the current term, and a follower woken for it while its leader stays
//! quiet would campaign for nothing (a leader back from a long pause sends
//! such messages to every group it led). A driver's report of an
//! unreachable server wakes a leader, and a follower only if the server is
//! its leader's. A woken leader heartbeats again and checks its quorum afresh (no
//! activity from before the quiet period counts); a woken follower
//! restarts its election timer from now.
//!
//! **Liveness comes from the driver.** A quiet follower cannot see its
//! leader die, so the driver must report, with
//! [`RaftNode::handle_peer_unreachable`], when the server of a member is
//! unreachable (the runtime does so from one liveness heartbeat per server
//! pair, shared by all groups). That wakes the node, which then elects a
//! new leader by the usual rules if the old one is really gone.
//!
//! **Safety.** Quiescence only withholds messages and refuses votes; it
//! never grants a vote or serves a read that the protocol without it would
//! not. A quiet leader's lease is not extended: the lease runs from the
//! send time of a round a quorum acknowledged (`read.rs`), and no round is
//! sent while quiet, so after `election_timeout_min - max_clock_drift` a
//! lease read needs a round again. A woken follower's vote stickiness is
//! measured from the last message it really had from its leader, not from
//! the wake, so the lease's promise ("no vote for another candidate within
//! `election_timeout_min` of acknowledging a round") holds as before.

use super::ids::{NodeId, Term};
use super::message::{AppendResponse, MessageBody};
use super::node::{RaftNode, RoleState};
use super::progress::ProgressState;
use super::time::Instant;

impl RaftNode {
    /// Whether the node is quiet: no timer runs until an input wakes it.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// The driver reports that `peer`'s server is unreachable (its liveness
    /// heartbeat stopped). A quiet leader wakes (and checks its quorum); a
    /// quiet follower wakes if `peer` is its leader (or it knows none), and
    /// then elects another one by the usual timers if the leader is really
    /// gone. A follower ignores a fellow follower's server: the leader,
    /// told the same, watches its followers, and a follower woken while
    /// its leader stays quiet hears nothing and campaigns for no reason.
    /// An awake node ignores it (its own timers already watch its peers).
    pub fn handle_peer_unreachable(&mut self, now: Instant, peer: NodeId) {
        self.advance_time(now);
        let watched = match self.role {
            RoleState::Follower => self.leader.is_none_or(|leader| leader == peer),
            _ => true,
        };
        if self.quiet && peer != self.id() && watched {
            self.wake();
            if let (RoleState::Follower, Some(leader)) = (&self.role, self.leader) {
                // A false alarm (the leader lives, quiet) must not end in an
                // election once this follower's timer runs out: an append
                // acknowledgement of what it holds, durable as every quiet
                // log is, wakes a live leader, whose heartbeats follow. A
                // dead one never reads it, and the timer elects as it should.
                let durable = self.log.persisted();
                self.send(
                    leader,
                    MessageBody::AppendResponse(AppendResponse::Success {
                        match_index: durable,
                    }),
                );
            }
        }
        self.finish_input();
    }

    /// A proposal, read, membership change or transfer arrived: wake if
    /// quiet, and restart the idle period either way.
    pub(super) fn mark_busy(&mut self) {
        if self.quiet {
            self.wake();
        }
        self.busy_at = self.now;
    }

    /// Wakes a quiet node before it handles `body` from `from` at `term`
    /// (see the module doc for the kinds of message that do not wake).
    pub(super) fn wake_for_message(&mut self, from: NodeId, term: Term, body: &MessageBody) {
        // A message from an older term (a leader back from a pause, say) is
        // answered with the current term and changes nothing here; waking a
        // quiet follower for it, with its leader still quiet, would only
        // end its election timer in a needless campaign.
        if !self.quiet || term < self.term() {
            return;
        }
        let stays_quiet = match (&self.role, body) {
            (RoleState::Leader { .. }, MessageBody::HeartbeatResponse { .. }) => true,
            // Its own leader campaigning has lost its leadership (it
            // restarted, faster than the driver's liveness could tell).
            (RoleState::Follower, MessageBody::VoteRequest(req)) => {
                !req.leadership_transfer && self.leader != Some(from)
            }
            _ => false,
        };
        if !stays_quiet {
            self.wake();
        }
    }

    /// Leaves the quiet state: a leader heartbeats at once and needs fresh
    /// evidence of a live quorum; a follower's election timer restarts.
    fn wake(&mut self) {
        self.quiet = false;
        self.busy_at = self.now;
        match &mut self.role {
            RoleState::Leader { progress } => {
                for p in progress.values_mut() {
                    p.recent_active = false;
                }
                self.heartbeat_deadline = self.now;
                self.check_quorum_deadline = self.now + self.options.election_timeout_min;
            }
            _ => self.reset_election_deadline(),
        }
    }

    /// Leader, at a heartbeat deadline: goes quiet (sending `Quiesce`
    /// instead of the heartbeat) if idle long enough with nothing to do.
    /// Returns whether it did.
    pub(super) fn maybe_quiesce(&mut self) -> bool {
        let Some(idle) = self.options.quiesce_after else {
            return false;
        };
        if self.now < self.busy_at + idle || !self.leader_has_nothing_to_do() {
            return false;
        }
        self.broadcast_heartbeat_as(true);
        self.quiet = true;
        true
    }

    /// Leader: everything is committed, durable, applied-out and held by
    /// every peer, and nothing waits on this leader.
    fn leader_has_nothing_to_do(&self) -> bool {
        let RoleState::Leader { progress } = &self.role else {
            return false;
        };
        let last = self.log.last_index();
        self.transfer.is_none()
            && self.proposals.is_empty()
            && self.reads.quiet()
            && !self.membership_change_pending()
            && self.log.committed() == last
            && self.log.persisted() == last
            && self.log.term_at(last) == Some(self.term())
            && progress.values().all(|p| {
                p.state == ProgressState::Replicate && p.matched == last && p.inflights.count() == 0
            })
    }

    /// Follower, after handling its leader's `Quiesce` saying everything
    /// through `leader_commit` is committed: goes quiet if its log is
    /// exactly that, durable, and nothing waits on it.
    pub(super) fn maybe_follow_into_quiet(&mut self, leader_commit: super::ids::LogIndex) {
        let last = self.log.last_index();
        let caught_up = matches!(self.role, RoleState::Follower)
            && self.options.quiesce_after.is_some()
            && last == leader_commit
            && self.log.committed() == last
            && self.log.persisted() == last
            && self.leader_matched == last
            && self.installing.is_none()
            && self.durable_hard_state == self.hard_state
            && self.reads.quiet();
        if caught_up {
            self.quiet = true;
        }
    }
}
