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
    /// The next term.
    pub const fn next(self) -> Term {
        Term(self.0 + 1)
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
