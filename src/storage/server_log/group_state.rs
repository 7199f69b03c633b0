//! The in-memory index of one group in the server log: where its live
//! entries, its term/vote and its *anchor* lie, by segment.
//!
//! A segment is named by its first LSN. The anchor is the group's latest
//! frame that sets its log absolutely (a reset, a restate, or its first
//! frame ever): replayed from there on, the group's frames give its log
//! exactly, whatever older frames of it some kept segment still holds. The
//! group *pins* the older of its anchor's and its latest hard state's
//! segments; the log reclaims only segments older than every group's pin.

use super::super::error::{CorruptionKind, StorageError};
use crate::core::{HardState, LogId, LogIndex};

/// One `entries` frame and the part of it that is still live.
///
/// Invariant: `first ≤ last`; the frame holds at least `[first, last]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    /// The segment holding the frame (its first LSN).
    pub(crate) segment: u64,
    /// The frame's byte offset in that segment.
    pub(crate) offset: u64,
    /// The first live entry index of the frame.
    pub(crate) first: u64,
    /// The last live entry index of the frame (inclusive).
    pub(crate) last: u64,
}

/// What the server log knows about one group.
///
/// Invariant: spans ascend and are contiguous (`spans[i + 1].first ==
/// spans[i].last + 1`); the first one starts after `last_purged`'s index,
/// though its frame may begin before it (a compaction inside a frame).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupState {
    /// The latest term and vote.
    pub(crate) hard_state: HardState,
    /// The segment holding the latest hard-state frame.
    hard_state_at: Option<u64>,
    /// The last entry dropped by compaction or reset: the log starts after it.
    pub(crate) last_purged: LogId,
    /// The segment holding the group's anchor.
    anchor_at: Option<u64>,
    /// The live entries, by frame.
    pub(crate) spans: Vec<Span>,
}

/// The rule an `entries` frame must meet: it starts after the purged prefix
/// and at most one past the last entry.
pub(crate) fn check_append(
    last_purged: u64,
    last_index: u64,
    first: u64,
) -> Result<(), StorageError> {
    if first <= last_purged {
        let first_index = LogIndex(last_purged + 1);
        return Err(StorageError::Compacted { first_index });
    }
    if first > last_index + 1 {
        let expected = LogIndex(last_index + 1);
        let found = LogIndex(first);
        return Err(StorageError::NotContiguous { expected, found });
    }
    Ok(())
}

impl GroupState {
    /// The index of the last live entry (`last_purged`'s when none).
    pub(crate) fn last_index(&self) -> u64 {
        self.spans
            .last()
            .map_or(self.last_purged.index.0, |s| s.last)
    }

    /// Records an `entries` frame `[first, last]` at `offset` of `segment`,
    /// dropping the suffix it overwrites. The caller checked
    /// [`check_append`].
    pub(crate) fn append(&mut self, segment: u64, offset: u64, first: u64, last: u64) {
        debug_assert!(check_append(self.last_purged.index.0, self.last_index(), first).is_ok());
        self.anchor_at.get_or_insert(segment);
        self.truncate_from(first);
        let span = Span {
            segment,
            offset,
            first,
            last,
        };
        self.spans.push(span);
    }

    /// Drops every entry from `first` on.
    fn truncate_from(&mut self, first: u64) {
        let keep = self.spans.partition_point(|s| s.first < first);
        self.spans.truncate(keep);
        if let Some(last) = self.spans.last_mut() {
            last.last = last.last.min(first - 1);
        }
    }

    /// Records a hard-state frame in `segment`.
    pub(crate) fn set_hard_state(&mut self, hard_state: HardState, segment: u64) {
        self.anchor_at.get_or_insert(segment);
        self.hard_state = hard_state;
        self.hard_state_at = Some(segment);
    }

    /// Records a compact frame in `segment`: entries through `through` go.
    /// One that empties the log is written as a reset (an anchor).
    pub(crate) fn compact(&mut self, through: LogId, segment: u64) {
        self.anchor_at.get_or_insert(segment);
        if through.index <= self.last_purged.index {
            return;
        }
        let drop = self.spans.partition_point(|s| s.last <= through.index.0);
        self.spans.drain(..drop);
        if let Some(first) = self.spans.first_mut() {
            first.first = first.first.max(through.index.0 + 1);
        }
        self.last_purged = through;
    }

    /// Records a reset frame in `segment`: every entry goes, the log
    /// continues after `snapshot`.
    pub(crate) fn reset(&mut self, snapshot: LogId, segment: u64) {
        self.spans.clear();
        self.last_purged = snapshot;
        self.anchor_at = Some(segment);
    }

    /// Records a restate frame at `offset` of `segment`: the group is
    /// `hard_state`, `last_purged` and the frame's entries `[first, last]`
    /// (none when `first > last`), whatever came before.
    pub(crate) fn restate(
        &mut self,
        hard_state: HardState,
        last_purged: LogId,
        at: (u64, u64),
        last: u64,
    ) {
        let (segment, offset) = at;
        let first = last_purged.index.0 + 1;
        self.reset(last_purged, segment);
        if first <= last {
            let span = Span {
                segment,
                offset,
                first,
                last,
            };
            self.spans.push(span);
        }
        self.hard_state = hard_state;
        self.hard_state_at = Some(segment);
    }

    /// The oldest segment holding a frame the group still needs, if any:
    /// every frame from its anchor on, and its latest hard state.
    pub(crate) fn pinned_segment(&self) -> Option<u64> {
        [self.anchor_at, self.hard_state_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Spans holding entries of `[lo, hi)`, in order.
    pub(crate) fn spans_in(&self, lo: u64, hi: u64) -> &[Span] {
        let from = self.spans.partition_point(|s| s.last < lo);
        let to = self.spans.partition_point(|s| s.first < hi);
        &self.spans[from..to.max(from)]
    }
}

/// The corruption a replayed `entries` frame breaking [`check_append`] is.
pub(crate) fn replay_gap(state: &GroupState, first: u64) -> CorruptionKind {
    CorruptionKind::IndexGap {
        expected: state.last_index() + 1,
        found: first,
    }
}
