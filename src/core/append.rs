//! The follower side of replication: AppendEntries and heartbeats, log
//! matching, conflict truncation, commit from the leader, and durable-only
//! acknowledgements (braft's `handle_append_entries_request`).

use super::error::InputError;
use super::ids::{LogId, NodeId};
use super::message::{AppendRequest, AppendResponse, Heartbeat, MessageBody, RejectHint};
use super::node::{RaftNode, RoleState};

impl RaftNode {
    /// Accepts the leader of the current term (a candidate of the same term
    /// steps down) and restarts the election timer.
    pub(super) fn follow(&mut self, from: NodeId) -> Result<(), InputError> {
        if let RoleState::Leader { .. } = self.role {
            return Err(InputError::DuplicateLeader {
                from,
                term: self.term(),
            });
        }
        if !matches!(self.role, RoleState::Follower) || self.leader != Some(from) {
            self.become_follower(self.term(), Some(from));
        } else {
            self.set_leader(Some(from));
            self.restart_election_deadline();
        }
        Ok(())
    }

    pub(super) fn handle_append_request(
        &mut self,
        from: NodeId,
        req: AppendRequest,
    ) -> Result<(), InputError> {
        self.check_append_shape(&req)?;
        self.follow(from)?;
        let AppendRequest {
            mut prev_log_id,
            mut entries,
            leader_commit,
        } = req;
        // Entries up to our commit index are the leader's too (§5.4, Leader
        // Completeness): skip them, and with them any compacted prefix.
        let committed = self.log.committed();
        if prev_log_id.index < committed {
            let skip = (committed.0 - prev_log_id.index.0).min(entries.len() as u64);
            entries = entries.range(skip as usize..entries.len());
            let term = self
                .log
                .term_at(committed)
                .expect("committed entry is held");
            prev_log_id = LogId {
                term,
                index: committed,
            };
        }
        if !self.log.matches(prev_log_id) {
            let rejected = prev_log_id.index;
            let conflict = self
                .log
                .term_at(rejected)
                .map(|t| (t, self.log.first_index_of_term_at(rejected)));
            let hint = RejectHint {
                last_index: self.log.last_index(),
                conflict,
            };
            self.send(
                from,
                MessageBody::AppendResponse(AppendResponse::Reject { rejected, hint }),
            );
            return Ok(());
        }
        let last_new = prev_log_id.index.plus(entries.len() as u64);
        // Raft §5.3: delete a conflicting suffix, append what is new.
        let first_new = entries.iter().position(|e| !self.log.matches(e.id));
        if let Some(first_new) = first_new {
            let at = entries[first_new].id.index;
            if at <= self.log.last_index() {
                if at <= self.log.committed() {
                    return Err(InputError::ConflictWithCommitted { index: at });
                }
                self.truncate_log_from(at);
                self.fail_proposals_from(at, Some(entries[first_new].id.term));
            }
            for entry in &entries[first_new..] {
                self.append_entry(entry.clone());
            }
            // The disk writes (and may apply) these very entries: share them.
            self.log.set_recent(entries.range(first_new..entries.len()));
        }
        self.leader_matched = self.leader_matched.max(last_new);
        self.ack_wanted = self.ack_wanted.max(last_new);
        self.ack_owed = true;
        // Only what is known to match the leader may be committed.
        self.log.commit_to(leader_commit.min(last_new));
        Ok(())
    }

    /// Rejects requests no correct leader sends: entries not contiguous
    /// after `prev_log_id`, terms going back, or terms beyond the message's.
    fn check_append_shape(&self, req: &AppendRequest) -> Result<(), InputError> {
        let mut expected = req.prev_log_id;
        if expected.term > self.term() {
            return Err(InputError::MalformedAppend {
                reason: "prev_log_id term beyond message term",
            });
        }
        for entry in &req.entries {
            if entry.id.index != expected.index.next() {
                return Err(InputError::MalformedAppend {
                    reason: "entries not contiguous",
                });
            }
            if entry.id.term < expected.term || entry.id.term > self.term() {
                return Err(InputError::MalformedAppend {
                    reason: "entry term out of order",
                });
            }
            expected = entry.id;
        }
        Ok(())
    }

    pub(super) fn handle_heartbeat(
        &mut self,
        from: NodeId,
        hb: Heartbeat,
    ) -> Result<(), InputError> {
        self.follow(from)?;
        // The leader caps the commit at what we acknowledged durably, so
        // our log matches it that far (even across our restarts).
        self.log.commit_to(hb.leader_commit);
        // For the same reason that much is known to match this leader, and
        // known to it: a follower that followed it afresh (after a timeout
        // of its own) learns it here, as a heartbeat brings no entries, or
        // it would never count as caught up for a `Quiesce`. No ack for it.
        let known = hb.leader_commit.min(self.log.last_index());
        self.leader_matched = self.leader_matched.max(known);
        self.last_acked = self.last_acked.max(known);
        let round = hb.round;
        self.send(from, MessageBody::HeartbeatResponse { round });
        Ok(())
    }

    /// Acknowledges to the leader what is both durable and known to match
    /// it — and nothing before the current term and vote are durable.
    pub(super) fn maybe_send_ack(&mut self) {
        let Some(leader) = self.leader else { return };
        if self.durable_hard_state != self.hard_state {
            return;
        }
        let ackable = self.log.persisted().min(self.leader_matched);
        let complete = ackable >= self.ack_wanted;
        if (self.ack_owed && complete) || ackable > self.last_acked {
            self.last_acked = ackable;
            if complete {
                self.ack_owed = false;
            }
            let ack = AppendResponse::Success {
                match_index: ackable,
            };
            self.send(leader, MessageBody::AppendResponse(ack));
        }
    }
}
