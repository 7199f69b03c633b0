//! Typed errors of the core. Bad input is an error value, never a panic.

use super::ids::{LogId, LogIndex, NodeId, Term};

/// Why a client proposal was refused at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalRefused {
    /// Only the leader accepts proposals. Remedy: retry at `leader_hint`.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node last heard from in its current term, if any.
        leader_hint: Option<NodeId>,
    },
}

/// Why a read was refused at once ([`RaftNode::read`](super::RaftNode::read)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A log read on a non-leader, or a follower read with no leader known
    /// to ask. Remedy: retry at `leader_hint`, or later.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// `read_pending_max` reads are pending already. Remedy: retry later.
    #[error("too many reads pending (at most {pending_max})")]
    Busy {
        /// The limit.
        pending_max: usize,
    },
}

/// Why an accepted read failed. Every failure is retryable: nothing was
/// served, and a read changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadFailure {
    /// The leader this read depended on stepped down, or a new one took
    /// over, before the read was confirmed. Remedy: retry (at `leader_hint`).
    #[error("leadership lost before the read was confirmed (leader hint: {leader_hint:?})")]
    LeadershipLost {
        /// The leader this node knows of now, if any.
        leader_hint: Option<NodeId>,
    },
    /// The node asked for a read index does not lead (or is overloaded).
    /// Remedy: retry at `leader_hint`, or later.
    #[error("the leader asked refused the read (leader hint: {leader_hint:?})")]
    NotLeader {
        /// Another leader this node knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// No quorum confirmed the read within an election timeout. Remedy:
    /// retry; the group may be partitioned.
    #[error("the read was not confirmed in time")]
    Timeout,
}

/// Why an accepted proposal will never be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalLost {
    /// A later leader replaced the proposal's entry: the command was not and
    /// will never be applied. Remedy: propose again to the current leader.
    #[error("proposal {proposal} was overwritten by an entry of term {by_term:?}")]
    Overwritten {
        /// The proposal's log position.
        proposal: LogId,
        /// The term of the entry that replaced it, when known.
        by_term: Option<Term>,
    },
    /// A snapshot installed from the leader covered the proposal's index
    /// before this node applied it: it may or may not have been applied,
    /// and its response is lost. Remedy: read back, or retry an idempotent
    /// command.
    #[error("proposal {proposal} was covered by an installed snapshot; outcome unknown")]
    OutcomeUnknown {
        /// The proposal's log position.
        proposal: LogId,
    },
}

/// Why an input (a message or a disk completion) was rejected. Rejected
/// inputs change nothing durable. Two are answered: a request from a stale
/// term with the current term, so that its sender catches up; a leader's
/// message from an unknown sender with a refusal at the message's own term
/// (see [`InputError::UnknownPeer`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The sender is not a member of the group as this node knows it: not
    /// in the configuration committed here nor in any appended after it
    /// (for a vote request: not a voter of the configuration in effect).
    /// An append or a heartbeat is answered with a refusal carrying only
    /// this node's last index, at the message's term; nothing else changes.
    /// Remedy: none for a real leader, which answers the refusal with the
    /// configuration entry that added it; otherwise find who sends as
    /// `from` (a node of another group, a stale address, an attacker).
    #[error("message from unknown peer {from}")]
    UnknownPeer {
        /// The sender.
        from: NodeId,
    },
    /// The message carries a term above [`Term::MAX`], which no honest node
    /// reaches; it was refused unanswered, before anything changed.
    /// Remedy: find the faulty or hostile process sending as its sender.
    #[error("message term {term} is above the ceiling {}", Term::MAX)]
    TermAboveCeiling {
        /// The offending term.
        term: Term,
    },
    /// The message is addressed to another node, or claims to come from this one.
    #[error("message from {from} to {to} delivered to {this}")]
    Misaddressed {
        /// The claimed sender.
        from: NodeId,
        /// The addressee.
        to: NodeId,
        /// This node.
        this: NodeId,
    },
    /// The message is from an older term; it was answered with ours if it
    /// was a request.
    #[error("message of stale term {message_term} (current term {current_term})")]
    StaleTerm {
        /// The message's term.
        message_term: Term,
        /// This node's term.
        current_term: Term,
    },
    /// An index beyond anything this node's log could hold or could have sent.
    #[error("index {index} out of range (last index {last_index})")]
    IndexOutOfRange {
        /// The offending index.
        index: LogIndex,
        /// This node's last index.
        last_index: LogIndex,
    },
    /// An AppendEntries whose entries are not contiguous after `prev_log_id`,
    /// go back in term, or are from a term later than the message's.
    #[error("malformed append request: {reason}")]
    MalformedAppend {
        /// What is wrong.
        reason: &'static str,
    },
    /// AppendEntries from a second leader in this node's own term as leader:
    /// election safety is broken somewhere; the message is ignored.
    #[error("append from {from} while this node leads term {term}")]
    DuplicateLeader {
        /// The other claimed leader.
        from: NodeId,
        /// The term.
        term: Term,
    },
    /// The leader asked to overwrite a committed entry; refused (§5.4).
    #[error("append would overwrite committed entry at {index}")]
    ConflictWithCommitted {
        /// The committed index the request conflicts at.
        index: LogIndex,
    },
    /// A snapshot offer no correct leader sends: its last entry is from a
    /// term later than the message's.
    #[error("malformed snapshot offer: {reason}")]
    MalformedSnapshot {
        /// What is wrong.
        reason: &'static str,
    },
    /// A disk completion for entries no longer in the log (truncated since),
    /// or never handed to the disk.
    #[error("disk completion for {up_to}, which the log does not hold as handed to disk")]
    StaleDiskCompletion {
        /// The completion's position.
        up_to: LogId,
    },
    /// A snapshot reported saved beyond what was applied, or of an entry
    /// the log never held.
    #[error("snapshot through {last} does not match the applied log (applied {applied})")]
    SnapshotMismatch {
        /// The snapshot's last entry.
        last: LogId,
        /// This node's applied index.
        applied: LogIndex,
    },
    /// An install completion for a snapshot this node was not installing.
    #[error("snapshot {last} was not being installed")]
    UnexpectedSnapshot {
        /// The snapshot's last entry.
        last: LogId,
    },
    /// A term/vote completion for a term this node never reached.
    #[error("hard state completion for future term {term}")]
    FutureHardState {
        /// The completion's term.
        term: Term,
    },
}

/// Invalid [`RaftOptions`](super::RaftOptions).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// Node id 0 is reserved for "no node".
    #[error("node id 0 is reserved")]
    ZeroNodeId,
    /// Timeouts must satisfy `0 < heartbeat_interval < election_timeout_min < election_timeout_max`.
    #[error(
        "timeouts must satisfy 0 < heartbeat_interval < election_timeout_min < election_timeout_max"
    )]
    Timeouts,
    /// Batching and flow-control limits must be positive.
    #[error("limit {name} must be positive")]
    ZeroLimit {
        /// The option's name.
        name: &'static str,
    },
}

/// Why a membership change was refused. Nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfChangeError {
    /// Only the leader changes the configuration. Remedy: ask `leader_hint`.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node last heard from in its current term, if any.
        leader_hint: Option<NodeId>,
    },
    /// A configuration entry is not committed yet, or a joint configuration
    /// has not been left yet: one change at a time (dissertation §4.1).
    /// Remedy: retry once the configuration is stable.
    #[error("a membership change is in progress (configuration at {pending})")]
    InProgress {
        /// The index of the configuration entry still in flight.
        pending: LogIndex,
    },
    /// A new leader has not committed an entry of its own term yet, so it
    /// does not know the latest committed configuration. Remedy: retry soon.
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// A leadership transfer is running; changes wait for it to end.
    #[error("a leadership transfer to {target} is in progress")]
    TransferInProgress {
        /// The transfer's target.
        target: NodeId,
    },
    /// A configuration needs at least one voter.
    #[error("the new configuration has no voter")]
    EmptyVoters,
    /// The node is not in the configuration (as the change requires).
    #[error("{id} is not a member")]
    NotAMember {
        /// The node.
        id: NodeId,
    },
    /// The node is already a member (as a voter or a learner).
    #[error("{id} is already a member")]
    AlreadyAMember {
        /// The node.
        id: NodeId,
    },
    /// A new voter must first join as a learner and catch up (dissertation
    /// §4.2.1), so that adding it does not stall commits.
    #[error("{id} must join as a learner before it becomes a voter")]
    NotALearner {
        /// The node.
        id: NodeId,
    },
    /// The learner is not known to have caught up with the leader (braft's
    /// `catchup_margin`): it is too far behind, or it has not acknowledged
    /// any append from this leader yet, so nothing shows that it is alive
    /// and holds the log. Remedy: retry once it caught up (a learner that
    /// never answers must be reachable first).
    #[error(
        "learner {id} lags: it holds {matched} (acknowledged: {acknowledged}), the leader {last_index} (margin {margin})"
    )]
    LearnerLagging {
        /// The learner.
        id: NodeId,
        /// The highest index it holds durably, as the leader knows.
        matched: LogIndex,
        /// Whether it acknowledged an append from this leader: a silent
        /// learner is never promoted, however short the log.
        acknowledged: bool,
        /// The leader's last index.
        last_index: LogIndex,
        /// The allowed lag (`RaftOptions::catchup_margin`).
        margin: u64,
    },
    /// The requested configuration is not one a change may reach.
    #[error("invalid configuration: {reason}")]
    Invalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// The requested configuration is the current one.
    #[error("the configuration is unchanged")]
    Unchanged,
    /// `reset_peers` needs a new term, and this node's term is at
    /// [`Term::MAX`] (which only a faulty or hostile peer could have pushed
    /// it to). Remedy: none within the protocol; rebuild the group's state.
    #[error("term {term} is at the ceiling: no new term can start")]
    TermAtCeiling {
        /// The node's term.
        term: Term,
    },
}

/// Why a leadership transfer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Only the leader transfers leadership. Remedy: ask `leader_hint`.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node last heard from in its current term, if any.
        leader_hint: Option<NodeId>,
    },
    /// This node already leads.
    #[error("transfer to self")]
    ToSelf,
    /// The target is not a voter of the configuration in effect.
    #[error("{id} is not a voter")]
    NotAVoter {
        /// The target.
        id: NodeId,
    },
    /// Another transfer is running.
    #[error("a transfer to {target} is in progress")]
    InProgress {
        /// The running transfer's target.
        target: NodeId,
    },
    /// A membership change is in flight; transfers wait for it to settle.
    #[error("a membership change is in progress")]
    ConfChangeInProgress,
}
