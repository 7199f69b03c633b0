//! The sequential specification of one key of the key-value store, over
//! interned values.
//!
//! The search asks the model the same questions millions of times and
//! caches (linearized set, state) pairs, so states are small integers into a
//! table of the values seen, not strings: comparing or hashing a state is
//! then as cheap as comparing an integer, however long appends make the
//! value.

use std::collections::HashMap;

use crate::history::{Operation, Outcome, Reply};

/// A value of the key, as an index into [`ValueTable`]; [`MISSING`] is the
/// key being absent.
pub(crate) type StateId = u32;

/// The state of a key that was never written.
pub(crate) const MISSING: StateId = 0;

/// Interns every value the search meets.
#[derive(Debug)]
pub(crate) struct ValueTable {
    /// `values[id - 1]` is the value with id `id`; id 0 is [`MISSING`].
    values: Vec<String>,
    ids: HashMap<String, StateId>,
    /// Memo of `append(state, suffix) -> state`; a pure lookup cache, never
    /// iterated, so it cannot make results depend on hashing.
    appends: HashMap<(StateId, StateId), StateId>,
}

impl ValueTable {
    pub(crate) fn new() -> Self {
        ValueTable {
            values: Vec::new(),
            ids: HashMap::new(),
            appends: HashMap::new(),
        }
    }

    /// The id of `value`, adding it if new.
    pub(crate) fn intern(&mut self, value: &str) -> StateId {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        self.values.push(value.to_owned());
        let id = StateId::try_from(self.values.len()).unwrap_or(StateId::MAX);
        self.ids.insert(value.to_owned(), id);
        id
    }

    /// The value with id `state`; `None` for [`MISSING`].
    pub(crate) fn value(&self, state: StateId) -> Option<&str> {
        let index = usize::try_from(state).ok()?.checked_sub(1)?;
        self.values.get(index).map(String::as_str)
    }

    fn append(&mut self, state: StateId, suffix: StateId) -> StateId {
        if let Some(&id) = self.appends.get(&(state, suffix)) {
            return id;
        }
        let mut joined = self.value(state).unwrap_or("").to_owned();
        joined.push_str(self.value(suffix).unwrap_or(""));
        let id = self.intern(&joined);
        self.appends.insert((state, suffix), id);
        id
    }
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
        }
    }
}
