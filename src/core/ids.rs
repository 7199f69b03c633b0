//! Identifier newtypes: node ids, terms, log indexes and log positions.
//!
//! Distinct types keep a term from being passed where an index is expected;
//! all are `Copy`, ordered and print as plain numbers.

use std::fmt;

/// The id of a Raft node (braft's `PeerId`), unique within a group. `0` is
/// reserved for "no node".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

/// A Raft term (Raft §5.1): a logical clock, increased by every election.
///
/// Terms never exceed [`Term::MAX`]: a message carrying a higher term is
/// refused, and a node at the ceiling no longer campaigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Term(pub u64);

/// A position in the replicated log. Index 0 is before the first entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogIndex(pub u64);

/// The identity of a log entry: the term it was created in and its index.
///
/// By the Log Matching property (Raft §5.3) two logs holding the same `LogId`
/// hold identical prefixes up to it. `LogId::default()` is the empty-log
/// position `(0, 0)`. Ordered by term, then index: the "up-to-date" order
/// of Raft §5.4.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogId {
    /// The term the entry was created in.
    pub term: Term,
    /// The entry's index.
    pub index: LogIndex,
}

impl LogId {
    /// A log id from a raw term and index.
    pub const fn new(term: u64, index: u64) -> Self {
        LogId {
            term: Term(term),
            index: LogIndex(index),
        }
    }
}

impl Term {
    /// The ceiling of the term range, 2^63. No honest group gets near it:
    /// at a million elections a second it takes some 290,000 years. Half
    /// the range stays unused so that no arithmetic on a term can wrap, and
    /// a term above it can only come from a faulty or hostile sender, whose
    /// message is refused before anything changes (`InputError::TermAboveCeiling`).
    pub const MAX: Term = Term(1 << 63);

    /// The next term, or `None` at [`Term::MAX`]: the caller must then not
    /// start a new term (a node at the ceiling cannot campaign).
    pub const fn next(self) -> Option<Term> {
        if self.0 < Term::MAX.0 {
            Some(Term(self.0 + 1))
        } else {
            None
        }
    }
}

impl LogIndex {
    /// The next index.
    pub const fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The previous index, saturating at 0.
    pub const fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// This index moved forward by `n` entries.
    pub const fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0 + n)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.term, self.index)
    }
}
