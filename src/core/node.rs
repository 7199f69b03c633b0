//! `RaftNode`: the sans-IO Raft node (braft's `NodeImpl`, protocol half).
//!
//! Inputs are `handle_*` calls, each given the driver's `now`; outputs are
//! drained with [`RaftNode::poll_action`] and the next wake-up time is
//! [`RaftNode::poll_timeout`]. This file holds the state, the public entry
//! points and the flush that turns state into actions; the protocol rules
//! live in `trust.rs` (whom to listen to), `election.rs` (votes and roles),
//! `append.rs` (follower side) and `replication.rs` (leader side).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config_manager::ConfigManager;
use super::entry::{Entry, EntryPayload, HardState};
use super::error::{InputError, OptionsError, ProposalLost, ProposalRefused};
use super::ids::{LogId, LogIndex, NodeId, Term};
use super::index_deque::IndexDeque;
use super::input::Event;
use super::log::RaftLog;
use super::membership::Membership;
use super::message::{Message, MessageBody};
use super::options::RaftOptions;
use super::output::{Action, Role};
use super::progress::Progress;
use super::snapshot::SnapshotInfo;
use super::status::{PeerStatus, Status};
use super::time::Instant;

/// What a node recovered from its disk at start-up.
#[derive(Clone, Debug, Default)]
pub struct InitialState {
    /// The durable term and vote.
    pub hard_state: HardState,
    /// The bootstrap configuration when there is no snapshot; empty for a
    /// node joining an existing group, which then waits for the leader.
    /// Configuration entries in `entries` take effect on top of it, in order.
    pub membership: Membership,
    /// The newest durable snapshot, which the state machine was loaded
    /// from; its configuration replaces `membership`.
    pub snapshot: Option<SnapshotInfo>,
    /// The entry just before `entries` (the storage's last purged entry),
    /// `(0,0)` if none.
    pub last_purged: LogId,
    /// The durable entries after `last_purged`, in order.
    pub entries: Vec<Entry>,
    /// Where an on-disk state machine's own store stands, when it is past
    /// `snapshot` (which was then not loaded): applying resumes after it.
    /// `None`: the state machine stands at the snapshot (or at the start).
    /// The caller checks that the log holds it; everything through it is
    /// committed, since a state machine only ever applies committed entries.
    pub applied: Option<LogId>,
}

/// Per-role state.
#[derive(Clone, Debug)]
pub(super) enum RoleState {
    Follower,
    /// Pre-votes received (true = granted), including this node's own.
    PreCandidate {
        votes: BTreeMap<NodeId, bool>,
    },
    /// Votes received; this node's own counts only once its vote is durable.
    Candidate {
        votes: BTreeMap<NodeId, bool>,
    },
    Leader {
        progress: BTreeMap<NodeId, Progress>,
    },
}

/// One Raft node: a deterministic state machine from inputs to actions.
///
/// Same options, same initial state and the same sequence of inputs give the
/// same sequence of actions, byte for byte.
#[derive(Debug)]
pub struct RaftNode {
    pub(super) options: RaftOptions,
    /// The current term and vote (what is durable may lag: `durable_hard_state`).
    pub(super) hard_state: HardState,
    /// The term and vote the disk has confirmed.
    pub(super) durable_hard_state: HardState,
    pub(super) role: RoleState,
    /// The leader of the current term, when known.
    pub(super) leader: Option<NodeId>,
    pub(super) log: RaftLog,
    /// The configuration history; the effective configuration is the latest.
    pub(super) configs: ConfigManager,
    /// The newest durable snapshot (the one a lagging peer is offered).
    pub(super) snapshot: Option<SnapshotInfo>,
    /// Follower: the snapshot being installed; nothing is applied meanwhile.
    pub(super) installing: Option<SnapshotInfo>,
    /// Leader: a leadership transfer in progress.
    pub(super) transfer: Option<super::transfer::Transfer>,
    pub(super) rng: ChaCha8Rng,
    /// The latest `now` seen (inputs never move it back).
    pub(super) now: Instant,
    /// When a follower or candidate campaigns.
    pub(super) election_deadline: Instant,
    /// The randomized election timeout drawn at the last role or term
    /// change; a leader's messages restart the timer with it rather than
    /// drawing again (the draw cost ~2 % of the core's work per entry).
    pub(super) election_timeout: std::time::Duration,
    /// A member said the committed configuration entry here drops this
    /// node: no campaigns until a later one is in the log (`removed.rs`).
    pub(super) removed_at: Option<LogIndex>,
    /// When a leader next sends heartbeats.
    pub(super) heartbeat_deadline: Instant,
    /// When a leader next checks that a quorum is alive.
    pub(super) check_quorum_deadline: Instant,
    /// When this node last heard from the leader of its term.
    pub(super) last_leader_contact: Option<Instant>,
    /// A vote granted but not yet durable: (candidate, term).
    pub(super) pending_vote_grant: Option<(NodeId, Term)>,
    /// Follower: the highest index known to match the current leader's log.
    pub(super) leader_matched: LogIndex,
    /// Follower: the highest index the leader asked to acknowledge.
    pub(super) ack_wanted: LogIndex,
    /// Follower: an acknowledgement is owed (even one that repeats).
    pub(super) ack_owed: bool,
    /// Follower: the last index acknowledged to the current leader.
    pub(super) last_acked: LogIndex,
    /// Proposals accepted by this node and not yet resolved: index → term.
    pub(super) proposals: IndexDeque<Term>,
    /// Reads in flight and the leader's heartbeat rounds (`read.rs`).
    pub(super) reads: super::read::Reads,
    /// Until then this node votes for no one: it may have acknowledged a
    /// leader's heartbeat before it (re)started, and that leader's lease
    /// counts on the vote (`read.rs`).
    pub(super) vote_quiet_until: Instant,
    pub(super) actions: VecDeque<Action>,
    /// State changed since the last flush.
    pub(super) dirty: bool,
    /// Quiet: no timer runs until an input wakes the node (`quiesce.rs`).
    /// Invariant: only a leader or a follower is quiet, with no transfer
    /// and no read pending.
    pub(super) quiet: bool,
    /// Leader: the last proposal, read, membership change, transfer or
    /// wake; quiescence waits `quiesce_after` from here.
    pub(super) busy_at: Instant,
    /// Leader: scratch for the peers one flush replicates to (kept to
    /// reuse its allocation; empty between flushes).
    pub(super) due_peers: Vec<NodeId>,
    /// Leader: the id of the next `Action::LoadEntries` (`log_load.rs`).
    pub(super) next_load_id: u64,
}

impl RaftNode {
    /// A node starting from its recovered state at time `now`.
    ///
    /// # Errors
    /// Invalid options.
    pub fn new(
        options: RaftOptions,
        initial: InitialState,
        now: Instant,
    ) -> Result<Self, OptionsError> {
        options.validate()?;
        let mut log = RaftLog::restore(initial.last_purged, initial.entries);
        log.set_cache_bytes_max(options.log_cache_bytes_max);
        let mut log_reset = None;
        let mut configs = match &initial.snapshot {
            Some(snapshot) => {
                if log.matches(snapshot.last_included) {
                    log.skip_to_snapshot(snapshot.last_included.index);
                } else {
                    // The log does not continue the snapshot (an install
                    // whose log reset was not durable yet): start after it.
                    log.reset_to(snapshot.last_included);
                    log_reset = Some(snapshot.last_included);
                }
                ConfigManager::new(
                    snapshot.last_included.index,
                    Membership::clone(&snapshot.membership),
                )
            }
            None => ConfigManager::new(initial.last_purged.index, initial.membership),
        };
        if let Some(applied) = initial.applied {
            assert!(
                log.matches(applied),
                "the state machine's applied point {applied} is not in the log"
            );
            log.skip_to_snapshot(applied.index);
        }
        let base_index = configs.effective_index();
        for entry in log.iter().filter(|e| e.id.index > base_index) {
            if let EntryPayload::Config(m) = &entry.payload {
                configs.add(entry.id.index, Membership::clone(m));
            }
        }
        let mut node = RaftNode {
            rng: ChaCha8Rng::seed_from_u64(options.rng_seed),
            hard_state: initial.hard_state,
            durable_hard_state: initial.hard_state,
            role: RoleState::Follower,
            leader: None,
            log,
            configs,
            snapshot: initial.snapshot,
            installing: None,
            transfer: None,
            now,
            election_deadline: now,
            election_timeout: options.election_timeout_min,
            removed_at: None,
            heartbeat_deadline: now,
            check_quorum_deadline: now,
            last_leader_contact: None,
            pending_vote_grant: None,
            leader_matched: LogIndex(0),
            ack_wanted: LogIndex(0),
            ack_owed: false,
            last_acked: LogIndex(0),
            proposals: IndexDeque::default(),
            reads: super::read::Reads::default(),
            // At term 0 it never heard from a leader: no lease counts on it.
            vote_quiet_until: match initial.hard_state.term {
                Term(0) => now,
                _ => now + options.election_timeout_min,
            },
            actions: VecDeque::new(),
            dirty: false,
            quiet: false,
            busy_at: now,
            due_peers: Vec::new(),
            next_load_id: 0,
            options,
        };
        if let Some(snapshot) = log_reset {
            node.actions.push_back(Action::ResetLog { snapshot });
        }
        // Storage writes the term before the entries of that term, but a
        // log restored from elsewhere may still run ahead of the meta: adopt
        // the log's term (with no vote, so none is repeated) and persist it.
        let log_term = node.log.last_id().term;
        if log_term > node.hard_state.term {
            node.hard_state = HardState {
                term: log_term,
                voted_for: None,
            };
            node.persist_hard_state();
        }
        if node.hard_state.term > Term::MAX {
            // Pushed there before the ceiling was enforced: peers refuse
            // this node's messages, and it cannot campaign.
            tracing::error!(node = %node.id(), term = %node.term(), "durable term above the ceiling");
        }
        node.reset_election_deadline();
        Ok(node)
    }

    /// The options the node runs with.
    pub fn options(&self) -> &RaftOptions {
        &self.options
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.options.id
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader { .. } => Role::Leader,
        }
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.hard_state.term
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The in-memory log.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The configuration in effect (the latest appended, committed or not).
    pub fn membership(&self) -> &Membership {
        self.configs.effective()
    }

    /// A read-only snapshot of the node's state.
    pub fn status(&self) -> Status {
        let peers = match &self.role {
            RoleState::Leader { progress } => progress
                .iter()
                .map(|(&id, p)| PeerStatus {
                    id,
                    matched: p.matched,
                    next: p.next,
                    state: p.state,
                    inflight_msgs: p.inflights.count(),
                })
                .collect(),
            _ => Vec::new(),
        };
        Status {
            id: self.id(),
            role: self.role(),
            hard_state: self.hard_state,
            leader: self.leader,
            first_index: self.log.first_index(),
            last_log_id: self.log.last_id(),
            evicted_through: self.log.evicted_through(),
            snapshot: self.snapshot.as_ref().map(|s| s.last_included),
            committed: self.log.committed(),
            applied: self.log.applied(),
            persisted: self.log.persisted(),
            membership: self.membership().clone(),
            peers,
            quiet: self.quiet,
        }
    }

    /// Dispatches one [`Event`]; returns the new entry's id for a proposal.
    ///
    /// # Errors
    /// As the `handle_*` method the event maps onto.
    pub fn handle_event(
        &mut self,
        now: Instant,
        event: Event,
    ) -> Result<Option<LogId>, EventError> {
        match event {
            Event::Tick => self.handle_tick(now),
            Event::Message(m) => self.handle_message(now, m)?,
            Event::EntriesPersisted { up_to } => self.handle_entries_persisted(now, up_to)?,
            Event::HardStatePersisted(hs) => self.handle_hard_state_persisted(now, hs)?,
            Event::Propose(command) => return Ok(Some(self.propose(now, command)?)),
            Event::PeerUnreachable(peer) => self.handle_peer_unreachable(now, peer),
        }
        Ok(None)
    }

    /// Time advanced to `now`: campaigns, heartbeats and quorum checks whose
    /// deadline passed run now.
    pub fn handle_tick(&mut self, now: Instant) {
        self.advance_time(now);
        if self.quiet {
            // Nothing is due (`quiesce.rs`); a driver may tick anyway.
            return self.finish_input();
        }
        self.expire_reads();
        if let RoleState::Leader { .. } = self.role {
            self.check_transfer_deadline();
            if self.options.check_quorum && now >= self.check_quorum_deadline {
                self.check_quorum_deadline = now + self.options.election_timeout_min;
                if !self.quorum_recently_active() {
                    self.become_follower(self.term(), None);
                    return self.finish_input();
                }
            }
            if now >= self.heartbeat_deadline {
                self.heartbeat_deadline = now + self.options.heartbeat_interval;
                if !self.maybe_quiesce() {
                    self.broadcast_heartbeat();
                }
            }
        } else if now >= self.election_deadline {
            if self.may_campaign() {
                self.campaign(false);
            } else {
                // A node that may not campaign (a learner, a removed
                // server) still needs a deadline ahead, or its driver would
                // wake at once for the same past one and spin. (No random
                // draw: whether it may campaign is looked at again then.)
                self.election_deadline = now + self.options.election_timeout_min;
            }
        }
        self.finish_input();
    }

    /// A message from a peer.
    ///
    /// # Errors
    /// The message was rejected (see [`InputError`]); a request from a stale
    /// term was answered with the current term, a leader's message from an
    /// unknown sender with a refusal at the message's term.
    pub fn handle_message(&mut self, now: Instant, message: Message) -> Result<(), InputError> {
        self.advance_time(now);
        self.wake_for_message(message.from, message.term, &message.body);
        let result = self.step(message);
        self.finish_input();
        result
    }

    /// The disk holds every entry up to `up_to` (reported for a
    /// `PersistEntries` action).
    ///
    /// # Errors
    /// `StaleDiskCompletion` when the log no longer holds `up_to` as handed
    /// to disk (it was truncated since): harmless, the later write's
    /// completion will cover what is still needed.
    pub fn handle_entries_persisted(
        &mut self,
        now: Instant,
        up_to: LogId,
    ) -> Result<(), InputError> {
        self.advance_time(now);
        if !self.log.matches(up_to) || up_to.index >= self.log.unpersisted_from() {
            return Err(InputError::StaleDiskCompletion { up_to });
        }
        self.log.persisted_to(up_to.index);
        if let RoleState::Leader { .. } = self.role {
            self.maybe_commit();
        }
        self.finish_input();
        Ok(())
    }

    /// The disk holds this term and vote (reported for a `PersistHardState`).
    ///
    /// # Errors
    /// `FutureHardState` for a term this node never reached.
    pub fn handle_hard_state_persisted(
        &mut self,
        now: Instant,
        durable: HardState,
    ) -> Result<(), InputError> {
        self.advance_time(now);
        if durable.term > self.hard_state.term {
            return Err(InputError::FutureHardState { term: durable.term });
        }
        self.durable_hard_state = durable;
        if durable == self.hard_state {
            self.on_hard_state_durable();
        }
        self.finish_input();
        Ok(())
    }

    /// Proposes a command. Returns the log position it was given; the
    /// command is applied when an `Apply` action carries an entry with this
    /// id, or fails with a `ProposalFailed` action.
    ///
    /// # Errors
    /// `NotLeader` with a hint when this node does not lead.
    pub fn propose(&mut self, now: Instant, command: Bytes) -> Result<LogId, ProposalRefused> {
        self.advance_time(now);
        if !matches!(self.role, RoleState::Leader { .. }) {
            return Err(ProposalRefused::NotLeader {
                leader_hint: self.leader,
            });
        }
        if let Some(transfer) = &self.transfer {
            // Leadership is on its way to the target (dissertation §3.10):
            // new entries would only delay it. The hint points there.
            return Err(ProposalRefused::NotLeader {
                leader_hint: Some(transfer.target),
            });
        }
        if !self.configs.effective().is_voter(self.id()) {
            // Removed by a C(new) still in flight: it steps down when that
            // commits, and would never learn the fate of later entries.
            return Err(ProposalRefused::NotLeader { leader_hint: None });
        }
        self.mark_busy();
        let id = self.append_as_leader(EntryPayload::Command(command));
        self.proposals.insert(id.index, id.term);
        self.finish_input();
        Ok(id)
    }

    /// The next action for the driver, if any. Replication and apply work
    /// accumulated by earlier inputs is turned into actions on the first
    /// call, so that many proposals made between polls share one
    /// AppendEntries per peer and one disk write.
    #[inline]
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.dirty {
            self.dirty = false;
            self.flush();
        }
        self.actions.pop_front()
    }

    /// When the driver must call [`handle_tick`](Self::handle_tick) next;
    /// [`Instant::NEVER`] while quiet (`quiesce.rs`).
    pub fn poll_timeout(&self) -> Instant {
        if self.quiet {
            return Instant::NEVER;
        }
        let deadline = match self.role {
            RoleState::Leader { .. } if self.options.check_quorum => {
                self.heartbeat_deadline.min(self.check_quorum_deadline)
            }
            RoleState::Leader { .. } => self.heartbeat_deadline,
            _ => self.election_deadline,
        };
        let deadline = match &self.transfer {
            Some(transfer) => deadline.min(transfer.deadline),
            None => deadline,
        };
        match self.reads.next_deadline() {
            Some(read) => deadline.min(read),
            None => deadline,
        }
    }

    pub(super) fn advance_time(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    pub(super) fn finish_input(&mut self) {
        self.dirty = true;
        #[cfg(any(debug_assertions, feature = "invariants"))]
        super::invariants::check(self);
    }

    /// Turns accumulated state into actions: disk writes, replication,
    /// acknowledgements and applies.
    // Out of line, so that `poll_action` stays small: it is called once
    // per action and once more per drain, and the flush only once per input.
    #[inline(never)]
    fn flush(&mut self) {
        if let Some(entries) = self.log.take_unpersisted() {
            self.actions.push_back(Action::PersistEntries { entries });
        }
        match self.role {
            RoleState::Leader { .. } => self.replicate_all(),
            RoleState::Follower => self.maybe_send_ack(),
            _ => {}
        }
        // The state machine is about to be replaced: applying now would
        // race the snapshot's load.
        if self.installing.is_none() {
            self.apply_committed();
        }
        if !self.reads.idle() {
            self.flush_reads();
        }
    }

    fn apply_committed(&mut self) {
        loop {
            let entries = self.log.take_committed(self.options.apply_batch_max);
            if entries.is_empty() {
                return;
            }
            // Applying is what makes entries evictable (after a snapshot's
            // skip, they go with the next batch).
            self.log.evict_applied();
            let log_reads = !self.reads.idle();
            for entry in &entries {
                self.resolve_proposal(entry.id);
                if log_reads {
                    self.check_log_read(entry.id);
                }
            }
            self.actions.push_back(Action::Apply { entries });
        }
    }

    /// An entry at a proposal's index is being applied: the proposal either
    /// is that entry or lost its slot to it.
    fn resolve_proposal(&mut self, applied: LogId) {
        if let Some(term) = self.proposals.remove(applied.index)
            && term != applied.term
        {
            let error = ProposalLost::Overwritten {
                proposal: LogId {
                    term,
                    index: applied.index,
                },
                by_term: Some(applied.term),
            };
            self.actions.push_back(Action::ProposalFailed(error));
        }
    }

    /// Fails every pending proposal at or after `index`: their entries were
    /// truncated.
    pub(super) fn fail_proposals_from(&mut self, index: LogIndex, by_term: Option<Term>) {
        let failed = self.proposals.split_from(index);
        for (index, term) in failed {
            let proposal = LogId { term, index };
            let error = ProposalLost::Overwritten { proposal, by_term };
            self.actions.push_back(Action::ProposalFailed(error));
        }
    }

    /// Appends an entry of the current term as leader.
    pub(super) fn append_as_leader(&mut self, payload: EntryPayload) -> LogId {
        let id = LogId {
            term: self.term(),
            index: self.log.last_index().next(),
        };
        let is_config = matches!(payload, EntryPayload::Config(_));
        self.append_entry(Entry { id, payload });
        if is_config {
            self.sync_progress();
        }
        id
    }

    /// Appends an entry to the log; a configuration takes effect at once,
    /// committed or not (dissertation §4.1).
    pub(super) fn append_entry(&mut self, entry: Entry) {
        let is_config = matches!(entry.payload, EntryPayload::Config(_));
        if let EntryPayload::Config(m) = &entry.payload {
            self.configs.add(entry.id.index, Membership::clone(m));
        }
        self.log.append(entry);
        if is_config && matches!(self.role, RoleState::Leader { .. }) {
            self.on_read_config_change();
        }
    }

    /// Removes the log suffix from `index` on; configurations carried there
    /// are rolled back to the one before.
    pub(super) fn truncate_log_from(&mut self, index: LogIndex) {
        self.log.truncate_from(index);
        self.configs.truncate_suffix(index);
    }

    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        let message = Message {
            from: self.id(),
            to,
            term: self.term(),
            body,
        };
        self.actions.push_back(Action::Send(message));
    }

    pub(super) fn reset_election_deadline(&mut self) {
        let min = self.options.election_timeout_min;
        let max = self.options.election_timeout_max;
        let nanos = self
            .rng
            .random_range(min.as_nanos() as u64..max.as_nanos() as u64);
        self.election_timeout = std::time::Duration::from_nanos(nanos);
        self.restart_election_deadline();
    }

    /// Restarts the election timer with the timeout drawn last: a
    /// follower hearing from its leader. Split votes still draw anew, since
    /// every campaign and term change goes through `reset_election_deadline`.
    pub(super) fn restart_election_deadline(&mut self) {
        self.election_deadline = self.now + self.election_timeout;
    }

    pub(super) fn persist_hard_state(&mut self) {
        self.actions
            .push_back(Action::PersistHardState(self.hard_state));
    }

    pub(super) fn announce_role(&mut self) {
        self.actions.push_back(Action::RoleChanged {
            role: self.role(),
            term: self.term(),
            leader: self.leader,
        });
        self.on_read_role_change();
    }
}

/// The error of [`RaftNode::handle_event`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A rejected input.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A refused proposal.
    #[error(transparent)]
    Propose(#[from] ProposalRefused),
}
