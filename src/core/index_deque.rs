//! A map from log index to a value, kept as a deque sorted by index: what
//! waits on proposals (the core's own record of them, the runtime's
//! waiting clients). Proposals are made at the log's end and resolved in
//! log order, so each is pushed at the back and taken from the front, in
//! O(1) and without a node allocation (a `BTreeMap` here cost a few
//! percent of the in-memory benchmark's CPU); anything else is a binary
//! search, so it still behaves as a map in any order.

use std::collections::VecDeque;

use super::ids::LogIndex;

/// Values by log index, sorted by index.
#[derive(Debug)]
pub(crate) struct IndexDeque<V> {
    items: VecDeque<(LogIndex, V)>,
}

impl<V> Default for IndexDeque<V> {
    fn default() -> Self {
        IndexDeque {
            items: VecDeque::new(),
        }
    }
}

impl<V> IndexDeque<V> {
    /// Records `value` at `index`, replacing one there (as a map would).
    pub(crate) fn insert(&mut self, index: LogIndex, value: V) {
        match self.items.back() {
            Some(&(last, _)) if last >= index => match self.position(index) {
                Ok(at) => self.items[at] = (index, value),
                Err(at) => self.items.insert(at, (index, value)),
            },
            _ => self.items.push_back((index, value)),
        }
    }

    /// Takes the value at `index`, if any.
    pub(crate) fn remove(&mut self, index: LogIndex) -> Option<V> {
        let at = match self.items.front() {
            None => return None,
            // Resolved in log order: the common case.
            Some(&(first, _)) if first == index => 0,
            Some(_) => self.position(index).ok()?,
        };
        self.items.remove(at).map(|(_, value)| value)
    }

    /// Removes and returns the values at or after `index`.
    pub(crate) fn split_from(&mut self, index: LogIndex) -> Self {
        let at = self.items.partition_point(|&(i, _)| i < index);
        IndexDeque {
            items: self.items.split_off(at),
        }
    }

    /// The lowest index held (for the invariant checks).
    #[cfg(any(debug_assertions, feature = "invariants", test))]
    pub(crate) fn first_index(&self) -> Option<LogIndex> {
        self.items.front().map(|&(index, _)| index)
    }

    /// How many values are held.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The indexes held, in the deque's order (for the invariant checks).
    #[cfg(any(debug_assertions, feature = "invariants"))]
    pub(crate) fn indexes(&self) -> impl Iterator<Item = LogIndex> + '_ {
        self.items.iter().map(|&(index, _)| index)
    }

    fn position(&self, index: LogIndex) -> Result<usize, usize> {
        self.items.binary_search_by_key(&index, |&(i, _)| i)
    }
}

impl<V> IntoIterator for IndexDeque<V> {
    type Item = (LogIndex, V);
    type IntoIter = std::collections::vec_deque::IntoIter<(LogIndex, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Term;

    fn indexes(deque: IndexDeque<Term>) -> Vec<(u64, u64)> {
        deque.into_iter().map(|(i, t)| (i.0, t.0)).collect()
    }

    #[test]
    fn behaves_as_a_map_in_any_order() {
        let mut deque = IndexDeque::default();
        for i in [5, 6, 8] {
            deque.insert(LogIndex(i), Term(1));
        }
        // Out of order, and one replacing an index (a new term's proposal).
        deque.insert(LogIndex(7), Term(1));
        deque.insert(LogIndex(3), Term(1));
        deque.insert(LogIndex(6), Term(2));
        assert_eq!(deque.len(), 5);
        assert_eq!(deque.remove(LogIndex(4)), None);
        assert_eq!(deque.remove(LogIndex(7)), Some(Term(1)));
        assert_eq!(deque.remove(LogIndex(3)), Some(Term(1)));
        assert_eq!(deque.remove(LogIndex(3)), None);
        assert_eq!(indexes(deque), vec![(5, 1), (6, 2), (8, 1)]);
    }

    #[test]
    fn split_from_takes_the_tail() {
        let mut deque = IndexDeque::default();
        for i in [2, 4, 6] {
            deque.insert(LogIndex(i), Term(i));
        }
        let tail = deque.split_from(LogIndex(3));
        assert_eq!(indexes(tail), vec![(4, 4), (6, 6)]);
        assert_eq!(deque.first_index(), Some(LogIndex(2)));
        assert_eq!(indexes(deque), vec![(2, 2)]);
    }

    #[test]
    fn empty_has_nothing() {
        let mut deque = IndexDeque::<Term>::default();
        assert!(deque.remove(LogIndex(1)).is_none());
        assert_eq!(deque.len(), 0);
        assert!(deque.is_empty());
        assert_eq!(deque.first_index(), None);
    }
}
