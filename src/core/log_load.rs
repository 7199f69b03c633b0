//! Entries read back from the disk for a lagging peer (braft's
//! `LogManager` reading its segments, etcd's `Storage.Entries`).
//!
//! ```text
//!  leader: peer's next ≤ evicted_through ──► Action::LoadEntries (one per peer at a time)
//!  driver reads [lo, hi) from its log, checksums verified
//!    ──handle_entries_loaded──► still wanted? (same load, same next, window open,
//!                               terms equal to the log's) ──► AppendRequest
//!    ──handle_entries_load_failed──► retried after the peer's next heartbeat answer
//! ```
//!
//! The core stays sans-IO: it never reads the disk, it asks. Whatever comes
//! back is checked against what the log knows (the term of every index,
//! kept for evicted entries) before it is sent: an entry with the same index
//! and term as the log's is the same entry (Raft §5.3, Log Matching), so a
//! stale or wrong read is dropped, never sent.

use super::entry::Entry;
use super::entry_batch::EntryBatch;
use super::ids::{LogId, LogIndex, NodeId};
use super::message::{AppendRequest, MessageBody};
use super::node::{RaftNode, RoleState};
use super::output::Action;
use super::time::Instant;

/// A request to read entries back from the log's storage for a peer.
/// Answer with [`RaftNode::handle_entries_loaded`] or
/// [`RaftNode::handle_entries_load_failed`], giving the request back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntriesLoad {
    /// Tells this load from any earlier one (unique for the node's life).
    pub id: u64,
    /// The peer the entries are for.
    pub peer: NodeId,
    /// The first index to read.
    pub lo: LogIndex,
    /// The end of the range, exclusive: read `[lo, hi)`.
    pub hi: LogIndex,
    /// At most this many entries.
    pub count_max: usize,
    /// At most this many bytes (`Entry::size_bytes`) past the first entry.
    pub bytes_max: u64,
}

/// Where a peer's load stands (leader side, in its progress).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadState {
    /// No load outstanding.
    #[default]
    Idle,
    /// Load `id` is outstanding: no other is asked for this peer.
    Pending(u64),
    /// The last load failed: the next is asked after the peer's next
    /// heartbeat answer, not in a tight loop.
    Failed,
}

impl RaftNode {
    /// Leader: asks the driver for `peer`'s next entries, which were
    /// evicted from memory, unless a load for it is outstanding or just
    /// failed. Nothing is sent meanwhile.
    // Cold: out of `send_appends`, which runs for every entry.
    #[cold]
    pub(super) fn request_load(&mut self, peer: NodeId) {
        let hi = self.log.evicted_through().next();
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let Some(p) = progress.get_mut(&peer) else {
            return;
        };
        if p.load != LoadState::Idle {
            return;
        }
        let id = self.next_load_id;
        self.next_load_id += 1;
        p.load = LoadState::Pending(id);
        self.actions.push_back(Action::LoadEntries(EntriesLoad {
            id,
            peer,
            lo: p.next,
            hi,
            count_max: self.options.append_entries_max,
            bytes_max: self.options.append_bytes_max,
        }));
    }

    /// The driver read `entries` for `load`. They are sent to its peer if
    /// the load is still the one outstanding and the peer still wants them
    /// (same next index, window open, still leader); dropped otherwise (a
    /// later flush asks again if needed).
    pub fn handle_entries_loaded(&mut self, now: Instant, load: EntriesLoad, entries: Vec<Entry>) {
        self.advance_time(now);
        if self.take_load(&load) && !self.send_loaded(&load, entries) {
            tracing::warn!(peer = %load.peer, lo = %load.lo, "entries read back do not match the log");
            self.fail_load(&load);
        }
        self.finish_input();
    }

    /// The driver could not read `load` (an I/O error, corruption, or the
    /// range was compacted meanwhile): the peer is tried again after its
    /// next heartbeat answer (or sent the snapshot, if it now needs it).
    pub fn handle_entries_load_failed(&mut self, now: Instant, load: EntriesLoad) {
        self.advance_time(now);
        if self.take_load(&load) {
            self.fail_load(&load);
        }
        self.finish_input();
    }

    /// Ends `load` if it is the peer's outstanding one. Returns whether it was.
    fn take_load(&mut self, load: &EntriesLoad) -> bool {
        let RoleState::Leader { progress } = &mut self.role else {
            return false;
        };
        match progress.get_mut(&load.peer) {
            Some(p) if p.load == LoadState::Pending(load.id) => {
                p.load = LoadState::Idle;
                true
            }
            _ => false,
        }
    }

    fn fail_load(&mut self, load: &EntriesLoad) {
        if let RoleState::Leader { progress } = &mut self.role
            && let Some(p) = progress.get_mut(&load.peer)
        {
            p.load = LoadState::Failed;
        }
    }

    /// Sends the loaded entries if the peer still wants them. Returns false
    /// only when they contradict the log (never sent).
    fn send_loaded(&mut self, load: &EntriesLoad, entries: Vec<Entry>) -> bool {
        let committed = self.log.committed();
        let RoleState::Leader { progress } = &mut self.role else {
            return true;
        };
        let Some(p) = progress.get_mut(&load.peer) else {
            return true;
        };
        // The peer moved on (an answer, a rejection, a snapshot) since
        // the load was asked for.
        if p.is_paused() || p.next != load.lo {
            return true;
        }
        let prev_index = load.lo.prev();
        let Some(prev_term) = self.log.term_at(prev_index) else {
            // Compacted since: the next flush offers the snapshot.
            return true;
        };
        let mut bytes = 0;
        let mut expected = load.lo;
        for entry in entries.iter().take(load.count_max) {
            let size = entry.size_bytes();
            if expected > load.lo && bytes + size > load.bytes_max {
                break;
            }
            if entry.id.index != expected
                || expected >= load.hi
                || self.log.term_at(expected) != Some(entry.id.term)
            {
                return false;
            }
            bytes += size;
            expected = expected.next();
        }
        if expected == load.lo {
            return false;
        }
        let count = (expected.0 - load.lo.0) as usize;
        let batch: EntryBatch = entries.into_iter().take(count).collect();
        p.on_sent(expected.prev(), bytes);
        p.commit_sent = committed;
        let request = AppendRequest {
            prev_log_id: LogId {
                term: prev_term,
                index: prev_index,
            },
            entries: batch,
            leader_commit: committed,
        };
        self.send(load.peer, MessageBody::AppendRequest(request));
        true
    }
}
