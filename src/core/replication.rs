//! The leader side of replication: what to send each peer, handling their
//! answers, and advancing the commit index (braft's `Replicator` protocol
//! half and `BallotBox`).

use super::error::InputError;
use super::ids::{LogIndex, NodeId};
use super::message::{AppendRequest, AppendResponse, Heartbeat, MessageBody, RejectHint};
use super::node::{RaftNode, RoleState};
use super::progress::ProgressState;

impl RaftNode {
    /// Sends every peer what its window allows; tells idle peers about a
    /// new commit index.
    pub(super) fn replicate_all(&mut self) {
        let last = self.log.last_index();
        let committed = self.log.committed();
        let RoleState::Leader { progress } = &self.role else {
            return;
        };
        // Most flushes have nothing for most peers: only those with work
        // are visited, from ids gathered in a reused buffer (`send_appends`
        // needs `self` mutably; collecting anew would allocate every flush).
        let mut due = std::mem::take(&mut self.due_peers);
        for (&id, p) in progress {
            if p.has_appends_due(last) || p.has_commit_due(committed) {
                due.push(id);
            }
        }
        for &peer in &due {
            if !self.send_appends(peer, false) {
                self.announce_commit(peer);
            }
        }
        due.clear();
        self.due_peers = due;
    }

    /// Sends appends to `peer` while its window allows and entries remain;
    /// with `probe_empty`, sends one empty append even with nothing new.
    /// Returns whether anything was sent.
    pub(super) fn send_appends(&mut self, peer: NodeId, mut probe_empty: bool) -> bool {
        let mut sent = false;
        loop {
            let RoleState::Leader { progress } = &mut self.role else {
                return sent;
            };
            let Some(p) = progress.get_mut(&peer) else {
                return sent;
            };
            let last = self.log.last_index();
            if !p.has_appends_due(last) && (p.is_paused() || !probe_empty) {
                return sent;
            }
            probe_empty = false;
            let prev_index = p.next.prev();
            let Some(prev_term) = self.log.term_at(prev_index) else {
                // The entries this peer needs were compacted away.
                return self.send_snapshot(peer) || sent;
            };
            let (entries, bytes) = self.log.slice(
                p.next,
                last.next(),
                self.options.append_entries_max,
                self.options.append_bytes_max,
            );
            if entries.is_empty() && p.next <= self.log.evicted_through() {
                // Evicted from memory: read back from disk, sent when it
                // arrives (`log_load.rs`).
                self.request_load(peer);
                return sent;
            }
            let last_sent = entries.last().map_or(prev_index, |e| e.id.index);
            p.on_sent(last_sent, bytes);
            p.commit_sent = self.log.committed();
            let request = AppendRequest {
                prev_log_id: super::ids::LogId {
                    term: prev_term,
                    index: prev_index,
                },
                entries,
                leader_commit: self.log.committed(),
            };
            self.send(peer, MessageBody::AppendRequest(request));
            sent = true;
        }
    }

    /// Tells a caught-up peer a commit index it has not heard, with an
    /// empty append. A peer with appends in flight hears it with the next one.
    fn announce_commit(&mut self, peer: NodeId) {
        let RoleState::Leader { progress } = &self.role else {
            return;
        };
        let Some(p) = progress.get(&peer) else { return };
        if p.has_commit_due(self.log.committed()) {
            self.send_appends(peer, true);
        }
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        self.broadcast_heartbeat_as(false);
    }

    /// Sends every peer a heartbeat (a `Quiesce` with `quiesce`), which
    /// starts a read round.
    pub(super) fn broadcast_heartbeat_as(&mut self, quiesce: bool) {
        self.expire_snapshot_installs();
        let committed = self.log.committed();
        if !matches!(self.role, RoleState::Leader { .. }) {
            return;
        }
        let round = self.start_read_round();
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let beats: Vec<(NodeId, LogIndex)> = progress
            .iter_mut()
            .map(|(&id, p)| {
                let leader_commit = committed.min(p.matched);
                p.commit_sent = p.commit_sent.max(leader_commit);
                (id, leader_commit)
            })
            .collect();
        for (peer, leader_commit) in beats {
            let beat = Heartbeat {
                leader_commit,
                round,
            };
            let body = match quiesce {
                true => MessageBody::Quiesce(beat),
                false => MessageBody::Heartbeat(beat),
            };
            self.send(peer, body);
        }
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        // `check_trust` let only known peers' responses through.
        self.handle_round_ack(from, round);
        let last = self.log.last_index();
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let Some(p) = progress.get_mut(&from) else {
            return;
        };
        p.on_heartbeat_response();
        // The peer lags and nothing is on its way: the last appends may have
        // been lost, so probe where it should be.
        let stuck = p.matched < last && p.state == ProgressState::Replicate && p.next > last;
        self.send_appends(from, stuck);
    }

    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        resp: AppendResponse,
    ) -> Result<(), InputError> {
        let last_index = self.log.last_index();
        let hint_next = match resp {
            AppendResponse::Success { match_index } if match_index > last_index => {
                return Err(InputError::IndexOutOfRange {
                    index: match_index,
                    last_index,
                });
            }
            AppendResponse::Reject { rejected, hint } => {
                if rejected > last_index {
                    return Err(InputError::IndexOutOfRange {
                        index: rejected,
                        last_index,
                    });
                }
                if hint.refuses_sender(rejected) {
                    // Its configuration predates ours (`trust.rs`). Not a
                    // sign of life: it does not follow us yet.
                    self.introduce(from);
                    return Ok(());
                }
                Some((rejected, self.next_from_hint(rejected, hint)))
            }
            AppendResponse::Success { .. } => None,
        };
        let RoleState::Leader { progress } = &mut self.role else {
            return Ok(());
        };
        let Some(p) = progress.get_mut(&from) else {
            return Ok(());
        };
        p.recent_active = true;
        match (resp, hint_next) {
            (AppendResponse::Success { match_index }, _) if p.on_ack(match_index) => {
                // One voter's match rising to at most the commit index
                // cannot lift a quorum above it (in a batch of one, the
                // second follower's ack): skip the count.
                if match_index > self.log.committed() {
                    self.maybe_commit();
                }
                self.maybe_send_timeout_now(from);
            }
            (AppendResponse::Reject { .. }, Some((rejected, next))) => {
                p.on_reject(rejected, next);
            }
            _ => {}
        }
        self.send_appends(from, false);
        Ok(())
    }

    /// Where the logs may match, from a follower's rejection hint: skip the
    /// follower's whole conflicting term per round trip.
    fn next_from_hint(&self, rejected: LogIndex, hint: RejectHint) -> LogIndex {
        match hint.conflict {
            Some((conflict_term, conflict_first)) => {
                let (index, term) = self
                    .log
                    .last_index_with_term_at_most(rejected, conflict_term);
                if term == conflict_term {
                    // Both hold entries of that term, which came from one
                    // leader: they match up to our last one of it.
                    index.next()
                } else {
                    index.next().min(conflict_first)
                }
            }
            None => hint.last_index.next(),
        }
    }

    /// Advances the commit index to what a quorum holds durably — only
    /// through an entry of the current term (Raft §5.4.2, Figure 8).
    pub(super) fn maybe_commit(&mut self) {
        let RoleState::Leader { progress } = &self.role else {
            return;
        };
        let me = self.id();
        let own = self.log.persisted();
        let quorum_index = self.configs.effective().committed_index(|id| {
            if id == me {
                Some(own)
            } else {
                progress.get(&id).map(|p| p.matched)
            }
        });
        if quorum_index <= self.log.committed() {
            return;
        }
        if self.log.term_at(quorum_index) == Some(self.term()) && self.log.commit_to(quorum_index) {
            self.on_read_commit();
            self.on_leader_commit();
        }
    }
}
