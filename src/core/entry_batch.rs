//! A run of log entries shared, not copied, between the disk write, the
//! peers' appends and the apply.
//!
//! The leader's new entries go to its disk and to every peer, and later to
//! its state machine; a follower's received entries go to its log, its disk
//! and its state machine. Cloning a `Vec<Entry>` for each costs an
//! allocation and a copy of every entry each time; an `EntryBatch` is built
//! once (one allocation) and every clone or sub-range shares it (a reference
//! count). An empty batch allocates nothing.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use super::entry::Entry;

/// Contiguous log entries, cheap to clone and to cut: every clone and
/// sub-range shares one allocation. Reads as a `[Entry]`.
///
/// Invariant: `start <= end <= shared.len()`; `shared` is `None` only when
/// the batch is empty. Offsets are `u32` to keep the batch (and every
/// message and action carrying one) small: a batch holds at most
/// `u32::MAX` entries, far above any append or apply limit.
#[derive(Clone, Default)]
pub struct EntryBatch {
    /// The shared entries; `None` for an empty batch.
    shared: Option<Arc<[Entry]>>,
    /// The first entry of `shared` in this batch.
    start: u32,
    /// One past the last entry of `shared` in this batch.
    end: u32,
}

impl EntryBatch {
    /// The entries at offsets `[range.start, range.end)` of this batch,
    /// sharing its allocation.
    ///
    /// # Panics
    /// If the range is not within the batch.
    pub fn range(&self, range: Range<usize>) -> EntryBatch {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "range {range:?} outside a batch of {}",
            self.len()
        );
        if range.start == range.end {
            return EntryBatch::default();
        }
        // Within `start..end`, so within u32.
        EntryBatch {
            shared: self.shared.clone(),
            start: self.start + range.start as u32,
            end: self.start + range.end as u32,
        }
    }

    /// Whether `self` and `other` are cut from the same allocation (a test
    /// of sharing, for tests and benches).
    pub fn shares_with(&self, other: &EntryBatch) -> bool {
        match (&self.shared, &other.shared) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Deref for EntryBatch {
    type Target = [Entry];

    fn deref(&self) -> &[Entry] {
        match &self.shared {
            Some(shared) => &shared[self.start as usize..self.end as usize],
            None => &[],
        }
    }
}

impl From<Vec<Entry>> for EntryBatch {
    /// # Panics
    /// If `entries` holds more than `u32::MAX` entries.
    fn from(entries: Vec<Entry>) -> Self {
        if entries.is_empty() {
            return EntryBatch::default();
        }
        let end = u32::try_from(entries.len()).expect("a batch of at most u32::MAX entries");
        EntryBatch {
            shared: Some(entries.into()),
            start: 0,
            end,
        }
    }
}

impl FromIterator<Entry> for EntryBatch {
    /// Collects in one allocation when the iterator knows its exact length
    /// (a slice's or a `VecDeque`'s range, cloned or mapped).
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        let shared: Arc<[Entry]> = iter.into_iter().collect();
        if shared.is_empty() {
            return EntryBatch::default();
        }
        let end = u32::try_from(shared.len()).expect("a batch of at most u32::MAX entries");
        EntryBatch {
            shared: Some(shared),
            start: 0,
            end,
        }
    }
}

impl<'a> IntoIterator for &'a EntryBatch {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for EntryBatch {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for EntryBatch {}

impl fmt::Debug for EntryBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entry::EntryPayload;
    use crate::core::ids::LogId;

    fn noops(count: u64) -> Vec<Entry> {
        (1..=count)
            .map(|i| Entry {
                id: LogId::new(1, i),
                payload: EntryPayload::Noop,
            })
            .collect()
    }

    #[test]
    fn ranges_share_the_allocation_and_read_their_part() {
        let batch = EntryBatch::from(noops(5));
        let middle = batch.range(1..4);
        assert!(middle.shares_with(&batch));
        assert_eq!(&*middle, &noops(5)[1..4]);
        let inner = middle.range(1..2);
        assert_eq!(inner.len(), 1);
        assert_eq!(inner[0].id, LogId::new(1, 3));
        assert!(inner.shares_with(&batch));
    }

    #[test]
    fn empty_batches_hold_nothing() {
        let batch = EntryBatch::from(noops(3));
        assert!(batch.range(2..2).is_empty());
        assert!(!batch.range(2..2).shares_with(&batch));
        assert!(EntryBatch::from(Vec::new()).is_empty());
        assert_eq!(EntryBatch::default(), EntryBatch::from(Vec::new()));
    }

    #[test]
    #[should_panic(expected = "outside a batch")]
    fn a_range_past_the_end_panics() {
        EntryBatch::from(noops(2)).range(1..3);
    }
}
