//! The sequential specification of one key of the key-value store, over
//! interned values.
//!
//! The search asks the model the same questions millions of times and
//! caches (linearized set, state) pairs, so states are small integers into a
//! table of the values seen, not strings: comparing or hashing a state is
//! then as cheap as comparing an integer, however long appends make the
//! value.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::history::{Operation, Outcome, Reply};

/// A value of the key, as an index into [`ValueTable`]; [`MISSING`] is the
/// key being absent.
pub(crate) type StateId = u32;

/// The state of a key that was never written.
pub(crate) const MISSING: StateId = 0;

/// A hash map with [`FastHasher`]; the search's maps are pure lookup
/// caches, never iterated, so the hash function cannot affect a verdict.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A multiply-rotate hasher (the one rustc uses, "FxHash"): several times
/// faster than the default SipHash on the search's small keys, and no
/// protection against crafted collisions is needed for our own histories.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

impl FastHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut last = [0; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Interns every value the search meets.
///
/// Appends make long values, and the search makes the same ones again and
/// again in different orders, so a value is found by a fingerprint computed
/// from its parts (a polynomial hash, which composes under concatenation)
/// and confirmed by comparing bytes: no string is built or hashed whole
/// unless it is new.
#[derive(Debug)]
pub(crate) struct ValueTable {
    /// `values[id - 1]` is the value with id `id`; id 0 is [`MISSING`].
    values: Vec<Rc<str>>,
    /// `fingerprints[id - 1]`: the value's polynomial hash and
    /// `BASE.pow(len)`, both wrapping.
    fingerprints: Vec<(u64, u64)>,
    /// First value with a given (hash, length).
    by_fingerprint: FastMap<(u64, usize), StateId>,
    /// `same_fingerprint[id - 1]`: the next value with the same (hash,
    /// length), or [`MISSING`]; collisions are rare but must not merge
    /// different values.
    same_fingerprint: Vec<StateId>,
    /// Memo of `append(state, suffix) -> state`.
    appends: FastMap<(StateId, StateId), StateId>,
    /// Memo of `increment(state) -> (count, state)`; `None`: the value is
    /// not a count.
    increments: FastMap<StateId, Option<(u64, StateId)>>,
}

/// The polynomial hash's base (odd, so powers never vanish mod 2^64).
const BASE: u64 = 0x100_0000_01b3;

impl ValueTable {
    pub(crate) fn new() -> Self {
        ValueTable {
            values: Vec::new(),
            fingerprints: Vec::new(),
            by_fingerprint: FastMap::default(),
            same_fingerprint: Vec::new(),
            appends: FastMap::default(),
            increments: FastMap::default(),
        }
    }

    /// The id of `value`, adding it if new.
    pub(crate) fn intern(&mut self, value: &str) -> StateId {
        let fingerprint = value.bytes().fold((0u64, 1u64), |(hash, power), byte| {
            (
                hash.wrapping_mul(BASE).wrapping_add(u64::from(byte)),
                power.wrapping_mul(BASE),
            )
        });
        self.find_or_add(&[value], fingerprint)
    }

    /// The value with id `state`; `None` for [`MISSING`].
    pub(crate) fn value(&self, state: StateId) -> Option<&str> {
        self.values.get(Self::index(state)?).map(|value| &**value)
    }

    fn index(state: StateId) -> Option<usize> {
        usize::try_from(state).ok()?.checked_sub(1)
    }

    /// A handle on a state's value; "" for [`MISSING`].
    fn shared_value(&self, state: StateId) -> Rc<str> {
        Self::index(state)
            .and_then(|index| self.values.get(index))
            .map_or_else(|| Rc::from(""), Rc::clone)
    }

    /// (hash, BASE^len) of a state; the empty string's for [`MISSING`].
    fn fingerprint(&self, state: StateId) -> (u64, u64) {
        Self::index(state)
            .and_then(|index| self.fingerprints.get(index).copied())
            .unwrap_or((0, 1))
    }

    fn append(&mut self, state: StateId, suffix: StateId) -> StateId {
        if let Some(&id) = self.appends.get(&(state, suffix)) {
            return id;
        }
        let (head_hash, head_power) = self.fingerprint(state);
        let (tail_hash, tail_power) = self.fingerprint(suffix);
        let fingerprint = (
            head_hash.wrapping_mul(tail_power).wrapping_add(tail_hash),
            head_power.wrapping_mul(tail_power),
        );
        // Shared handles, so the parts stay readable while the table grows.
        let (head, tail) = (self.shared_value(state), self.shared_value(suffix));
        let id = self.find_or_add(&[&head, &tail], fingerprint);
        self.appends.insert((state, suffix), id);
        id
    }

    /// The count after incrementing `state` (missing counts as 0) and its
    /// state; `None` when the value is not a count.
    fn increment(&mut self, state: StateId) -> Option<(u64, StateId)> {
        if let Some(&known) = self.increments.get(&state) {
            return known;
        }
        let before = match self.value(state) {
            None => Some(0),
            Some(value) => value.parse::<u64>().ok(),
        };
        let after = before
            .and_then(|count| count.checked_add(1))
            .map(|count| (count, self.intern(&count.to_string())));
        self.increments.insert(state, after);
        after
    }

    /// The id of the concatenation of `parts`, whose fingerprint is given,
    /// adding it if new.
    fn find_or_add(&mut self, parts: &[&str], (hash, power): (u64, u64)) -> StateId {
        let length = parts.iter().map(|part| part.len()).sum();
        let first = self.by_fingerprint.get(&(hash, length)).copied();
        let mut candidate = first.unwrap_or(MISSING);
        while let Some(index) = Self::index(candidate) {
            if is_concatenation(&self.values[index], parts) {
                return candidate;
            }
            candidate = self.same_fingerprint[index];
        }
        self.values.push(Rc::from(parts.concat()));
        self.fingerprints.push((hash, power));
        self.same_fingerprint.push(first.unwrap_or(MISSING));
        let id = StateId::try_from(self.values.len()).unwrap_or(StateId::MAX);
        self.by_fingerprint.insert((hash, length), id);
        id
    }
}

/// Whether `value` is `parts` joined.
fn is_concatenation(value: &str, parts: &[&str]) -> bool {
    let mut rest = value.as_bytes();
    for part in parts {
        match rest.split_at_checked(part.len()) {
            Some((start, after)) if start == part.as_bytes() => rest = after,
            _ => return false,
        }
    }
    rest.is_empty()
}

/// One operation as the model sees it: what it does and what its reply
/// demands, with every value interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelOp {
    /// Sets the key.
    Put(StateId),
    /// Appends to the key.
    Append(StateId),
    /// A get that read this state.
    Get(StateId),
    /// A compare-and-set; `swapped` is the reply, `None` when unknown.
    Cas {
        expected: StateId,
        new: StateId,
        swapped: Option<bool>,
    },
    /// An increment; `count` is the reply, `None` when unknown.
    Incr { count: Option<u64> },
}

impl ModelOp {
    /// Translates a recorded operation; `None` when it can neither change
    /// the state nor constrain it (a failed operation, or a get whose reply
    /// never arrived), so the search can leave it out.
    pub(crate) fn from_record(
        operation: &Operation,
        outcome: &Outcome,
        table: &mut ValueTable,
    ) -> Option<ModelOp> {
        let reply = match outcome {
            Outcome::Fail => return None,
            Outcome::Unknown => None,
            Outcome::Ok(reply) => Some(reply),
        };
        match operation {
            Operation::Put { value } => Some(ModelOp::Put(table.intern(value))),
            Operation::Append { value } => Some(ModelOp::Append(table.intern(value))),
            Operation::Get => match reply {
                Some(Reply::Value(Some(value))) => Some(ModelOp::Get(table.intern(value))),
                Some(Reply::Value(None)) => Some(ModelOp::Get(MISSING)),
                // History::complete refuses other replies for a get.
                _ => None,
            },
            Operation::Cas { expected, new } => Some(ModelOp::Cas {
                expected: table.intern(expected),
                new: table.intern(new),
                swapped: match reply {
                    Some(Reply::Swapped(swapped)) => Some(*swapped),
                    _ => None,
                },
            }),
            Operation::Incr { .. } => Some(ModelOp::Incr {
                count: match reply {
                    Some(Reply::Count(count)) => Some(*count),
                    _ => None,
                },
            }),
        }
    }

    /// Applies the operation to `state`: the new state, or `None` when the
    /// recorded reply is impossible from `state`.
    pub(crate) fn step(self, state: StateId, table: &mut ValueTable) -> Option<StateId> {
        match self {
            ModelOp::Put(value) => Some(value),
            ModelOp::Append(suffix) => Some(table.append(state, suffix)),
            ModelOp::Get(read) => (read == state).then_some(state),
            ModelOp::Cas {
                expected,
                new,
                swapped,
            } => {
                let matches = state == expected;
                match swapped {
                    Some(swapped) if swapped != matches => None,
                    _ if matches => Some(new),
                    _ => Some(state),
                }
            }
            // The reply is the exact count: any other number of increments
            // linearized before it fails here.
            ModelOp::Incr { count } => {
                let (after, next) = table.increment(state)?;
                match count {
                    Some(count) if count != after => None,
                    _ => Some(next),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Thue–Morse word of length 2^order over `a`/`b` and its
    /// complement: different strings whose polynomial hashes mod 2^64
    /// collide for every odd base once `order` is 11 or more.
    fn thue_morse(order: u32) -> (String, String) {
        let letter = |index: u32, flip| {
            if (index.count_ones() % 2 == 1) != flip {
                'b'
            } else {
                'a'
            }
        };
        let word = |flip| (0..1 << order).map(|index| letter(index, flip)).collect();
        (word(false), word(true))
    }

    #[test]
    fn values_with_colliding_fingerprints_stay_apart() {
        let (word, complement) = thue_morse(12);
        let mut table = ValueTable::new();
        let first = table.intern(&word);
        let second = table.intern(&complement);
        assert_eq!(table.fingerprint(first), table.fingerprint(second));
        assert_ne!(first, second);
        assert_eq!(table.value(second), Some(complement.as_str()));
        assert_eq!(table.intern(&word), first);
        // The same values built by appends find the same ids.
        let (half, other_half) = word.split_at(word.len() / 2);
        let (half, other_half) = (table.intern(half), table.intern(other_half));
        let joined = table.append(half, other_half);
        assert_eq!(joined, first);
        assert_eq!(table.append(MISSING, second), second);
    }

    #[test]
    fn the_empty_string_is_not_a_missing_key() {
        let mut table = ValueTable::new();
        let empty = table.intern("");
        assert_ne!(empty, MISSING);
        assert_eq!(table.append(MISSING, empty), empty);
        assert_eq!(ModelOp::Get(MISSING).step(empty, &mut table), None);
    }
}
