//! Log entries and the durable term/vote record.

use std::sync::Arc;

use bytes::Bytes;

use super::ids::{LogId, NodeId, Term};
use super::membership::Membership;

/// One entry of the replicated log (braft's `LogEntry`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's term and index.
    pub id: LogId,
    /// What the entry carries.
    pub payload: EntryPayload,
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryPayload {
    /// An empty entry a new leader appends to commit entries of earlier terms
    /// (Raft §8: a leader commits an entry of its own term first).
    Noop,
    /// A client command for the state machine.
    Command(Bytes),
    /// A membership configuration; takes effect when appended (dissertation §4.1).
    /// Behind a pointer: configurations are rare, and inline they would
    /// make every entry 96 bytes instead of 56, in the log and in every
    /// copy; shared (`Arc`), so that copying the entry copies no sets.
    Config(Arc<Membership>),
}

impl Entry {
    /// The bytes this entry counts for in batching and flow-control limits:
    /// its payload plus a fixed per-entry overhead for the header.
    pub fn size_bytes(&self) -> u64 {
        const HEADER_BYTES: u64 = 24;
        let payload = match &self.payload {
            EntryPayload::Noop => 0,
            EntryPayload::Command(data) => data.len() as u64,
            EntryPayload::Config(m) => 8 * m.node_count() as u64,
        };
        HEADER_BYTES + payload
    }
}

/// The term and vote a node must keep durably (Raft Figure 2, "persistent
/// state"; braft's `LocalRaftMetaStorage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub voted_for: Option<NodeId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_stays_small() {
        // Entries fill the log and every batch: a configuration inline
        // (three sets) would double them.
        assert!(size_of::<Entry>() <= 56, "{} bytes", size_of::<Entry>());
    }
}
