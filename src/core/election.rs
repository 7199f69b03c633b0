//! Terms, votes and role changes: pre-vote, election, step-down, check-quorum
//! (braft's `elect_self`, `handle_request_vote_request`, `step_down`).
//!
//! Every message passes through [`RaftNode::step`] first, which checks the
//! sender (`trust.rs`) and applies the term rules of Raft §5.1 before the
//! role-specific handlers run.

use std::collections::BTreeMap;

use super::entry::EntryPayload;
use super::error::InputError;
use super::ids::{NodeId, Term};
use super::message::{Message, MessageBody, VoteRequest, VoteResponse};
use super::node::{RaftNode, RoleState};
use super::quorum::VoteResult;

impl RaftNode {
    /// Validates a message, applies the term rules, and dispatches it.
    pub(super) fn step(&mut self, m: Message) -> Result<(), InputError> {
        if m.to != self.id() || m.from == self.id() {
            return Err(InputError::Misaddressed {
                from: m.from,
                to: m.to,
                this: self.id(),
            });
        }
        // Terms above the ceiling, and senders this node does not know, are
        // refused before any term rule runs (see `trust.rs`).
        self.check_trust(&m)?;
        if let MessageBody::Removed { config } = m.body {
            // True at any term (committed stays committed), and no reason to
            // move ours: read before the term rules.
            self.handle_removed(m.from, config);
            return Ok(());
        }
        if m.term > self.term() {
            match &m.body {
                MessageBody::VoteRequest(req) => {
                    if !req.leadership_transfer && self.in_leader_lease() {
                        // Leader stickiness: a node that hears from a live
                        // leader neither bumps its term nor votes (§9.6).
                        return Ok(());
                    }
                    if !req.pre_vote {
                        // Raft §5.2 (Figure 2): only a granted vote or a
                        // leader's message restarts the election timer. A
                        // candidate this node refuses (its log is behind)
                        // must not keep the node that could win from
                        // campaigning, round after round.
                        let deadline = self.election_deadline;
                        let was_leading = matches!(self.role, RoleState::Leader { .. });
                        self.become_follower(m.term, None);
                        if !was_leading {
                            self.election_deadline = deadline;
                        }
                    }
                }
                // A granted pre-vote carries the term we would campaign in.
                MessageBody::VoteResponse(resp) if resp.pre_vote && resp.granted => {}
                // Only a leader sends these (TimeoutNow: to hand its term over).
                MessageBody::AppendRequest(_)
                | MessageBody::Heartbeat(_)
                | MessageBody::Quiesce(_)
                | MessageBody::InstallSnapshot(_)
                | MessageBody::TimeoutNow => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term() {
            return self.reject_stale(m);
        }
        match m.body {
            MessageBody::VoteRequest(req) => {
                self.handle_vote_request(m.from, m.term, req);
                Ok(())
            }
            MessageBody::VoteResponse(resp) => {
                self.handle_vote_response(m.from, m.term, resp);
                Ok(())
            }
            MessageBody::AppendRequest(req) => self.handle_append_request(m.from, req),
            MessageBody::AppendResponse(resp) => self.handle_append_response(m.from, resp),
            MessageBody::Heartbeat(hb) => self.handle_heartbeat(m.from, hb),
            MessageBody::Quiesce(hb) => {
                let leader_commit = hb.leader_commit;
                self.handle_heartbeat(m.from, hb)?;
                self.maybe_follow_into_quiet(leader_commit);
                Ok(())
            }
            MessageBody::HeartbeatResponse { round } => {
                self.handle_heartbeat_response(m.from, round);
                Ok(())
            }
            MessageBody::ReadIndexRequest(req) => {
                self.handle_read_index_request(m.from, req);
                Ok(())
            }
            MessageBody::ReadIndexResponse(resp) => {
                self.handle_read_index_response(m.from, resp);
                Ok(())
            }
            MessageBody::TimeoutNow => {
                self.handle_timeout_now(m.from);
                Ok(())
            }
            MessageBody::InstallSnapshot(info) => {
                self.follow(m.from)?;
                self.handle_install_snapshot(m.from, info);
                Ok(())
            }
            MessageBody::SnapshotFailed { last } => {
                self.handle_snapshot_failed(m.from, last);
                Ok(())
            }
            MessageBody::Removed { .. } => Ok(()), // read above
        }
    }

    /// A message from an older term: requests are answered with our term so
    /// that a stale leader or candidate steps down; then it is rejected.
    fn reject_stale(&mut self, m: Message) -> Result<(), InputError> {
        match &m.body {
            MessageBody::AppendRequest(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::Quiesce(_)
            | MessageBody::InstallSnapshot(_) => {
                self.send(m.from, MessageBody::HeartbeatResponse { round: 0 });
            }
            // A follower behind on terms: refused, and it learns ours.
            MessageBody::ReadIndexRequest(req) => {
                let refusal = super::message::ReadIndexResponse {
                    request: req.request,
                    read_index: None,
                };
                self.send(m.from, MessageBody::ReadIndexResponse(refusal));
            }
            MessageBody::VoteRequest(req) => {
                let refusal = VoteResponse {
                    pre_vote: req.pre_vote,
                    granted: false,
                };
                self.send(m.from, MessageBody::VoteResponse(refusal));
            }
            _ => {}
        }
        Err(InputError::StaleTerm {
            message_term: m.term,
            current_term: self.term(),
        })
    }

    /// Whether this node heard from a live leader recently enough to refuse
    /// votes (only with check-quorum, which makes leaders step down when
    /// they lose a quorum, so the lease cannot outlive a dead leader).
    pub(super) fn in_leader_lease(&self) -> bool {
        if !self.options.check_quorum {
            return false;
        }
        if self.quiet {
            // Its leader said it had nothing to send, and the driver has
            // not reported it unreachable (`quiesce.rs`).
            return true;
        }
        if self.now < self.vote_quiet_until {
            // Just (re)started: a lease may count on this node's silence.
            return true;
        }
        match self.role {
            RoleState::Leader { .. } => true,
            _ => {
                self.leader.is_some()
                    && self.last_leader_contact.is_some_and(|at| {
                        self.now.saturating_duration_since(at) < self.options.election_timeout_min
                    })
            }
        }
    }

    fn handle_vote_request(&mut self, from: NodeId, term: Term, req: VoteRequest) {
        let can_vote = self.hard_state.voted_for == Some(from)
            || (self.hard_state.voted_for.is_none() && self.leader.is_none())
            || (req.pre_vote && term > self.term());
        // Raft §5.4.1: only a candidate at least as up to date as us.
        let up_to_date = req.last_log_id >= self.log.last_id();
        let granted = can_vote && up_to_date;
        let response = VoteResponse {
            pre_vote: req.pre_vote,
            granted,
        };
        if req.pre_vote {
            // A pre-vote changes nothing here; a grant carries the asked term.
            let message = Message {
                from: self.id(),
                to: from,
                term: if granted { term } else { self.term() },
                body: MessageBody::VoteResponse(response),
            };
            self.actions.push_back(super::output::Action::Send(message));
            return;
        }
        if !granted {
            self.send(from, MessageBody::VoteResponse(response));
            return;
        }
        if self.hard_state.voted_for != Some(from) {
            self.hard_state.voted_for = Some(from);
            self.persist_hard_state();
        }
        self.reset_election_deadline();
        // The grant leaves only once the vote is durable.
        self.pending_vote_grant = Some((from, self.term()));
        if self.durable_hard_state == self.hard_state {
            self.on_hard_state_durable();
        }
    }

    fn handle_vote_response(&mut self, from: NodeId, term: Term, resp: VoteResponse) {
        let counts = match &self.role {
            RoleState::PreCandidate { .. } => {
                resp.pre_vote
                    && ((resp.granted && Some(term) == self.term().next())
                        || (!resp.granted && term == self.term()))
            }
            RoleState::Candidate { .. } => !resp.pre_vote && term == self.term(),
            _ => false,
        };
        if !counts {
            return;
        }
        if let RoleState::PreCandidate { votes } | RoleState::Candidate { votes } = &mut self.role {
            votes.insert(from, resp.granted);
        }
        self.tally_votes();
    }

    /// Counts the votes of a (pre-)candidate and acts on the result.
    fn tally_votes(&mut self) {
        let result = match &self.role {
            RoleState::PreCandidate { votes } | RoleState::Candidate { votes } => self
                .configs
                .effective()
                .quorum()
                .vote_result(|id| votes.get(&id).copied()),
            _ => return,
        };
        match (result, &self.role) {
            (VoteResult::Won, RoleState::PreCandidate { .. }) => self.become_candidate(false),
            // Not before this term is on our disk, even when the others'
            // votes alone make a quorum: a crash would forget the term, and
            // the same voters could elect us in it again with another log.
            // `on_hard_state_durable` tallies again.
            (VoteResult::Won, RoleState::Candidate { .. })
                if self.durable_hard_state.term < self.term() => {}
            (VoteResult::Won, RoleState::Candidate { .. }) => self.become_leader(),
            (VoteResult::Lost, _) => self.become_follower(self.term(), None),
            _ => {}
        }
    }

    /// Starts an election: a pre-vote round first unless disabled or this is
    /// a leadership transfer.
    pub(super) fn campaign(&mut self, leadership_transfer: bool) {
        if self.term().next().is_none() {
            // No term follows the ceiling (see `Term::MAX`); only a faulty
            // or hostile peer can have pushed us there. Stay a follower.
            tracing::warn!(node = %self.id(), term = %self.term(), "term at the ceiling: not campaigning");
            self.reset_election_deadline();
            return;
        }
        if self.options.pre_vote && !leadership_transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate(leadership_transfer);
        }
    }

    fn become_pre_candidate(&mut self) {
        let mut votes = BTreeMap::new();
        votes.insert(self.id(), true);
        self.role = RoleState::PreCandidate { votes };
        self.leader = None;
        self.reset_election_deadline();
        self.announce_role();
        self.request_votes(true, false);
        self.tally_votes();
    }

    fn become_candidate(&mut self, leadership_transfer: bool) {
        let Some(term) = self.term().next() else {
            return; // at the ceiling: `campaign` refused already
        };
        self.hard_state.term = term;
        self.hard_state.voted_for = Some(self.id());
        self.role = RoleState::Candidate {
            votes: BTreeMap::new(),
        };
        self.leader = None;
        self.pending_vote_grant = None;
        self.reset_election_deadline();
        self.persist_hard_state();
        self.announce_role();
        // Requests go out at once; our own vote counts once it is durable.
        self.request_votes(false, leadership_transfer);
    }

    fn request_votes(&mut self, pre_vote: bool, leadership_transfer: bool) {
        let term = match pre_vote {
            true => match self.term().next() {
                Some(next) => next,
                None => return, // at the ceiling: `campaign` refused already
            },
            false => self.term(),
        };
        let request = VoteRequest {
            pre_vote,
            last_log_id: self.log.last_id(),
            leadership_transfer,
        };
        let me = self.id();
        let voters: Vec<NodeId> = self
            .configs
            .effective()
            .voter_ids()
            .into_iter()
            .filter(|&id| id != me)
            .collect();
        for to in voters {
            let message = Message {
                from: self.id(),
                to,
                term,
                body: MessageBody::VoteRequest(request.clone()),
            };
            self.actions.push_back(super::output::Action::Send(message));
        }
    }

    /// The disk caught up with the current term and vote: release what waited.
    pub(super) fn on_hard_state_durable(&mut self) {
        if let Some((to, term)) = self.pending_vote_grant.take()
            && term == self.term()
            && self.hard_state.voted_for == Some(to)
        {
            let grant = VoteResponse {
                pre_vote: false,
                granted: true,
            };
            self.send(to, MessageBody::VoteResponse(grant));
        }
        if self.hard_state.voted_for == Some(self.id())
            && let RoleState::Candidate { votes } = &mut self.role
        {
            votes.insert(self.options.id, true);
            self.tally_votes();
        }
    }

    /// Becomes a follower in `term` (a new term clears the vote).
    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let was = (self.role(), self.term(), self.leader);
        self.transfer = None;
        self.quiet = false;
        if term > self.term() {
            self.hard_state.term = term;
            self.hard_state.voted_for = None;
            self.pending_vote_grant = None;
            self.persist_hard_state();
        }
        self.role = RoleState::Follower;
        self.set_leader(leader);
        self.reset_election_deadline();
        if was != (self.role(), self.term(), self.leader) {
            self.announce_role();
        }
    }

    /// Records the leader of the current term; a new leader starts a fresh
    /// acknowledgement stream.
    pub(super) fn set_leader(&mut self, leader: Option<NodeId>) {
        if self.leader != leader {
            self.leader = leader;
            self.leader_matched = super::ids::LogIndex(0);
            self.ack_wanted = super::ids::LogIndex(0);
            self.last_acked = super::ids::LogIndex(0);
            self.ack_owed = false;
        }
        if leader.is_some() {
            self.last_leader_contact = Some(self.now);
        }
    }

    fn become_leader(&mut self) {
        self.role = RoleState::Leader {
            progress: BTreeMap::new(),
        };
        self.transfer = None;
        self.reset_read_rounds();
        self.sync_progress();
        self.leader = Some(self.id());
        self.quiet = false;
        self.busy_at = self.now;
        self.heartbeat_deadline = self.now + self.options.heartbeat_interval;
        self.check_quorum_deadline = self.now + self.options.election_timeout_min;
        self.announce_role();
        if self.configs.is_forced() {
            // After `reset_peers`: the forced configuration is written as
            // this term's first entry, which also serves as the no-op.
            let forced = self.configs.effective().clone();
            self.append_as_leader(EntryPayload::Config(forced.into()));
        } else {
            // Raft §8: commit a no-op of the new term to learn what is committed.
            self.append_as_leader(EntryPayload::Noop);
        }
    }

    /// Whether a quorum answered since the last check; clears the marks.
    pub(super) fn quorum_recently_active(&mut self) -> bool {
        let me = self.id();
        let RoleState::Leader { progress } = &mut self.role else {
            return false;
        };
        let active = self
            .configs
            .effective()
            .quorum()
            .is_active(|id| id == me || progress.get(&id).is_some_and(|p| p.recent_active));
        for p in progress.values_mut() {
            p.recent_active = false;
        }
        active
    }
}
