//! The in-memory Raft log and its pointers (braft's `LogManager`, memory half;
//! etcd's `raftLog`).
//!
//! ```text
//!   snapshot_last   first_index                 persisted           last_index
//!        │               │                          │                    │
//!  ──────┤ compacted     ├── entries ─────────────────────────────────────┤
//!                        applied ≤ committed ≤ last_index
//!                        persisted ≤ last_index; [unpersisted_from, last] not yet handed to disk
//! ```
//!
//! The core keeps the entries since the compaction point in memory: it can
//! build most AppendEntries without a disk read, and snapshots bound the
//! memory (the compaction point trails the newest snapshot by a margin, for
//! slow followers). The storage layer holds the same entries durably; on
//! restart the driver hands them back.
//!
//! A snapshot cannot bound the memory while one is being saved, and a long
//! save of a large state lets writes pile up. With `log_cache_bytes_max`
//! (for storage that reads entries back) the log also *evicts*: once its
//! entries take more than the bound, the oldest applied and durable ones
//! leave memory, keeping only their terms
//! (`TermRuns`, `log_terms.rs`); the hot tail stays. A leader then reads what a lagging
//! peer needs below the eviction point back from its disk
//! (`Action::LoadEntries`, `log_load.rs`).
//!
//! ```text
//!   snapshot_last      evicted.through        applied      last_index
//!        │  terms only      │   entries in memory  │              │
//!  ──────┼──────────────────┼──────────────────────┴──────────────┤
//! ```
//!
//! Entries leave the log in [`EntryBatch`]es. The log remembers the last
//! batch it built or received (`recent`), and serves any range inside it
//! by sharing it: the leader's new entries go to its disk and to every peer
//! in one allocation, a follower writes the batch its leader sent, and an
//! apply of the same entries shares it too.

use std::collections::VecDeque;

use super::entry::Entry;
use super::entry_batch::EntryBatch;
use super::ids::{LogId, LogIndex, Term};
use super::log_terms::TermRuns;

/// The replicated log as this node knows it.
///
/// Invariants: entries are contiguous from `evicted.through() + 1` with
/// non-decreasing terms not below the evicted ones' and `snapshot_last.term`;
/// `snapshot_last.index <= evicted.through() <= applied <= committed <=
/// last_index` (only applied entries are evicted, so a suffix truncation,
/// always above `committed`, never reaches them); `evicted.through() <=
/// persisted` (only what the disk holds is evicted; a truncation pulls
/// `persisted` back no lower than `committed`); `persisted <= last_index`;
/// `persisted < unpersisted_from <= last_index + 1`; with a bound,
/// `cached_bytes` is the size of `entries`.
#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    /// The last entry compacted away (covered by a snapshot), `(0,0)` if none.
    snapshot_last: LogId,
    /// The terms of the entries evicted from memory, in
    /// `(snapshot_last.index, evicted.through()]`.
    evicted: TermRuns,
    /// Entries after `evicted.through()`, in order.
    entries: VecDeque<Entry>,
    /// The size of `entries` (`Entry::size_bytes` summed), kept only with a
    /// bound (0 without: sizing every entry would be wasted work on the
    /// hot path).
    cached_bytes: u64,
    /// Above this many bytes in `entries`, applied entries are evicted
    /// (`None`: never).
    cache_bytes_max: Option<u64>,
    /// The highest index known to be committed.
    committed: LogIndex,
    /// The highest index handed out for applying.
    applied: LogIndex,
    /// The highest index durable on the local disk and matching this log.
    persisted: LogIndex,
    /// The first index not yet handed to the disk.
    unpersisted_from: LogIndex,
    /// The last batch built for the disk or a peer, or received from the
    /// leader: equal to this log at its indexes (emptied by any change
    /// that could break that), so ranges inside it are shared, not built.
    recent: EntryBatch,
    /// The size of `recent` (`Entry::size_bytes` summed).
    recent_bytes: u64,
}

impl RaftLog {
    /// A log restored from durable state: the snapshot point and every entry
    /// after it, all durable.
    ///
    /// # Panics
    /// If the entries are not contiguous after `snapshot_last`; storage
    /// recovery guarantees they are.
    pub fn restore(snapshot_last: LogId, entries: Vec<Entry>) -> Self {
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(entry.id.index, snapshot_last.index.plus(offset as u64 + 1));
        }
        let last = snapshot_last.index.plus(entries.len() as u64);
        RaftLog {
            snapshot_last,
            evicted: TermRuns::empty_after(snapshot_last.index),
            cached_bytes: 0,
            cache_bytes_max: None,
            entries: entries.into(),
            committed: snapshot_last.index,
            applied: snapshot_last.index,
            persisted: last,
            unpersisted_from: last.next(),
            recent: EntryBatch::default(),
            recent_bytes: 0,
        }
    }

    /// The id of the last entry (or of the snapshot point when empty).
    pub fn last_id(&self) -> LogId {
        match self.entries.back() {
            Some(entry) => entry.id,
            // Every entry evicted (or a suffix truncation took the ones
            // held): the last evicted one, else the compaction point.
            None => self.evicted.last_id().unwrap_or(self.snapshot_last),
        }
    }

    /// Bounds the entries held in memory to about `bytes` (see the module
    /// doc); `None` keeps every entry. Only for storage that reads
    /// entries back.
    pub fn set_cache_bytes_max(&mut self, bytes: Option<u64>) {
        self.cache_bytes_max = bytes;
        self.cached_bytes = match bytes {
            Some(_) => self.entries.iter().map(Entry::size_bytes).sum(),
            None => 0,
        };
    }

    /// The size of `entries` in `range`, if kept (see `cached_bytes`).
    fn bytes_of(&self, range: impl std::ops::RangeBounds<usize>) -> u64 {
        match self.cache_bytes_max {
            Some(_) => self.entries.range(range).map(Entry::size_bytes).sum(),
            None => 0,
        }
    }

    /// The last evicted index: entries through it are on disk only (their
    /// terms are known); `snapshot_last.index` when none is evicted.
    pub fn evicted_through(&self) -> LogIndex {
        self.evicted.through()
    }

    /// The first index whose entry is held in memory.
    fn cached_from(&self) -> LogIndex {
        self.evicted.through().next()
    }

    /// The bytes of the entries held in memory (0 without a bound).
    pub fn cached_bytes(&self) -> u64 {
        self.cached_bytes
    }

    /// The index of the last entry.
    pub fn last_index(&self) -> LogIndex {
        self.last_id().index
    }

    /// The first index after the compaction point (its entry may be
    /// evicted: see [`evicted_through`](Self::evicted_through)).
    pub fn first_index(&self) -> LogIndex {
        self.snapshot_last.index.next()
    }

    /// The compaction point: the entry just before the first one held.
    pub fn snapshot_last(&self) -> LogId {
        self.snapshot_last
    }

    /// The commit index.
    pub fn committed(&self) -> LogIndex {
        self.committed
    }

    /// The highest index handed out for applying.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// The highest locally durable index.
    pub fn persisted(&self) -> LogIndex {
        self.persisted
    }

    /// The first index not yet handed to the disk.
    pub fn unpersisted_from(&self) -> LogIndex {
        self.unpersisted_from
    }

    /// The term of the entry at `index`; `None` if compacted (other than the
    /// snapshot point itself) or beyond the end.
    #[inline]
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        // Inline for the common case, an entry held in memory.
        if index > self.evicted.through() {
            return self.entry(index).map(|e| e.id.term);
        }
        self.term_at_or_below_eviction(index)
    }

    /// `term_at` for the compaction point and the evicted entries.
    #[cold]
    fn term_at_or_below_eviction(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_last.index {
            return Some(self.snapshot_last.term);
        }
        self.evicted.term_at(index)
    }

    /// Whether the log holds `id` (the same term at that index).
    pub fn matches(&self, id: LogId) -> bool {
        self.term_at(id.index) == Some(id.term)
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let offset = index.0.checked_sub(self.cached_from().0)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Entries in `[lo, hi)`, at most `count_max` of them and, past the
    /// first, at most `bytes_max` bytes in total. Returns the entries and
    /// their size. Shares the recent batch when it holds them; otherwise
    /// builds a batch and remembers it as the recent one.
    pub fn slice(
        &mut self,
        lo: LogIndex,
        hi: LogIndex,
        count_max: usize,
        bytes_max: u64,
    ) -> (EntryBatch, u64) {
        let Some((start, end)) = self.offsets(lo, hi) else {
            return (EntryBatch::default(), 0);
        };
        // The common case, a peer asking for exactly the batch just built
        // for the disk: no walk over the entries to size them.
        let all = end - start;
        if all <= count_max
            && self.recent.len() == all
            && self.recent[0].id.index == lo
            && (all == 1 || self.recent_bytes <= bytes_max)
        {
            return (self.recent.clone(), self.recent_bytes);
        }
        let mut bytes = 0;
        let mut count = 0;
        for entry in self.entries.range(start..end).take(count_max) {
            let size = entry.size_bytes();
            if count > 0 && bytes + size > bytes_max {
                break;
            }
            bytes += size;
            count += 1;
        }
        (self.batch(lo, start, count), bytes)
    }

    /// The offsets in `entries` of `[lo, hi)` cut to what the log holds,
    /// `[start, end)`; `None` if that is empty or `lo` was compacted or
    /// evicted.
    fn offsets(&self, lo: LogIndex, hi: LogIndex) -> Option<(usize, usize)> {
        let first = self.cached_from().0;
        let start = lo.0.max(first) - first;
        let end = hi.0.min(self.last_index().0 + 1).saturating_sub(first);
        if lo.0 < first || start >= end {
            return None;
        }
        Some((start as usize, end as usize))
    }

    /// The `count` entries from `lo` (at offset `start`): cut from the
    /// recent batch if it holds them, or else built and remembered.
    fn batch(&mut self, lo: LogIndex, start: usize, count: usize) -> EntryBatch {
        if let Some(shared) = self.share_recent(lo, count) {
            return shared;
        }
        let batch: EntryBatch = self.entries.range(start..start + count).cloned().collect();
        self.remember(batch.clone());
        batch
    }

    /// The `count` entries from `lo` cut from the recent batch, if it
    /// holds them all.
    fn share_recent(&self, lo: LogIndex, count: usize) -> Option<EntryBatch> {
        let recent_first = self.recent.first()?.id.index.0;
        let offset = usize::try_from(lo.0.checked_sub(recent_first)?).ok()?;
        let end = offset.checked_add(count)?;
        (end <= self.recent.len()).then(|| self.recent.range(offset..end))
    }

    fn remember(&mut self, batch: EntryBatch) {
        self.recent_bytes = batch.iter().map(Entry::size_bytes).sum();
        self.recent = batch;
    }

    fn forget_recent(&mut self) {
        self.recent = EntryBatch::default();
        self.recent_bytes = 0;
    }

    /// Remembers `batch`, just appended to the log (entries a leader
    /// sent), as the recent batch, so that its disk write shares it.
    pub fn set_recent(&mut self, batch: EntryBatch) {
        debug_assert!(
            batch.iter().all(|e| self.entry(e.id.index) == Some(e)),
            "a recent batch equals the log"
        );
        self.remember(batch);
    }

    /// Appends one entry at the end (leader side).
    #[inline]
    pub fn append(&mut self, entry: Entry) {
        debug_assert_eq!(entry.id.index, self.last_index().next());
        debug_assert!(entry.id.term >= self.last_id().term);
        if self.cache_bytes_max.is_some() {
            self.cached_bytes += entry.size_bytes();
        }
        self.entries.push_back(entry);
    }

    /// Removes every entry from `index` on (a conflicting suffix), pulling
    /// the durable and hand-off pointers back with it.
    ///
    /// # Panics
    /// If `index` is committed: committed entries are never removed (§5.4).
    pub fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.committed, "truncating committed entry {index}");
        debug_assert!(
            index > self.evicted.through(),
            "evicted entries are applied"
        );
        let keep = (index.0 - self.cached_from().0) as usize;
        self.cached_bytes -= self.bytes_of(keep..);
        self.entries.truncate(keep);
        // New entries will take these indexes.
        self.forget_recent();
        self.persisted = self.persisted.min(index.prev());
        self.unpersisted_from = self.unpersisted_from.min(index);
    }

    /// The first index of the run of `term` entries that contains `index`
    /// (for a rejection hint), scanning back no further than the snapshot.
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(index) else {
            return index;
        };
        if let Some((start, _)) = self.evicted.run_start(index) {
            return start;
        }
        let mut first = index;
        while first > self.cached_from() && self.term_at(first.prev()) == Some(term) {
            first = first.prev();
        }
        // The run may go on among the evicted entries: their runs know
        // where it starts without a walk.
        match self.evicted.run_start(first.prev()) {
            Some((start, t)) if t == term => start,
            _ => first,
        }
    }

    /// The highest index at or below `index` whose term is at most `term`
    /// (the leader's side of fast backtracking), and its term.
    pub fn last_index_with_term_at_most(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut at = index.min(self.last_index());
        while at > self.evicted.through() {
            match self.term_at(at) {
                Some(t) if t <= term => return (at, t),
                _ => at = at.prev(),
            }
        }
        self.evicted
            .last_at_most(at, term)
            .unwrap_or((self.snapshot_last.index, self.snapshot_last.term))
    }

    /// Raises the commit index (never lowers it). Returns whether it moved.
    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Records that the disk holds everything up to `index`.
    pub fn persisted_to(&mut self, index: LogIndex) {
        debug_assert!(index < self.unpersisted_from);
        self.persisted = self.persisted.max(index);
    }

    /// The entries not yet handed to the disk, marking them handed over.
    pub fn take_unpersisted(&mut self) -> Option<EntryBatch> {
        let lo = self.unpersisted_from;
        let (start, end) = self.offsets(lo, self.last_index().next())?;
        self.unpersisted_from = self.last_index().next();
        Some(self.batch(lo, start, end - start))
    }

    /// The committed entries this node's disk holds and not yet handed out
    /// for applying, marking them handed out. Entries are applied in order
    /// and exactly once.
    /// Shares the recent batch when it holds them, but does not replace
    /// it: the entries a peer or the disk needs next are newer.
    pub fn take_committed(&mut self, count_max: usize) -> EntryBatch {
        // Only what this node's own disk holds: a state machine that keeps
        // its state on disk must never be ahead of its member's durable log
        // after a crash (it would claim entries the log lost).
        let through = self.committed.min(self.persisted);
        // Most flushes find nothing new to apply.
        if self.applied >= through {
            return EntryBatch::default();
        }
        let lo = self.applied.next();
        let Some((start, end)) = self.offsets(lo, through.next()) else {
            return EntryBatch::default();
        };
        let count = (end - start).min(count_max);
        let entries = match self.share_recent(lo, count) {
            Some(shared) => shared,
            None => self.entries.range(start..start + count).cloned().collect(),
        };
        if let Some(last) = entries.last() {
            self.applied = last.id.index;
        }
        entries
    }

    /// The state machine holds a snapshot through `index`, which is
    /// committed: commit and apply from there on.
    pub fn skip_to_snapshot(&mut self, index: LogIndex) {
        debug_assert!(index <= self.last_index() || index == self.snapshot_last.index);
        self.committed = self.committed.max(index);
        self.applied = self.applied.max(index);
    }

    /// Drops the entries through `index` from memory (a durable snapshot
    /// covers them). Only applied, durable entries go: the disk must still
    /// be able to hand back everything the snapshot does not cover.
    /// Returns the new compaction point if it moved.
    pub fn compact_to(&mut self, index: LogIndex) -> Option<LogId> {
        let index = index.min(self.applied).min(self.persisted);
        if index <= self.snapshot_last.index {
            return None;
        }
        let term = self.term_at(index)?;
        // The snapshot may end among the evicted entries (their terms go)
        // or past them (held entries go too).
        let drop = index.0.saturating_sub(self.evicted.through().0) as usize;
        self.cached_bytes -= self.bytes_of(..drop);
        self.entries.drain(..drop);
        self.evicted.compact_to(index);
        // It may hold compacted entries; letting it go frees them.
        self.forget_recent();
        self.snapshot_last = LogId { term, index };
        Some(self.snapshot_last)
    }

    /// Evicts the oldest applied, durable entries from memory while the
    /// entries held take more than the bound (see the module doc): the disk
    /// can hand them back, and, committed, no truncation will ever remove
    /// them. Returns whether any left.
    #[inline]
    pub fn evict_applied(&mut self) -> bool {
        // Checked inline: called for every apply batch, it rarely has work.
        match self.cache_bytes_max {
            Some(max) if self.cached_bytes > max => self.evict_over_bound(max),
            _ => false,
        }
    }

    #[cold]
    fn evict_over_bound(&mut self, max: u64) -> bool {
        let through = self.applied.min(self.persisted);
        let mut evicted = false;
        while self.cached_bytes > max {
            match self.entries.front() {
                Some(front) if front.id.index <= through => {}
                _ => break,
            }
            let entry = self.entries.pop_front().expect("front exists");
            self.cached_bytes -= entry.size_bytes();
            self.evicted.push(entry.id);
            evicted = true;
        }
        // The recent batch would keep evicted payloads alive.
        if evicted
            && self
                .recent
                .first()
                .is_some_and(|e| e.id.index <= self.evicted.through())
        {
            self.forget_recent();
        }
        evicted
    }

    /// Replaces the whole log with a snapshot point: an installed snapshot
    /// the log does not match. Everything through it is committed, applied
    /// and durable (in the snapshot).
    pub fn reset_to(&mut self, snapshot: LogId) {
        self.entries.clear();
        self.cached_bytes = 0;
        self.evicted = TermRuns::empty_after(snapshot.index);
        self.forget_recent();
        self.snapshot_last = snapshot;
        self.committed = snapshot.index;
        self.applied = snapshot.index;
        self.persisted = snapshot.index;
        self.unpersisted_from = snapshot.index.next();
    }

    /// Entries in memory (after [`evicted_through`](Self::evicted_through)),
    /// oldest first (for invariant checks and status).
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entry::EntryPayload;

    fn log_of(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry {
                id: LogId::new(t, i as u64 + 1),
                payload: EntryPayload::Noop,
            })
            .collect();
        RaftLog::restore(LogId::default(), entries)
    }

    #[test]
    fn truncation_pulls_back_durable_and_handoff_pointers() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        assert_eq!(
            (log.persisted(), log.unpersisted_from()),
            (LogIndex(5), LogIndex(6))
        );
        log.truncate_from(LogIndex(4));
        assert_eq!(log.last_id(), LogId::new(2, 3));
        assert_eq!(
            (log.persisted(), log.unpersisted_from()),
            (LogIndex(3), LogIndex(4))
        );
        log.append(Entry {
            id: LogId::new(4, 4),
            payload: EntryPayload::Noop,
        });
        let handed = log.take_unpersisted().expect("new entry");
        assert_eq!(handed.len(), 1);
        assert!(log.take_unpersisted().is_none());
    }

    #[test]
    #[should_panic(expected = "truncating committed")]
    fn committed_entries_are_never_truncated() {
        let mut log = log_of(&[1, 1, 2]);
        log.commit_to(LogIndex(2));
        log.truncate_from(LogIndex(2));
    }

    #[test]
    fn backtracking_helpers_find_term_boundaries() {
        let log = log_of(&[1, 1, 2, 2, 2, 5, 5]);
        assert_eq!(log.first_index_of_term_at(LogIndex(5)), LogIndex(3));
        assert_eq!(log.first_index_of_term_at(LogIndex(1)), LogIndex(1));
        assert_eq!(
            log.last_index_with_term_at_most(LogIndex(7), Term(3)),
            (LogIndex(5), Term(2))
        );
        assert_eq!(
            log.last_index_with_term_at_most(LogIndex(9), Term(5)),
            (LogIndex(7), Term(5))
        );
        assert_eq!(
            log.last_index_with_term_at_most(LogIndex(7), Term(0)),
            (LogIndex(0), Term(0))
        );
    }

    #[test]
    fn commit_never_moves_back_and_apply_hands_out_once() {
        let mut log = log_of(&[1, 1, 1]);
        assert!(log.commit_to(LogIndex(2)));
        assert!(!log.commit_to(LogIndex(1)));
        assert_eq!(log.committed(), LogIndex(2));
        assert_eq!(log.take_committed(usize::MAX).len(), 2);
        assert!(log.take_committed(usize::MAX).is_empty());
        log.commit_to(LogIndex(9));
        assert_eq!(log.committed(), LogIndex(3), "capped at the last index");
    }

    /// A node applies only what its own disk holds: committed by a quorum
    /// that did not include it, an entry waits for this node's write (an
    /// on-disk state machine would otherwise be ahead of the log after a
    /// crash; the simulator found it: seeds 77, 95 and 96 of 0..200 with
    /// `--faults crash --no-sessions --disk-state-machine`).
    #[test]
    fn committed_entries_wait_for_this_nodes_disk_before_they_are_applied() {
        let mut log = log_of(&[1, 1]);
        for index in 3..=5 {
            log.append(Entry {
                id: LogId::new(1, index),
                payload: EntryPayload::Noop,
            });
        }
        assert!(log.take_unpersisted().is_some());
        assert!(log.commit_to(LogIndex(5)));
        let applied: Vec<u64> = log
            .take_committed(usize::MAX)
            .iter()
            .map(|e| e.id.index.0)
            .collect();
        assert_eq!(applied, vec![1, 2], "only the entries on disk");
        log.persisted_to(LogIndex(4));
        assert_eq!(log.take_committed(usize::MAX).len(), 2);
        log.persisted_to(LogIndex(5));
        assert_eq!(log.take_committed(usize::MAX).len(), 1);
    }

    #[test]
    fn compaction_keeps_unapplied_and_undurable_entries() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        log.commit_to(LogIndex(4));
        log.take_committed(3);
        assert_eq!(
            log.compact_to(LogIndex(4)),
            Some(LogId::new(2, 3)),
            "only applied"
        );
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(log.term_at(LogIndex(2)), None);
        assert_eq!(log.compact_to(LogIndex(2)), None, "never moves back");
        log.reset_to(LogId::new(4, 9));
        assert_eq!(log.last_id(), LogId::new(4, 9));
        assert_eq!(
            (log.committed(), log.applied(), log.persisted()),
            (LogIndex(9), LogIndex(9), LogIndex(9))
        );
        assert!(log.take_unpersisted().is_none());
    }

    #[test]
    fn ranges_inside_the_recent_batch_are_shared() {
        let mut log = log_of(&[1, 1, 1, 1]);
        let (whole, bytes) = log.slice(LogIndex(1), LogIndex(5), 9, u64::MAX);
        let (again, again_bytes) = log.slice(LogIndex(1), LogIndex(5), 9, u64::MAX);
        assert!(again.shares_with(&whole));
        assert_eq!(again_bytes, bytes, "the whole batch keeps its size");
        let (inner, _) = log.slice(LogIndex(2), LogIndex(4), 9, u64::MAX);
        assert!(inner.shares_with(&whole));
        assert_eq!(inner[0].id, LogId::new(1, 2));
        log.commit_to(LogIndex(3));
        let applied = log.take_committed(usize::MAX);
        assert!(applied.shares_with(&whole));
        assert_eq!(applied.len(), 3);
    }

    #[test]
    fn the_whole_recent_batch_still_obeys_the_byte_limit() {
        let mut log = log_of(&[1, 1, 1]);
        let one = log.entry(LogIndex(1)).unwrap().size_bytes();
        log.slice(LogIndex(1), LogIndex(4), 9, u64::MAX);
        let (cut, bytes) = log.slice(LogIndex(1), LogIndex(4), 9, one * 2);
        assert_eq!((cut.len(), bytes), (2, one * 2));
        let (cut, _) = log.slice(LogIndex(1), LogIndex(4), 1, u64::MAX);
        assert_eq!(cut.len(), 1, "and the count limit");
    }

    #[test]
    fn truncation_forgets_the_recent_batch() {
        let mut log = log_of(&[1, 1, 1]);
        log.slice(LogIndex(1), LogIndex(4), 9, u64::MAX);
        log.truncate_from(LogIndex(2));
        for index in 2..=3 {
            log.append(Entry {
                id: LogId::new(2, index),
                payload: EntryPayload::Noop,
            });
        }
        let (entries, _) = log.slice(LogIndex(2), LogIndex(4), 9, u64::MAX);
        let terms: Vec<u64> = entries.iter().map(|e| e.id.term.0).collect();
        assert_eq!(terms, [2, 2], "the new entries, not the truncated ones");
    }

    /// Eviction drops the payloads of applied, durable entries only, and
    /// every index keeps its term: log matching, the rejection hint and the
    /// leader's backtracking answer as before.
    #[test]
    fn eviction_keeps_every_term_and_only_drops_applied_durable_entries() {
        let mut log = log_of(&[1, 1, 2, 2, 2, 5, 5, 6]);
        let one = log.entry(LogIndex(1)).unwrap().size_bytes();
        log.set_cache_bytes_max(Some(one));
        log.commit_to(LogIndex(7));
        log.take_committed(6);
        assert!(log.evict_applied());
        assert_eq!(log.evicted_through(), LogIndex(6), "applied only");
        assert_eq!(log.cached_bytes(), one * 2);
        let terms: Vec<u64> = (1..=8)
            .map(|i| log.term_at(LogIndex(i)).unwrap().0)
            .collect();
        assert_eq!(terms, [1, 1, 2, 2, 2, 5, 5, 6]);
        assert!(log.matches(LogId::new(2, 4)) && !log.matches(LogId::new(3, 4)));
        assert_eq!(log.first_index_of_term_at(LogIndex(4)), LogIndex(3));
        assert_eq!(log.first_index_of_term_at(LogIndex(7)), LogIndex(6));
        assert_eq!(
            log.last_index_with_term_at_most(LogIndex(8), Term(4)),
            (LogIndex(5), Term(2))
        );
        assert!(log.entry(LogIndex(6)).is_none() && log.entry(LogIndex(7)).is_some());
        assert!(
            log.slice(LogIndex(5), LogIndex(9), 9, u64::MAX)
                .0
                .is_empty()
        );
        assert_eq!(log.slice(LogIndex(7), LogIndex(9), 9, u64::MAX).0.len(), 2);
        // A snapshot in the evicted range, then past it.
        assert_eq!(log.compact_to(LogIndex(4)), Some(LogId::new(2, 4)));
        assert_eq!(log.term_at(LogIndex(5)), Some(Term(2)));
        assert_eq!(log.first_index_of_term_at(LogIndex(5)), LogIndex(5));
        log.take_committed(9);
        assert_eq!(log.compact_to(LogIndex(7)), Some(LogId::new(5, 7)));
        assert_eq!(log.evicted_through(), LogIndex(7));
        assert_eq!(log.cached_bytes(), one);
        assert_eq!(log.last_id(), LogId::new(6, 8));
    }

    #[test]
    fn a_log_with_every_entry_evicted_still_knows_its_last() {
        let mut log = log_of(&[1, 1, 2]);
        log.set_cache_bytes_max(Some(0));
        log.commit_to(LogIndex(3));
        log.take_committed(9);
        log.evict_applied();
        assert_eq!(log.cached_bytes(), 0);
        assert_eq!(log.last_id(), LogId::new(2, 3));
        log.append(Entry {
            id: LogId::new(3, 4),
            payload: EntryPayload::Noop,
        });
        log.truncate_from(LogIndex(4));
        assert_eq!(log.last_id(), LogId::new(2, 3), "after a truncation too");
    }

    #[test]
    fn slice_respects_count_and_bytes_but_always_carries_one() {
        let mut log = log_of(&[1, 1, 1, 1]);
        let one = log.entry(LogIndex(1)).unwrap().size_bytes();
        assert_eq!(log.slice(LogIndex(1), LogIndex(5), 2, u64::MAX).0.len(), 2);
        assert_eq!(log.slice(LogIndex(1), LogIndex(5), 9, one * 3).0.len(), 3);
        assert_eq!(log.slice(LogIndex(1), LogIndex(5), 9, 1).0.len(), 1);
    }
}
