//! Removed servers stop campaigning once a member tells them their removal
//! is committed (dissertation §4.2.3: removed servers disrupting).
//!
//! A server removed while it was cut off, or before the entry leaving it out
//! reached or committed on it, keeps the old configuration: it is a voter
//! there (or of the configuration before an entry it holds uncommitted,
//! `may_campaign`), so it campaigns. Members that left it out refuse it
//! (`trust.rs`), but a voter as far behind still lists it and grants it its
//! vote, term after term, and the servers that could win lose the race.
//!
//! So a member that refuses a vote or pre-vote request from a node its
//! committed configuration does not list as a voter answers with
//! [`MessageBody::Removed`]: the index `i` of the entry carrying that
//! configuration (a snapshot's or the bootstrap's base counts; a forced one
//! from `reset_peers` is carried by no committed entry and does not). The
//! candidate stops campaigning until its log holds a configuration entry
//! after `i`.
//!
//! Safety rests on nothing new: who campaigns never decides what is
//! committed, so no safety property depends on this rule.
//!
//! Liveness: the candidate gives up nothing it could have won. Call X the
//! configuration entry at `i`; it is committed, so every leader of a later
//! term holds it (Leader Completeness, Raft §5.4), and the configuration of
//! any such leader is X or one appended after it. While the candidate's
//! newest configuration entry is at or below `i`, either its log lacks X (it
//! holds nothing at `i`, or another entry there) and an up-to-date quorum
//! never elects it; or X is its newest configuration, which does not make it
//! a voter, and, X being committed, will not be rolled back (the reason
//! `may_campaign` lets the voters of the previous configuration campaign is
//! gone). A server re-added later hears from its leader, which replicates to
//! every member of its configuration: once the entry adding it (after `i`)
//! is in its log, the mark no longer applies. No timing assumption is made:
//! the notice may arrive late, be lost, or be duplicated; it is true forever
//! once sent, and the mark is volatile (a restarted server learns it again
//! from its next refusal). Only a member lying about its commit index could
//! silence a voter, and members are trusted not to (crash faults only; the
//! runtime authenticates them).
//!
//! etcd reaches the same end outside the protocol: its peer transport
//! answers a removed member "gone" and that member shuts down.

use super::ids::{LogIndex, NodeId};
use super::message::{Message, MessageBody};
use super::node::{RaftNode, RoleState};
use super::output::Action;

impl RaftNode {
    /// Responder: `m`, a vote request from a node that is no voter of the
    /// configuration in effect here, was refused; tells the sender when the
    /// committed configuration leaves it out too.
    pub(super) fn tell_removed(&mut self, m: &Message) {
        // A joining node (no configuration it knows names it) cannot judge.
        if !self.knows(self.id()) {
            return;
        }
        let Some((config, membership)) = self.configs.committed_entry(self.log.committed()) else {
            return;
        };
        if membership.is_voter(m.from) {
            // Its removal is not committed yet: it may still be needed.
            return;
        }
        // At the request's term: the recipient reads the notice before any
        // term rule, and a peer that does not know it reads a refusal.
        self.actions.push_back(Action::Send(Message {
            from: self.id(),
            to: m.from,
            term: m.term,
            body: MessageBody::Removed { config },
        }));
    }

    /// Candidate: `from` says the committed configuration entry at `config`
    /// does not list this node as a voter (module doc). A campaign under way
    /// ends at once.
    pub(super) fn handle_removed(&mut self, from: NodeId, config: LogIndex) {
        if self.removed_at.is_none_or(|at| at < config) {
            tracing::info!(node = %self.id(), %from, config = %config.0, "removed by a committed configuration: not campaigning");
            self.removed_at = Some(config);
        }
        let campaigning = matches!(
            self.role,
            RoleState::PreCandidate { .. } | RoleState::Candidate { .. }
        );
        if campaigning && self.removal_known() {
            self.become_follower(self.term(), None);
        }
    }

    /// Whether a member said the committed configuration leaves this node
    /// out, and the log holds no configuration entry after that one.
    pub(super) fn removal_known(&self) -> bool {
        self.removed_at
            .is_some_and(|at| self.configs.effective_index() <= at)
    }
}
