//! Whom a node listens to: the term ceiling and the senders it knows —
//! defence in depth under the runtime's authentication.
//!
//! Raft assumes every message comes from an honest member (crash faults
//! only), yet any process that reaches a socket can send one. Every message
//! passes [`RaftNode::check_trust`] before anything changes, which refuses
//! what no honest member sends:
//!
//! - a term above [`Term::MAX`] (or a snapshot offer whose last entry is
//!   from a later term than the message), unanswered;
//! - a vote request from a node that is not a voter of the configuration in
//!   effect, so that a removed server cannot disrupt the group
//!   (dissertation §4.2.3);
//! - a response from a node this one does not know: it asked it nothing
//!   (a read-index answer counts only from the leader it was asked of, for
//!   the request it names: `read.rs`);
//! - a request for a read index from a node that is no member: a leader
//!   serves reads to its voters and learners only, and at most
//!   `read_pending_max` at a time;
//! - a leader's message (append, heartbeat, snapshot offer, TimeoutNow) from
//!   a node this one does not know, with the exceptions below.
//!
//! A node *knows* a member (voter of either half, or learner) of the
//! configuration committed here or of any configuration appended after it.
//! A real leader holds every committed entry (Leader Completeness, Raft
//! §5.4), so its own newest configuration is the one committed here or a
//! later one (configurations take effect when appended, dissertation §4.1)
//! that this node may simply not hold yet. So that such a lagging member,
//! or a new server (§4.2.1), still hears from its leader, a leader's message
//! from an unknown sender is accepted when
//!
//! 1. this node is joining: it is not a member of any configuration it
//!    knows (an empty bootstrap), so it cannot judge and waits for a leader;
//! 2. the sender is the leader this node follows in the current term (it
//!    qualified earlier in the term);
//! 3. the message carries a configuration naming the sender: a configuration
//!    entry past our commit index in an append, a snapshot offer's membership.
//!
//! Otherwise it is refused: the term is not adopted, the log, the election
//! timer and the leader stay as they were, and an append or a heartbeat is
//! answered, at the message's own term, with [`RejectHint::refusal`]: our
//! last index and nothing else. A real leader answers that with an
//! introduction ([`RaftNode::introduce`]): a probe from its newest
//! configuration entry naming it (exception 3), or its snapshot when that
//! entry is compacted; it then backs up to our log's end as our leader of
//! the term (exception 2), however many appends that takes.
//!
//! Not stopped here: a sender that forges a member's id, or a configuration
//! naming itself. Authenticating peers is the runtime's job.

use super::entry::EntryPayload;
use super::error::InputError;
use super::ids::{NodeId, Term};
use super::message::{AppendResponse, Message, MessageBody, RejectHint};
use super::node::{RaftNode, RoleState};
use super::output::Action;
use super::progress::ProgressState;

impl RaftNode {
    /// Refuses a message no honest peer sends, before anything changes (see
    /// the module doc); a refused leader's message may be answered.
    pub(super) fn check_trust(&mut self, m: &Message) -> Result<(), InputError> {
        if m.term > Term::MAX {
            return Err(InputError::TermAboveCeiling { term: m.term });
        }
        match &m.body {
            // Votes are refused from non-voters outright: a candidate a new
            // leader has not told about yet is none of our business.
            // A removed server is told so (`removed.rs`).
            MessageBody::VoteRequest(_) if !self.configs.effective().is_voter(m.from) => {
                self.tell_removed(m);
                Err(InputError::UnknownPeer { from: m.from })
            }
            MessageBody::VoteRequest(_) => Ok(()),
            MessageBody::AppendRequest(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::Quiesce(_)
            | MessageBody::InstallSnapshot(_)
            | MessageBody::TimeoutNow => self.check_leader(m),
            // Members only (learners included): a stranger's reads would
            // only take queue slots from theirs.
            MessageBody::ReadIndexRequest(_) if !self.knows(m.from) => {
                Err(InputError::UnknownPeer { from: m.from })
            }
            _ if self.knows(m.from) => Ok(()),
            _ => Err(InputError::UnknownPeer { from: m.from }),
        }
    }

    /// Whether `id` is a member of the configuration committed here or of
    /// one appended after it.
    pub(super) fn knows(&self, id: NodeId) -> bool {
        self.configs.names_since(self.log.committed(), id)
    }

    /// A message only a leader sends: accepted from a node this one knows,
    /// or under the exceptions of the module doc; refused and answered
    /// otherwise.
    fn check_leader(&mut self, m: &Message) -> Result<(), InputError> {
        if let MessageBody::InstallSnapshot(info) = &m.body
            && info.last_included.term > m.term
        {
            return Err(InputError::MalformedSnapshot {
                reason: "last entry from a term beyond the message's",
            });
        }
        // The cheap test first: nearly every message comes from our leader.
        let our_leader = self.leader == Some(m.from) && m.term == self.term();
        let joining = || !self.knows(self.id());
        if our_leader || self.knows(m.from) || joining() || self.names_sender(m) {
            return Ok(());
        }
        let last_index = self.log.last_index();
        let answer = match &m.body {
            MessageBody::AppendRequest(req) => {
                Some(MessageBody::AppendResponse(AppendResponse::Reject {
                    rejected: req.prev_log_id.index,
                    hint: RejectHint::refusal(last_index),
                }))
            }
            // At or below the leader's commit, so at or below its last index.
            MessageBody::Heartbeat(hb) | MessageBody::Quiesce(hb) => {
                Some(MessageBody::AppendResponse(AppendResponse::Reject {
                    rejected: hb.leader_commit.min(last_index),
                    hint: RejectHint::refusal(last_index),
                }))
            }
            // The leader probes again after its next heartbeat, whose
            // refusal brings the introduction.
            MessageBody::InstallSnapshot(info) => Some(MessageBody::SnapshotFailed {
                last: info.last_included,
            }),
            _ => None,
        };
        if let Some(body) = answer {
            // At the message's term: ours is none of a stranger's business,
            // and a real leader must not step down on it.
            self.actions.push_back(Action::Send(Message {
                from: self.id(),
                to: m.from,
                term: m.term,
                body,
            }));
        }
        Err(InputError::UnknownPeer { from: m.from })
    }

    /// Whether the message carries a configuration naming its sender that
    /// this node does not hold yet: an entry past our commit index (the
    /// committed ones we hold), or a snapshot offer's membership.
    fn names_sender(&self, m: &Message) -> bool {
        let committed = self.log.committed();
        match &m.body {
            MessageBody::AppendRequest(req) => req.entries.iter().any(|e| {
                e.id.index > committed
                    && matches!(&e.payload, EntryPayload::Config(c) if c.contains(m.from))
            }),
            MessageBody::InstallSnapshot(info) => info.membership.contains(m.from),
            _ => false,
        }
    }

    /// Leader: `peer` refused this leader as unknown — its configuration
    /// predates the one naming us. Probes it from our newest configuration
    /// entry naming us, which the follower counts (module doc, exception 3);
    /// or offers the snapshot when that entry was compacted into it.
    pub(super) fn introduce(&mut self, peer: NodeId) {
        let me = self.id();
        let first = self.log.first_index();
        let entry = self
            .configs
            .newest_entry_naming(me)
            .filter(|&at| at >= first);
        let in_snapshot = self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.membership.contains(me));
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let Some(p) = progress.get_mut(&peer) else {
            return;
        };
        match entry {
            Some(at) => {
                p.on_introduce(at);
                self.send_appends(peer, false);
            }
            None if in_snapshot && p.state != ProgressState::Snapshot => {
                self.send_snapshot(peer);
            }
            None if in_snapshot => {}
            None => tracing::debug!(node = %me, %peer, "refused as unknown, and nothing names us"),
        }
    }
}
