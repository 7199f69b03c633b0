//! The Wing & Gong search with Lowe's memoization, over the operations of
//! one key, resumable so that several keys can be searched in turns.
//!
//! The history becomes a doubly linked list of call and return events in
//! real-time order. The search walks it from the front: at a call it tries
//! to linearize that operation now (the model must accept its reply); if so
//! the operation's call and return are unlinked and the walk restarts at
//! the front. Reaching a return means that operation's response came before
//! any order could place it: undo the latest choice and try the next call
//! after it. A cache of (set of linearized operations, model state) pairs
//! already explored keeps the search from re-exploring the same situation
//! through a different order, which is what makes it practical.
//!
//! Operations of unknown outcome have their return at infinity, after every
//! known event, so the search may place them anywhere after their call; the
//! search succeeds as soon as every operation with a known outcome is
//! linearized, which also covers unknown operations that never took effect.

use crate::history::OpId;
use crate::kv_model::{FastMap, MISSING, ModelOp, StateId, ValueTable};

/// One operation of the partition.
#[derive(Debug, Clone)]
pub(crate) struct SearchOp {
    /// The operation in the history, for reporting.
    pub(crate) id: OpId,
    /// What it does to the key and what its reply demands.
    pub(crate) model: ModelOp,
    /// When it was invoked.
    pub(crate) invoke_ns: u64,
    /// When its reply arrived; `None` for unknown outcomes (infinity).
    pub(crate) complete_ns: Option<u64>,
}

/// Where the search stands after a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Not decided yet; call [`Search::run`] again.
    Undecided,
    /// Every operation with a known outcome fits a linearization.
    Linearizable,
    /// No linearization exists.
    NotLinearizable(Stuck),
}

/// The deepest point the search reached before giving up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stuck {
    /// The longest linearizable prefix found, in linearization order.
    pub(crate) linearized: Vec<OpId>,
    /// The key's value after that prefix.
    pub(crate) state_after: Option<String>,
    /// The operation whose response arrived before it could be placed;
    /// `None` only if the search ran off the end of the list, which a
    /// history with a known operation left cannot do.
    pub(crate) blocked: Option<OpId>,
}

/// An event of the linked list.
#[derive(Debug, Clone, Copy)]
struct Event {
    /// Index into `Search::ops`.
    op: usize,
    /// For a call, the index of its return event; `None` for a return.
    return_event: Option<usize>,
}

/// Index of the head sentinel in `Search::events`.
const HEAD: usize = 0;

/// The resumable search over one key's operations.
#[derive(Debug)]
pub(crate) struct Search {
    ops: Vec<SearchOp>,
    /// `events[HEAD]` and the last event are sentinels.
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    tail: usize,
    table: ValueTable,
    state: StateId,
    /// Bit `i` set when `ops[i]` is linearized.
    linearized: Vec<u64>,
    /// Operations with a known outcome not linearized yet.
    known_left: usize,
    /// The choices made: (call event, state before it).
    stack: Vec<(usize, StateId)>,
    /// The (linearized set, state) pairs explored.
    explored: Explored,
    /// A fixed pseudo-random word per operation; the XOR of those of the
    /// linearized operations identifies the set in the cache's hash.
    op_hashes: Vec<u64>,
    /// XOR of `op_hashes` of the linearized operations.
    linearized_hash: u64,
    cursor: usize,
    deepest: Option<Stuck>,
}

impl Search {
    /// Prepares the search; `table` must be the one `ops`' models were
    /// interned into.
    pub(crate) fn new(ops: Vec<SearchOp>, table: ValueTable) -> Search {
        // Sort key: unknown returns after everything else, then time, then
        // calls before returns at equal times (an operation that starts at
        // the instant another ends may still overlap it), then op order.
        let mut order: Vec<((bool, u64, bool), usize)> = Vec::with_capacity(2 * ops.len());
        for (index, op) in ops.iter().enumerate() {
            order.push(((false, op.invoke_ns, false), index));
            let end = match op.complete_ns {
                // The history never completes before the invoke; the max
                // keeps the return after the call regardless.
                Some(complete_ns) => (false, complete_ns.max(op.invoke_ns), true),
                None => (true, 0, true),
            };
            order.push((end, index));
        }
        order.sort_unstable();

        let sentinel = Event {
            op: usize::MAX,
            return_event: None,
        };
        let mut events = vec![sentinel];
        let mut call_event_of = vec![0; ops.len()];
        for &((_, _, is_return), op) in &order {
            let position = events.len();
            if is_return {
                events[call_event_of[op]].return_event = Some(position);
                events.push(Event {
                    op,
                    return_event: None,
                });
            } else {
                call_event_of[op] = position;
                events.push(Event {
                    op,
                    return_event: Some(usize::MAX),
                });
            }
        }
        events.push(sentinel);
        let tail = events.len() - 1;
        let next = (0..events.len()).map(|index| index + 1).collect();
        let prev = (0..events.len())
            .map(|index| index.saturating_sub(1))
            .collect();
        let known_left = ops.iter().filter(|op| op.complete_ns.is_some()).count();
        let words = ops.len().div_ceil(64);
        let ops_count = ops.len();
        Search {
            ops,
            events,
            next,
            prev,
            tail,
            table,
            state: MISSING,
            linearized: vec![0; words],
            known_left,
            stack: Vec::new(),
            explored: Explored::new(words),
            op_hashes: (0..ops_count)
                .map(|index| split_mix(index as u64))
                .collect(),
            linearized_hash: 0,
            cursor: 1,
            deepest: None,
        }
    }

    /// Searches for at most `budget` steps; returns where it stands and the
    /// steps used.
    pub(crate) fn run(&mut self, budget: u64) -> (Progress, u64) {
        let mut steps = 0;
        while steps < budget {
            steps += 1;
            if self.known_left == 0 {
                return (Progress::Linearizable, steps);
            }
            let event = self.cursor;
            let return_event = if event == self.tail {
                None
            } else {
                self.events[event].return_event
            };
            match return_event {
                Some(return_event) => self.try_linearize(event, return_event),
                None => {
                    if let Some(stuck) = self.backtrack(event) {
                        return (Progress::NotLinearizable(stuck), steps);
                    }
                }
            }
        }
        (Progress::Undecided, steps)
    }

    /// At a call event: linearize its operation now if the model accepts it
    /// and this situation is new, else move on to the next event.
    fn try_linearize(&mut self, call: usize, return_event: usize) {
        let op = self.events[call].op;
        if let Some(new_state) = self.ops[op].model.step(self.state, &mut self.table) {
            set_bit(&mut self.linearized, op, true);
            self.linearized_hash ^= self.op_hashes[op];
            if self
                .explored
                .insert(&self.linearized, self.linearized_hash, new_state)
            {
                self.stack.push((call, self.state));
                self.state = new_state;
                self.unlink(call);
                self.unlink(return_event);
                if self.ops[op].complete_ns.is_some() {
                    self.known_left -= 1;
                }
                self.cursor = self.next[HEAD];
                return;
            }
            set_bit(&mut self.linearized, op, false);
            self.linearized_hash ^= self.op_hashes[op];
        }
        self.cursor = self.next[call];
    }

    /// At a return event (or the end of the list): the operation responded
    /// before it could be placed, so undo the latest choice. Returns the
    /// failure when there is nothing left to undo.
    fn backtrack(&mut self, event: usize) -> Option<Stuck> {
        if event != self.tail {
            let deeper = self
                .deepest
                .as_ref()
                .is_none_or(|deepest| self.stack.len() > deepest.linearized.len());
            if deeper {
                self.deepest = Some(self.stuck_here(event));
            }
        }
        let Some((call, state_before)) = self.stack.pop() else {
            return Some(
                self.deepest
                    .take()
                    .unwrap_or_else(|| self.stuck_here(event)),
            );
        };
        let op = self.events[call].op;
        self.state = state_before;
        set_bit(&mut self.linearized, op, false);
        self.linearized_hash ^= self.op_hashes[op];
        if let Some(return_event) = self.events[call].return_event {
            self.relink(return_event);
        }
        self.relink(call);
        if self.ops[op].complete_ns.is_some() {
            self.known_left += 1;
        }
        self.cursor = self.next[call];
        None
    }

    fn stuck_here(&self, event: usize) -> Stuck {
        let blocked_op = self.events.get(event).map_or(usize::MAX, |event| event.op);
        Stuck {
            linearized: self
                .stack
                .iter()
                .map(|&(call, _)| self.ops[self.events[call].op].id)
                .collect(),
            state_after: self.table.value(self.state).map(str::to_owned),
            blocked: self.ops.get(blocked_op).map(|op| op.id),
        }
    }

    /// Removes `event` from the list; it keeps its own links so that
    /// [`Search::relink`] can put it back (dancing links).
    fn unlink(&mut self, event: usize) {
        let (before, after) = (self.prev[event], self.next[event]);
        self.next[before] = after;
        self.prev[after] = before;
    }

    /// Undoes [`Search::unlink`]; events must be relinked in the reverse
    /// order of their unlinking.
    fn relink(&mut self, event: usize) {
        let (before, after) = (self.prev[event], self.next[event]);
        self.next[before] = event;
        self.prev[after] = event;
    }
}

fn set_bit(bits: &mut [u64], index: usize, value: bool) {
    let (word, mask) = (index / 64, 1u64 << (index % 64));
    if value {
        bits[word] |= mask;
    } else {
        bits[word] &= !mask;
    }
}

/// The set of (linearized set, state) pairs explored, without an
/// allocation per pair: the bitsets live end to end in one arena, and a
/// hash map from (set hash, state) leads to a chain of arena entries with
/// that hash, compared word for word so a hash collision cannot lose a pair.
/// A pure lookup structure, never iterated, so hashing cannot sway a verdict.
#[derive(Debug)]
struct Explored {
    /// Words per bitset.
    words: usize,
    /// Bitset `i` is `arena[i * words..(i + 1) * words]`.
    arena: Vec<u64>,
    /// The next entry with the same (set hash, state); `u32::MAX` ends it.
    chain: Vec<u32>,
    /// First entry for each (set hash, state).
    heads: FastMap<(u64, StateId), u32>,
}

impl Explored {
    fn new(words: usize) -> Explored {
        Explored {
            words,
            arena: Vec::new(),
            chain: Vec::new(),
            heads: FastMap::default(),
        }
    }

    /// Adds the pair; `false` if it was already there.
    fn insert(&mut self, bits: &[u64], set_hash: u64, state: StateId) -> bool {
        let new_entry = u32::try_from(self.chain.len()).unwrap_or(u32::MAX);
        let head = self.heads.entry((set_hash, state)).or_insert(u32::MAX);
        let mut entry = *head;
        while entry != u32::MAX {
            let start = entry as usize * self.words;
            if self.arena[start..start + self.words] == *bits {
                return false;
            }
            entry = self.chain[entry as usize];
        }
        self.chain.push(*head);
        *head = new_entry;
        self.arena.extend_from_slice(bits);
        true
    }
}

/// A well-mixed 64-bit word from `seed` (SplitMix64's finalizer).
fn split_mix(seed: u64) -> u64 {
    let mut word = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    word = (word ^ (word >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    word = (word ^ (word >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    word ^ (word >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explored_pairs_with_the_same_hash_stay_apart() {
        let mut explored = Explored::new(2);
        let (first, second) = ([1, 0], [0, 1]);
        // Force a collision: both sets under one hash and state.
        assert!(explored.insert(&first, 7, 3));
        assert!(explored.insert(&second, 7, 3));
        assert!(!explored.insert(&first, 7, 3));
        assert!(!explored.insert(&second, 7, 3));
        assert!(explored.insert(&first, 7, 4));
        assert!(explored.insert(&first, 8, 3));
    }
}
