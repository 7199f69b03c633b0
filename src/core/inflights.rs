//! The bounded window of AppendEntries sent to one peer and not yet
//! acknowledged (braft's `_append_entries_in_fly`, etcd's `Inflights`).
//!
//! Bounded both by message count and by bytes, so that a slow follower cannot
//! make the leader queue unbounded data for it.

use std::collections::VecDeque;

use super::ids::LogIndex;

/// Unacknowledged appends to one peer, oldest first.
///
/// Invariant: `bytes` is the sum of the sizes in `window`, and the last
/// indexes in `window` strictly increase.
#[derive(Clone, Debug)]
pub struct Inflights {
    /// (last index carried, bytes carried) per message in flight.
    window: VecDeque<(LogIndex, u64)>,
    /// The total bytes in flight.
    bytes: u64,
    /// At most this many messages in flight.
    msgs_max: usize,
    /// At most this many bytes in flight (one message may exceed it alone).
    bytes_max: u64,
}

impl Inflights {
    /// An empty window with these bounds.
    pub fn new(msgs_max: usize, bytes_max: u64) -> Self {
        Inflights {
            window: VecDeque::new(),
            bytes: 0,
            msgs_max,
            bytes_max,
        }
    }

    /// Records a message carrying entries up to `last` of `bytes` bytes.
    pub fn add(&mut self, last: LogIndex, bytes: u64) {
        debug_assert!(self.window.back().is_none_or(|&(prev, _)| prev < last));
        self.window.push_back((last, bytes));
        self.bytes += bytes;
    }

    /// Frees every message whose entries are all at or below `acked`.
    pub fn free_to(&mut self, acked: LogIndex) {
        while let Some(&(last, bytes)) = self.window.front() {
            if last > acked {
                break;
            }
            self.window.pop_front();
            self.bytes -= bytes;
        }
    }

    /// Frees the oldest message, so that one more may go out: used when a
    /// heartbeat response suggests that the window is stuck on lost messages.
    pub fn free_first(&mut self) {
        if let Some((_, bytes)) = self.window.pop_front() {
            self.bytes -= bytes;
        }
    }

    /// Forgets everything in flight.
    pub fn reset(&mut self) {
        self.window.clear();
        self.bytes = 0;
    }

    /// Whether no more messages may be sent.
    pub fn is_full(&self) -> bool {
        self.window.len() >= self.msgs_max || self.bytes >= self.bytes_max
    }

    /// Messages in flight.
    pub fn count(&self) -> usize {
        self.window.len()
    }

    /// Bytes in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_by_count_and_frees_by_ack() {
        let mut window = Inflights::new(3, 1_000);
        window.add(LogIndex(2), 10);
        window.add(LogIndex(5), 10);
        assert!(!window.is_full());
        window.add(LogIndex(9), 10);
        assert!(window.is_full());
        window.free_to(LogIndex(5));
        assert_eq!((window.count(), window.bytes()), (1, 10));
        assert!(!window.is_full());
        // An ack inside a message's range does not free it.
        window.free_to(LogIndex(8));
        assert_eq!(window.count(), 1);
    }

    #[test]
    fn fills_by_bytes() {
        let mut window = Inflights::new(100, 50);
        window.add(LogIndex(1), 30);
        assert!(!window.is_full());
        window.add(LogIndex(2), 30);
        assert!(window.is_full());
        window.free_first();
        assert!(!window.is_full());
        assert_eq!(window.bytes(), 30);
    }
}
