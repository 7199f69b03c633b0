//! The clients a group task owes an answer, by the log index of their
//! proposal.
//!
//! A deque sorted by index rather than a map: proposals are made at the
//! log's end and answered in log order, so each is pushed at the back and
//! taken from the front, in O(1) and without a node allocation (a
//! `BTreeMap` here cost a few percent of the in-memory benchmark's CPU).

use std::collections::VecDeque;

use super::apply_loop::ProposalReply;
use crate::core::{LogIndex, Term};

/// Waiting clients: index → (term, reply), sorted by index.
#[derive(Default)]
pub(crate) struct PendingProposals {
    queue: VecDeque<(LogIndex, Term, ProposalReply)>,
}

impl PendingProposals {
    /// Records the client of the proposal at `index` of `term` (replacing
    /// one at the same index, as a map would).
    pub(crate) fn insert(&mut self, index: LogIndex, (term, reply): (Term, ProposalReply)) {
        match self.queue.back() {
            Some(&(last, _, _)) if last >= index => match self.position(index) {
                Ok(at) => self.queue[at] = (index, term, reply),
                Err(at) => self.queue.insert(at, (index, term, reply)),
            },
            _ => self.queue.push_back((index, term, reply)),
        }
    }

    /// Takes the client of the proposal at `index`, if one waits.
    pub(crate) fn remove(&mut self, index: LogIndex) -> Option<(Term, ProposalReply)> {
        let at = match self.queue.front() {
            None => return None,
            // Answers come in log order: the common case.
            Some(&(first, _, _)) if first == index => 0,
            Some(_) => self.position(index).ok()?,
        };
        self.queue.remove(at).map(|(_, term, reply)| (term, reply))
    }

    /// How many clients wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    fn position(&self, index: LogIndex) -> Result<usize, usize> {
        self.queue.binary_search_by_key(&index, |&(i, _, _)| i)
    }
}

impl IntoIterator for PendingProposals {
    type Item = (LogIndex, (Term, ProposalReply));
    type IntoIter = std::iter::Map<
        std::collections::vec_deque::IntoIter<(LogIndex, Term, ProposalReply)>,
        fn((LogIndex, Term, ProposalReply)) -> (LogIndex, (Term, ProposalReply)),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.queue
            .into_iter()
            .map(|(index, term, reply)| (index, (term, reply)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn reply() -> ProposalReply {
        oneshot::channel().0
    }

    fn indexes(pending: PendingProposals) -> Vec<(u64, u64)> {
        pending.into_iter().map(|(i, (t, _))| (i.0, t.0)).collect()
    }

    #[test]
    fn behaves_as_a_map_in_any_order() {
        let mut pending = PendingProposals::default();
        for i in [5, 6, 8] {
            pending.insert(LogIndex(i), (Term(1), reply()));
        }
        // Out of order, and one replacing an index (a new term's proposal).
        pending.insert(LogIndex(7), (Term(1), reply()));
        pending.insert(LogIndex(3), (Term(1), reply()));
        pending.insert(LogIndex(6), (Term(2), reply()));
        assert_eq!(pending.len(), 5);
        assert_eq!(pending.remove(LogIndex(4)).map(|(t, _)| t), None);
        assert_eq!(pending.remove(LogIndex(7)).map(|(t, _)| t), Some(Term(1)));
        assert_eq!(pending.remove(LogIndex(3)).map(|(t, _)| t), Some(Term(1)));
        assert_eq!(pending.remove(LogIndex(3)).map(|(t, _)| t), None);
        assert_eq!(indexes(pending), vec![(5, 1), (6, 2), (8, 1)]);
    }

    #[test]
    fn empty_has_nothing() {
        let mut pending = PendingProposals::default();
        assert!(pending.remove(LogIndex(1)).is_none());
        assert_eq!(pending.len(), 0);
    }
}
