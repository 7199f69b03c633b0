//! Reads without the log: ReadIndex rounds, the leader lease, follower
//! reads, and reads through the log as the baseline (dissertation §6.4;
//! etcd's `ReadOnlySafe` / `ReadOnlyLeaseBased`, sofa-jraft's batched
//! ReadIndex).
//!
//! A read asks the core for a *read index*: an index such that the state
//! machine, once it has applied through it, reflects every write that
//! completed before the read was asked. The core hands it out as
//! [`Action::ReadReady`] only after every entry through it was handed out in
//! an `Apply` action, so the driver serves the read once its state machine
//! has applied what it was given before that action.
//!
//! ```text
//!  leader   read ──► index = commit ──► heartbeat round r ──► quorum acked r ──► ReadReady
//!                    (after the first commit of the term)     (many reads share r)
//!  lease    read ──► index = commit ──► ReadReady        (now < lease end; else a round)
//!  follower read ──► ReadIndexRequest ──► leader: round ──► ReadIndexResponse(index)
//!                                                           ──► applied ≥ index ──► ReadReady
//!  log      read ──► append a no-op ──► applied (same term at that index) ──► ReadReady
//! ```
//!
//! **Rounds.** Every heartbeat a leader broadcasts carries a round number,
//! increasing within its leadership, which followers echo. A read waits for
//! a round *sent after* its read index was fixed; once a quorum of the
//! configuration acknowledged that round at the leader's term, no newer
//! leader existed when the round was sent, so the read index covers every
//! write completed before the read (Raft §8). Reads arriving while a round
//! they can use is in flight wait for the next one: one round serves every
//! read that queued while the previous was out.
//!
//! **First commit.** A new leader's commit index may lag what earlier
//! leaders committed until an entry of its own term (its no-op) commits
//! (Raft §8). Reads that arrive before then are queued; their read index is
//! fixed at that commit, and they wait for a round sent after it.
//!
//! **The lease and its clock assumption.** A follower that heard from its
//! leader at time `t` (its clock) neither votes for another candidate nor
//! campaigns before `t + election_timeout_min` (leader stickiness with
//! check-quorum, and the randomized election timer); a node that just
//! started waits as long before it votes. So once a quorum acknowledged a
//! heartbeat round sent at leader time `s`, no other leader can be elected
//! before `s + election_timeout_min` as measured on each voter's clock. The
//! leader serves lease reads while its own clock reads before
//! `s + election_timeout_min - max_clock_drift`. This is safe if and only
//! if, **for any two nodes, over any interval no longer than
//! `election_timeout_min`, the durations measured by their monotonic clocks
//! differ by at most [`RaftOptions::max_clock_drift`]** (offsets do not
//! matter; rates do), and a process pause between reading the clock and
//! handling the read is shorter than the margin. Lease reads are off without
//! check-quorum, stop at once when the leader steps down or starts a
//! leadership transfer (whose target campaigns past every lease; they stay
//! off for the rest of the term, since its TimeoutNow may still be on its
//! way), and restart after a configuration change only with rounds sent
//! under the new configuration. Outside the lease a lease read falls back
//! to a round.
//!
//! **Follower reads.** A follower or learner asks its leader for a read
//! index with one [`ReadIndexRequest`] for every read queued since the last
//! one was answered, then waits until its own log applied through the
//! answer. A leader change (or a new term) before the answer fails the
//! asked reads with [`ReadFailure::LeadershipLost`]; once the answer is in,
//! the index is committed and waiting for its apply is safe across leaders.
//!
//! [`Action::ReadReady`]: super::output::Action::ReadReady
//! [`RaftOptions::max_clock_drift`]: super::options::RaftOptions::max_clock_drift

use std::collections::{BTreeMap, VecDeque};

use super::entry::EntryPayload;
use super::error::{ReadError, ReadFailure};
use super::ids::{LogIndex, NodeId, Term};
use super::message::{MessageBody, ReadIndexRequest, ReadIndexResponse};
use super::node::{RaftNode, RoleState};
use super::output::Action;
use super::time::Instant;

/// Names one read on the node that accepted it (unique while it lives).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReadId(pub u64);

/// How a read is made linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadPolicy {
    /// A heartbeat round to a quorum confirms leadership; shared by every
    /// read queued meanwhile. On a follower: asks the leader for one.
    ReadIndex,
    /// Within the leader's lease, no round trip; outside it, a round. Relies
    /// on bounded clock drift (see the module doc). On a follower: the
    /// leader answers from its lease when it can.
    Lease,
    /// A no-op entry through the log, as a write: the baseline. Leader only.
    Log,
}

/// Where a pending leader-side read came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A read on this node.
    Local(ReadId),
    /// A follower's request for a read index.
    Remote { from: NodeId, request: u64 },
}

/// A read waiting on the leader for its round.
#[derive(Clone, Debug)]
struct Confirming {
    origin: Origin,
    /// `None` until the leader's first commit of its term.
    index: Option<LogIndex>,
    /// The first round whose quorum acknowledgement confirms it.
    round: u64,
    deadline: Instant,
}

/// A follower's request to its leader, unanswered.
#[derive(Clone, Debug)]
struct Asked {
    request: u64,
    leader: NodeId,
    reads: Vec<ReadId>,
    deadline: Instant,
}

/// Every read in flight on one node, and the leader's round bookkeeping.
///
/// Invariant: `confirmed_round < round_next`; every `sent_rounds` key is in
/// `(confirmed_round, round_next)`.
#[derive(Clone, Debug, Default)]
pub(super) struct Reads {
    next_read: u64,
    next_request: u64,
    /// Leader: the round number the next heartbeat broadcast carries.
    round_next: u64,
    /// Leader: a read waits for a round not yet sent.
    round_wanted: bool,
    /// Leader: when each unconfirmed round was sent.
    sent_rounds: BTreeMap<u64, Instant>,
    /// Leader: the highest round each peer acknowledged.
    acked_rounds: BTreeMap<NodeId, u64>,
    /// Leader: the highest round a quorum acknowledged.
    confirmed_round: u64,
    /// Leader: only rounds from here on renew the lease (configuration).
    lease_round_min: u64,
    /// Leader: the lease ends here (exclusive), if held.
    lease_end: Option<Instant>,
    /// Leader: a transfer started this term; no lease until it ends.
    lease_forfeited: bool,
    /// Leader: reads waiting for a round, in arrival order.
    confirming: VecDeque<Confirming>,
    /// Reads whose index is known, waiting for the log to apply it.
    applying: Vec<(ReadId, LogIndex)>,
    /// Leader: reads through the log: entry index → (term, reads).
    through_log: BTreeMap<LogIndex, (Term, Vec<ReadId>)>,
    /// Follower: reads not yet asked for, with their deadlines.
    queued: Vec<(ReadId, Instant)>,
    /// Follower: the request out to the leader.
    asked: Option<Asked>,
}

/// Send times kept for unconfirmed rounds; older ones are forgotten (a lost
/// round only shortens the lease).
const SENT_ROUNDS_MAX: usize = 1024;

impl Reads {
    fn pending(&self) -> usize {
        self.confirming.len()
            + self.applying.len()
            + self.queued.len()
            + self
                .through_log
                .values()
                .map(|(_, r)| r.len())
                .sum::<usize>()
            + self.asked.as_ref().map_or(0, |a| a.reads.len())
    }

    /// Whether any read is in flight or a round is wanted: the hot paths
    /// (every flush, every applied entry) skip reads otherwise.
    #[inline]
    pub(super) fn idle(&self) -> bool {
        !self.round_wanted
            && self.applying.is_empty()
            && self.through_log.is_empty()
            && self.queued.is_empty()
            && self.asked.is_none()
    }

    /// No read of any kind is pending (`quiesce.rs`).
    pub(super) fn quiet(&self) -> bool {
        self.pending() == 0 && self.idle()
    }

    /// The earliest deadline of a read this node could still fail.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        if self.confirming.is_empty() && self.queued.is_empty() && self.asked.is_none() {
            return None;
        }
        let confirming = self.confirming.iter().map(|c| c.deadline);
        let queued = self.queued.iter().map(|q| q.1);
        let asked = self.asked.iter().map(|a| a.deadline);
        confirming.chain(queued).chain(asked).min()
    }
}

impl RaftNode {
    /// Starts a linearizable read. Resolves with [`Action::ReadReady`]
    /// (serve it once the state machine applied what it was handed before
    /// that action) or [`Action::ReadFailed`]. See the module doc.
    ///
    /// # Errors
    /// [`ReadError`]: not the leader for a `Log` read or with no leader to
    /// ask, or too many reads pending.
    pub fn read(&mut self, now: Instant, policy: ReadPolicy) -> Result<ReadId, ReadError> {
        self.advance_time(now);
        if self.reads.pending() >= self.options.read_pending_max {
            return Err(ReadError::Busy {
                pending_max: self.options.read_pending_max,
            });
        }
        self.mark_busy();
        let leading = matches!(self.role, RoleState::Leader { .. });
        if !leading && (policy == ReadPolicy::Log || self.leader.is_none()) {
            return Err(ReadError::NotLeader {
                leader_hint: self.leader,
            });
        }
        self.reads.next_read += 1;
        let id = ReadId(self.reads.next_read);
        let deadline = self.now + self.options.election_timeout_max;
        match policy {
            _ if !leading => self.reads.queued.push((id, deadline)),
            ReadPolicy::Log => {
                let entry = self.append_as_leader(EntryPayload::Noop);
                let (_, reads) = self
                    .reads
                    .through_log
                    .entry(entry.index)
                    .or_insert((entry.term, Vec::new()));
                reads.push(id);
            }
            ReadPolicy::Lease if self.lease_valid() => {
                let index = self.log.committed();
                self.reads.applying.push((id, index));
            }
            ReadPolicy::ReadIndex | ReadPolicy::Lease => {
                self.confirm_read(Origin::Local(id), deadline)
            }
        }
        self.finish_input();
        Ok(id)
    }

    /// Leader: whether a lease read may be served now without a round.
    pub fn lease_valid(&self) -> bool {
        self.lease_read_until().is_some_and(|end| self.now < end)
    }

    /// Leader: when the lease for reads ends (exclusive), if this node may
    /// serve lease reads at all: it leads with check-quorum, has committed
    /// an entry of its term, starts no transfer and forfeited nothing this
    /// term. A driver that serves lease reads off its own clock publishes
    /// this (and the commit index) after every input, before it performs
    /// the actions that input caused.
    pub fn lease_read_until(&self) -> Option<Instant> {
        let may_lease = matches!(self.role, RoleState::Leader { .. })
            && self.options.check_quorum
            && !self.reads.lease_forfeited
            && self.transfer.is_none()
            && self.first_commit_done();
        self.reads.lease_end.filter(|_| may_lease)
    }

    /// Whether an entry of the leader's own term has committed (Raft §8).
    fn first_commit_done(&self) -> bool {
        self.log.term_at(self.log.committed()) == Some(self.term())
    }

    /// Leader: queues a read for the next round.
    fn confirm_read(&mut self, origin: Origin, deadline: Instant) {
        let index = self.first_commit_done().then(|| self.log.committed());
        let round = self.reads.round_next;
        self.reads.round_wanted |= index.is_some();
        self.reads.confirming.push_back(Confirming {
            origin,
            index,
            round,
            deadline,
        });
    }

    /// Leader: a follower asks for a read index.
    pub(super) fn handle_read_index_request(&mut self, from: NodeId, req: ReadIndexRequest) {
        let leading = matches!(self.role, RoleState::Leader { .. });
        let full = self.reads.pending() >= self.options.read_pending_max;
        if !leading || full {
            self.answer_read_request(from, req.request, None);
        } else if req.lease && self.lease_valid() {
            let index = self.log.committed();
            self.answer_read_request(from, req.request, Some(index));
        } else {
            let origin = Origin::Remote {
                from,
                request: req.request,
            };
            let deadline = self.now + self.options.election_timeout_max;
            self.confirm_read(origin, deadline);
        }
    }

    fn answer_read_request(&mut self, to: NodeId, request: u64, read_index: Option<LogIndex>) {
        let body = MessageBody::ReadIndexResponse(ReadIndexResponse {
            request,
            read_index,
        });
        self.send(to, body);
    }

    /// Follower: the leader's answer to our request.
    pub(super) fn handle_read_index_response(&mut self, from: NodeId, resp: ReadIndexResponse) {
        let matches = self
            .reads
            .asked
            .as_ref()
            .is_some_and(|a| a.request == resp.request && a.leader == from);
        if !matches {
            return; // an answer to a request we gave up on
        }
        let asked = self.reads.asked.take().expect("matched above");
        match resp.read_index {
            Some(index) => {
                let reads = asked.reads.into_iter().map(|id| (id, index));
                self.reads.applying.extend(reads);
            }
            None => {
                let error = ReadFailure::NotLeader {
                    leader_hint: self.leader.filter(|&l| l != from),
                };
                self.fail_reads(asked.reads, error);
            }
        }
    }

    /// Leader: the number the next heartbeat round carries; records when
    /// it was sent.
    pub(super) fn start_read_round(&mut self) -> u64 {
        let reads = &mut self.reads;
        let round = reads.round_next;
        reads.round_next += 1;
        reads.round_wanted = false;
        reads.sent_rounds.insert(round, self.now);
        if reads.sent_rounds.len() > SENT_ROUNDS_MAX {
            reads.sent_rounds.pop_first();
        }
        // A group of one confirms its own round at once.
        self.update_confirmed_round();
        round
    }

    /// Leader: `from` echoed heartbeat round `round`.
    pub(super) fn handle_round_ack(&mut self, from: NodeId, round: u64) {
        if round >= self.reads.round_next || !matches!(self.role, RoleState::Leader { .. }) {
            return; // not leading, or never sent: a confused or hostile peer
        }
        let acked = self.reads.acked_rounds.entry(from).or_default();
        if round <= *acked {
            return;
        }
        *acked = round;
        self.update_confirmed_round();
    }

    /// Leader: recomputes the highest round a quorum acknowledged, renews
    /// the lease from its send time, and confirms the reads it covers.
    pub(super) fn update_confirmed_round(&mut self) {
        let me = self.id();
        let last_sent = self.reads.round_next.saturating_sub(1);
        let acked = &self.reads.acked_rounds;
        let quorum = self.configs.effective().committed_index(|id| {
            let round = if id == me {
                last_sent
            } else {
                acked.get(&id).copied()?
            };
            Some(LogIndex(round))
        });
        let confirmed = quorum.0.min(last_sent);
        if confirmed <= self.reads.confirmed_round {
            return;
        }
        self.reads.confirmed_round = confirmed;
        let rest = self.reads.sent_rounds.split_off(&(confirmed + 1));
        let sent = std::mem::replace(&mut self.reads.sent_rounds, rest);
        if let Some(&sent_at) = sent.get(&confirmed)
            && confirmed >= self.reads.lease_round_min
        {
            let lease = self
                .options
                .election_timeout_min
                .saturating_sub(self.options.max_clock_drift);
            let end = sent_at + lease;
            self.reads.lease_end = Some(self.reads.lease_end.map_or(end, |e| e.max(end)));
        }
        self.release_confirmed_reads();
    }

    /// Leader: every read whose round a quorum acknowledged is ready (local)
    /// or answered (remote).
    fn release_confirmed_reads(&mut self) {
        let confirmed = self.reads.confirmed_round;
        let (ready, waiting): (VecDeque<_>, VecDeque<_>) =
            std::mem::take(&mut self.reads.confirming)
                .into_iter()
                .partition(|c| c.index.is_some() && c.round <= confirmed);
        self.reads.confirming = waiting;
        for read in ready {
            let index = read.index.expect("partitioned on it");
            match read.origin {
                Origin::Local(id) => self.reads.applying.push((id, index)),
                Origin::Remote { from, request } => {
                    self.answer_read_request(from, request, Some(index))
                }
            }
        }
    }

    /// Leader: the first entry of this term committed: queued reads get
    /// their read index, confirmed by a round sent from now on.
    pub(super) fn on_read_commit(&mut self) {
        if !self.first_commit_done() {
            return;
        }
        let committed = self.log.committed();
        let round = self.reads.round_next;
        for read in self
            .reads
            .confirming
            .iter_mut()
            .filter(|c| c.index.is_none())
        {
            read.index = Some(committed);
            read.round = round;
            self.reads.round_wanted = true;
        }
    }

    /// Leader: a configuration was appended; the lease rests on the old
    /// quorum, so it ends, and only rounds sent from now on renew it.
    pub(super) fn on_read_config_change(&mut self) {
        self.reads.lease_end = None;
        self.reads.lease_round_min = self.reads.round_next;
        self.update_confirmed_round();
    }

    /// Leader: a transfer started; its target campaigns past every lease.
    pub(super) fn forfeit_lease(&mut self) {
        self.reads.lease_forfeited = true;
        self.reads.lease_end = None;
    }

    /// Flush: sends a round if a read waits for one and none it could use
    /// is in flight; asks the leader on a follower; hands out ready reads.
    pub(super) fn flush_reads(&mut self) {
        match self.role {
            RoleState::Leader { .. } => {
                let in_flight = self.reads.round_next > self.reads.confirmed_round + 1;
                if self.reads.round_wanted && !in_flight {
                    self.broadcast_heartbeat();
                }
                self.ready_log_reads();
            }
            _ => self.maybe_ask_leader(),
        }
        if self.reads.applying.is_empty() {
            return;
        }
        let applied = self.log.applied();
        let (ready, waiting) = std::mem::take(&mut self.reads.applying)
            .into_iter()
            .partition(|&(_, index)| index <= applied);
        self.reads.applying = waiting;
        for (id, index) in ready {
            self.actions.push_back(Action::ReadReady { id, index });
        }
    }

    /// Leader: log reads whose entry was handed out to apply.
    fn ready_log_reads(&mut self) {
        if self.reads.through_log.is_empty() {
            return;
        }
        let rest = self.reads.through_log.split_off(&self.log.applied().next());
        let done = std::mem::replace(&mut self.reads.through_log, rest);
        for (index, (_, reads)) in done {
            self.reads
                .applying
                .extend(reads.into_iter().map(|id| (id, index)));
        }
    }

    /// Follower: one request for every queued read, when none is out.
    fn maybe_ask_leader(&mut self) {
        let Some(leader) = self.leader else { return };
        if self.reads.asked.is_some() || self.reads.queued.is_empty() {
            return;
        }
        let queued = std::mem::take(&mut self.reads.queued);
        self.reads.next_request += 1;
        let request = self.reads.next_request;
        let deadline = queued.iter().map(|q| q.1).max().unwrap_or(self.now);
        self.reads.asked = Some(Asked {
            request,
            leader,
            reads: queued.into_iter().map(|q| q.0).collect(),
            deadline,
        });
        let body = MessageBody::ReadIndexRequest(ReadIndexRequest {
            request,
            lease: self.options.check_quorum,
        });
        self.send(leader, body);
    }

    /// The entry at `applied` is handed out: a log read waiting there is
    /// ready if the entry is its own, failed if another leader's replaced it.
    pub(super) fn check_log_read(&mut self, applied: super::ids::LogId) {
        if let Some((term, reads)) = self.reads.through_log.remove(&applied.index) {
            if term == applied.term {
                self.reads.through_log.insert(applied.index, (term, reads));
            } else {
                self.fail_reads(reads, ReadFailure::LeadershipLost { leader_hint: None });
            }
        }
    }

    /// This node stopped leading (or its leader changed, or the term did):
    /// reads that depended on it fail; reads with a committed index keep
    /// waiting for their apply, which is safe under any leader.
    pub(super) fn on_read_role_change(&mut self) {
        let hint = self.leader;
        let error = ReadFailure::LeadershipLost { leader_hint: hint };
        if !matches!(self.role, RoleState::Leader { .. }) {
            self.reads.lease_end = None;
            for read in std::mem::take(&mut self.reads.confirming) {
                match read.origin {
                    Origin::Local(id) => self.fail_reads(vec![id], error.clone()),
                    Origin::Remote { from, request } => {
                        self.answer_read_request(from, request, None)
                    }
                }
            }
            let through_log = std::mem::take(&mut self.reads.through_log);
            let mut lost: Vec<ReadId> = Vec::new();
            for (index, (term, reads)) in through_log {
                if index <= self.log.committed() && self.log.term_at(index) == Some(term) {
                    // Committed as ours: it is applied in due course.
                    self.reads
                        .applying
                        .extend(reads.into_iter().map(|id| (id, index)));
                } else {
                    lost.extend(reads);
                }
            }
            self.fail_reads(lost, error.clone());
        }
        let still_asking = self
            .reads
            .asked
            .as_ref()
            .is_some_and(|a| Some(a.leader) == self.leader);
        if !still_asking && let Some(asked) = self.reads.asked.take() {
            self.fail_reads(asked.reads, error);
        }
        let leading = matches!(self.role, RoleState::Leader { .. });
        if leading {
            // Queued follower reads become leader reads of this term.
            let queued = std::mem::take(&mut self.reads.queued);
            for (id, deadline) in queued {
                self.confirm_read(Origin::Local(id), deadline);
            }
        }
    }

    /// A new leadership: fresh rounds, no lease yet.
    pub(super) fn reset_read_rounds(&mut self) {
        let reads = &mut self.reads;
        reads.round_next = 1;
        reads.round_wanted = false;
        reads.sent_rounds.clear();
        reads.acked_rounds.clear();
        reads.confirmed_round = 0;
        reads.lease_round_min = 0;
        reads.lease_end = None;
        reads.lease_forfeited = false;
    }

    /// Fails reads whose deadline passed.
    pub(super) fn expire_reads(&mut self) {
        let now = self.now;
        let (expired, live): (VecDeque<_>, VecDeque<_>) =
            std::mem::take(&mut self.reads.confirming)
                .into_iter()
                .partition(|c| c.deadline <= now);
        self.reads.confirming = live;
        for read in expired {
            match read.origin {
                Origin::Local(id) => self.fail_reads(vec![id], ReadFailure::Timeout),
                Origin::Remote { from, request } => self.answer_read_request(from, request, None),
            }
        }
        let (expired, live) = std::mem::take(&mut self.reads.queued)
            .into_iter()
            .partition(|q| q.1 <= now);
        self.reads.queued = live;
        let expired: Vec<(ReadId, Instant)> = expired;
        self.fail_reads(
            expired.into_iter().map(|q| q.0).collect(),
            ReadFailure::Timeout,
        );
        if self.reads.asked.as_ref().is_some_and(|a| a.deadline <= now) {
            let asked = self.reads.asked.take().expect("checked");
            self.fail_reads(asked.reads, ReadFailure::Timeout);
        }
    }

    fn fail_reads(&mut self, reads: Vec<ReadId>, error: ReadFailure) {
        for id in reads {
            let error = error.clone();
            self.actions.push_back(Action::ReadFailed { id, error });
        }
    }
}
