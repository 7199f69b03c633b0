//! Snapshots and log compaction (Raft §7; braft's `SnapshotExecutor`,
//! protocol half): the core decides, the driver moves the bytes.
//!
//! ```text
//!  local:  state machine saves ──handle_snapshot_saved──► compact memory log,
//!                                                          Action::CompactLog
//!  leader: peer needs compacted entries ──► InstallSnapshot message, peer in Snapshot state
//!  follower: InstallSnapshot ──► Action::InstallSnapshot (driver pulls, saves, loads)
//!            ──handle_snapshot_installed──► keep matching suffix or Action::ResetLog,
//!                                           acknowledge like an append
//! ```

use std::sync::Arc;

use super::config_manager::ConfigManager;
use super::error::{InputError, ProposalLost};
use super::ids::{LogId, NodeId};
use super::membership::Membership;
use super::message::MessageBody;
use super::node::{RaftNode, RoleState};
use super::output::Action;
use super::progress::ProgressState;
use super::time::Instant;

/// What a snapshot covers: its last entry and the configuration in effect
/// there (braft's `SnapshotMeta`, without the file list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The last entry the snapshot includes.
    pub last_included: LogId,
    /// The configuration as of `last_included`. Shared: a snapshot's
    /// description travels in messages and actions, and inline its sets
    /// would make every message and action larger.
    pub membership: Arc<Membership>,
}

impl RaftNode {
    /// The newest durable snapshot this node holds.
    pub fn snapshot(&self) -> Option<&SnapshotInfo> {
        self.snapshot.as_ref()
    }

    /// The state machine saved a durable snapshot through `info.last`
    /// (which it has applied): the log before it, less the compaction
    /// margin, is dropped from memory and `CompactLog` tells storage.
    ///
    /// # Errors
    /// `SnapshotMismatch` for a snapshot beyond the applied index or of an
    /// entry this log does not hold; it changes nothing.
    pub fn handle_snapshot_saved(
        &mut self,
        now: Instant,
        info: SnapshotInfo,
    ) -> Result<(), InputError> {
        self.advance_time(now);
        let newest = self
            .snapshot
            .as_ref()
            .map_or(0, |s| s.last_included.index.0);
        if info.last_included.index.0 <= newest {
            return Ok(()); // an older save finishing late
        }
        let applied = self.log.applied();
        if info.last_included.index > applied || !self.log.matches(info.last_included) {
            return Err(InputError::SnapshotMismatch {
                last: info.last_included,
                applied,
            });
        }
        let keep_from = info
            .last_included
            .index
            .0
            .saturating_sub(self.options.compaction_margin);
        self.snapshot = Some(info);
        if let Some(through) = self.log.compact_to(super::ids::LogIndex(keep_from)) {
            self.configs.truncate_prefix(through.index);
            self.actions.push_back(Action::CompactLog { through });
        }
        self.finish_input();
        Ok(())
    }

    /// The snapshot offered by the leader is durable and loaded into the
    /// state machine. A log that holds the snapshot's last entry keeps what
    /// follows it (Raft §7); any other log is replaced by the snapshot.
    ///
    /// # Errors
    /// `UnexpectedSnapshot` if this is not the snapshot being installed.
    pub fn handle_snapshot_installed(
        &mut self,
        now: Instant,
        info: SnapshotInfo,
    ) -> Result<(), InputError> {
        self.advance_time(now);
        if self.installing.as_ref() != Some(&info) {
            return Err(InputError::UnexpectedSnapshot {
                last: info.last_included,
            });
        }
        self.installing = None;
        let last = info.last_included;
        let keeps_log = self.log.matches(last) && self.log.persisted() >= last.index;
        if !keeps_log {
            self.fail_proposals_from(last.index.next(), None);
        }
        // Proposals the snapshot covers were never applied here: their
        // outcome is in the snapshot, beyond this node's knowledge.
        let rest = self.proposals.split_from(last.index.next());
        for (index, term) in std::mem::replace(&mut self.proposals, rest) {
            let proposal = LogId { term, index };
            let error = match self.log.term_at(index) {
                Some(t) if t != term => ProposalLost::Overwritten {
                    proposal,
                    by_term: Some(t),
                },
                _ => ProposalLost::OutcomeUnknown { proposal },
            };
            self.actions.push_back(Action::ProposalFailed(error));
        }
        if keeps_log {
            self.log.skip_to_snapshot(last.index);
        } else {
            self.log.reset_to(last);
            self.configs = ConfigManager::new(last.index, Membership::clone(&info.membership));
            self.actions.push_back(Action::ResetLog { snapshot: last });
        }
        self.snapshot = Some(info);
        // Acknowledge like an append, through the durable-only path.
        self.leader_matched = self.leader_matched.max(last.index);
        self.ack_wanted = self.ack_wanted.max(last.index);
        self.ack_owed = true;
        self.finish_input();
        Ok(())
    }

    /// The snapshot offered by the leader could not be installed (the copy
    /// failed): the leader is told, and offers its newest one again.
    pub fn handle_snapshot_install_failed(&mut self, now: Instant, info: SnapshotInfo) {
        self.advance_time(now);
        if self.installing.as_ref() == Some(&info) {
            self.installing = None;
            if let Some(leader) = self.leader {
                self.send(
                    leader,
                    MessageBody::SnapshotFailed {
                        last: info.last_included,
                    },
                );
            }
        }
        self.finish_input();
    }

    /// Follower: the leader offers a snapshot.
    pub(super) fn handle_install_snapshot(&mut self, from: NodeId, info: SnapshotInfo) {
        if info.last_included.index <= self.log.committed() {
            // Nothing to install: what it covers is committed here. Tell the
            // leader where this log stands.
            self.leader_matched = self.leader_matched.max(self.log.committed());
            self.ack_owed = true;
            return;
        }
        let newer = self
            .installing
            .as_ref()
            .is_none_or(|cur| cur.last_included.index < info.last_included.index);
        if newer {
            self.installing = Some(info.clone());
            self.actions.push_back(Action::InstallSnapshot {
                from,
                snapshot: info,
            });
        }
    }

    /// Leader: offers the newest snapshot to `peer`, whose next entries were
    /// compacted away. Returns whether it was sent.
    pub(super) fn send_snapshot(&mut self, peer: NodeId) -> bool {
        let Some(info) = self.snapshot.clone() else {
            tracing::warn!(%peer, "peer needs compacted entries but no snapshot is known");
            return false;
        };
        let now = self.now;
        let RoleState::Leader { progress } = &mut self.role else {
            return false;
        };
        let Some(p) = progress.get_mut(&peer) else {
            return false;
        };
        p.on_snapshot_sent(info.last_included.index, now);
        self.send(peer, MessageBody::InstallSnapshot(info));
        true
    }

    /// Leader: `from` could not install the snapshot offered.
    pub(super) fn handle_snapshot_failed(&mut self, from: NodeId, last: LogId) {
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        if let Some(p) = progress.get_mut(&from)
            && p.state == ProgressState::Snapshot
            && p.pending_snapshot == last.index
        {
            p.on_snapshot_failed();
        }
    }

    /// Leader: installs outstanding longer than `snapshot_install_timeout`
    /// are offered again (the peer may have lost the offer in a crash).
    pub(super) fn expire_snapshot_installs(&mut self) {
        let now = self.now;
        let timeout = self.options.snapshot_install_timeout;
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        for p in progress.values_mut() {
            if p.state == ProgressState::Snapshot && now >= p.snapshot_sent_at + timeout {
                p.on_snapshot_failed();
            }
        }
    }
}
