//! The terms of evicted log entries, run-length coded.
//!
//! A log bounded in memory (`RaftLog`, option `log_cache_bytes_max`) drops
//! the payloads of old applied entries; the protocol still needs their
//! terms (log matching, a follower's rejection hint, the leader's fast
//! backtracking). Terms change rarely, so one `(first index, term)` pair a
//! term keeps them all in a few bytes, whatever the number of entries.

use std::collections::VecDeque;

use super::ids::{LogId, LogIndex, Term};

/// The terms of the entries in `(after, through]`, where `after` is the
/// first run's index less one.
///
/// Invariant: runs are ascending by first index and by term; empty exactly
/// when nothing is evicted; the last run ends at `through`.
#[derive(Clone, Debug, Default)]
pub(super) struct TermRuns {
    /// `(first index, term)` of each run of equal terms, oldest first.
    runs: VecDeque<(LogIndex, Term)>,
    /// The last index covered (the compaction point while empty).
    through: LogIndex,
}

impl TermRuns {
    /// Nothing evicted; the next evicted entry is `after + 1`.
    pub(super) fn empty_after(after: LogIndex) -> Self {
        TermRuns {
            runs: VecDeque::new(),
            through: after,
        }
    }

    /// The last index covered (or the compaction point while empty).
    pub(super) fn through(&self) -> LogIndex {
        self.through
    }

    /// Covers entry `id`, which follows `through`.
    pub(super) fn push(&mut self, id: LogId) {
        debug_assert_eq!(id.index, self.through.next(), "evicted in order");
        if self.runs.back().is_none_or(|&(_, term)| term != id.term) {
            debug_assert!(self.runs.back().is_none_or(|&(_, t)| t < id.term));
            self.runs.push_back((id.index, id.term));
        }
        self.through = id.index;
    }

    /// The id of the last covered entry, if any.
    pub(super) fn last_id(&self) -> Option<LogId> {
        let &(_, term) = self.runs.back()?;
        Some(LogId {
            term,
            index: self.through,
        })
    }

    /// The position of the run holding `index`, if covered.
    fn run_of(&self, index: LogIndex) -> Option<usize> {
        let &(first, _) = self.runs.front()?;
        if index < first || index > self.through {
            return None;
        }
        Some(self.runs.partition_point(|&(start, _)| start <= index) - 1)
    }

    /// The term at `index`, if covered.
    pub(super) fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.run_of(index).map(|i| self.runs[i].1)
    }

    /// The first index and the term of the run holding `index`, if covered.
    pub(super) fn run_start(&self, index: LogIndex) -> Option<(LogIndex, Term)> {
        self.run_of(index).map(|i| self.runs[i])
    }

    /// The highest covered index at or below `index` whose term is at most
    /// `term`, and its term.
    pub(super) fn last_at_most(&self, index: LogIndex, term: Term) -> Option<(LogIndex, Term)> {
        let mut i = self.run_of(index.min(self.through))?;
        let mut at = index.min(self.through);
        loop {
            let (start, run_term) = self.runs[i];
            if run_term <= term {
                return Some((at, run_term));
            }
            i = i.checked_sub(1)?;
            at = start.prev();
        }
    }

    /// Forgets every index through `index` (a snapshot covers them).
    pub(super) fn compact_to(&mut self, index: LogIndex) {
        if index >= self.through {
            *self = TermRuns::empty_after(index);
            return;
        }
        while self.runs.len() >= 2 && self.runs[1].0 <= index.next() {
            self.runs.pop_front();
        }
        if let Some(front) = self.runs.front_mut() {
            front.0 = front.0.max(index.next());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs_of(terms: &[u64]) -> TermRuns {
        let mut runs = TermRuns::empty_after(LogIndex(0));
        for (i, &t) in terms.iter().enumerate() {
            runs.push(LogId::new(t, i as u64 + 1));
        }
        runs
    }

    #[test]
    fn every_index_keeps_its_term_in_one_pair_a_term() {
        let runs = runs_of(&[1, 1, 2, 2, 2, 5]);
        assert_eq!(runs.runs.len(), 3);
        let terms: Vec<_> = (0..=7).map(|i| runs.term_at(LogIndex(i))).collect();
        let t = |n| Some(Term(n));
        assert_eq!(terms, [None, t(1), t(1), t(2), t(2), t(2), t(5), None]);
        assert_eq!(runs.run_start(LogIndex(5)), Some((LogIndex(3), Term(2))));
        assert_eq!(
            runs.last_at_most(LogIndex(6), Term(4)),
            Some((LogIndex(5), Term(2)))
        );
        assert_eq!(runs.last_at_most(LogIndex(6), Term(0)), None);
    }

    #[test]
    fn compaction_drops_the_covered_prefix_only() {
        let mut runs = runs_of(&[1, 1, 2, 2, 2, 5]);
        runs.compact_to(LogIndex(3));
        assert_eq!(runs.term_at(LogIndex(3)), None);
        assert_eq!(runs.run_start(LogIndex(5)), Some((LogIndex(4), Term(2))));
        assert_eq!(runs.term_at(LogIndex(6)), Some(Term(5)));
        runs.compact_to(LogIndex(9));
        assert!(runs.runs.is_empty());
        assert_eq!(runs.through(), LogIndex(9));
    }
}
