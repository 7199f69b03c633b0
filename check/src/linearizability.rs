//! Linearizability of a client history against the key-value model.
//!
//! Each operation touches one key and keys are independent, so a history is
//! linearizable exactly when each key's sub-history is (Herlihy & Wing's
//! locality). The checker splits the history by key and runs one WGL search
//! per key (module `wgl`), in turns of a bounded number of steps each, so
//! that a violation on any key is found about as fast as that key's search
//! alone finds it, even when other keys are slow to prove correct.
//!
//! Outcomes: a `fail` operation did not take effect and is left out; an
//! `unknown` one may have taken effect at any time after its invoke, or
//! never; an `ok` one took effect between its invoke and completion and its
//! reply (a get's value, a cas's swapped flag) must match the model.
//!
//! ```
//! use oar_check::linearizability::{check, Verdict};
//! use oar_check::history::{History, Operation, Outcome, Reply};
//!
//! let mut history = History::new();
//! let put = history.invoke(1, "k", Operation::Put { value: "a".into() }, 0);
//! history.complete(put, 10, Outcome::Ok(Reply::Done)).unwrap();
//! // A read that starts after the put completed but misses it: stale.
//! let get = history.invoke(2, "k", Operation::Get, 20);
//! history.complete(get, 30, Outcome::Ok(Reply::Value(None))).unwrap();
//! assert!(matches!(check(&history), Verdict::NotLinearizable(_)));
//! ```

use std::collections::BTreeMap;
use std::fmt;

use crate::history::{History, OpId, OpRecord};
use crate::kv_model::{ModelOp, ValueTable};
use crate::wgl::{Progress, Search, SearchOp};

/// Limits of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Give up with [`Verdict::Timeout`] after this many search steps over
    /// all keys; `None` searches until decided.
    pub max_steps: Option<u64>,
    /// Steps one key's search may take before the next key gets its turn.
    pub steps_per_turn: u64,
}

impl Default for CheckOptions {
    /// No overall limit; turns of 10 000 steps, a few hundred microseconds,
    /// short enough that a failing key is not kept waiting by a slow one.
    fn default() -> Self {
        CheckOptions {
            max_steps: None,
            steps_per_turn: 10_000,
        }
    }
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, each placed between its invoke and
    /// completion, explains every reply.
    Linearizable,
    /// No such order exists for (at least) this key; boxed because a
    /// violation carries records and the other verdicts are small.
    NotLinearizable(Box<Violation>),
    /// The step budget ran out first; nothing is claimed.
    Timeout {
        /// Steps taken over all keys.
        steps: u64,
        /// Keys whose search had not finished, in key order.
        undecided_keys: Vec<String>,
    },
}

impl Verdict {
    /// Whether the history was proven linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Why one key's history is not linearizable: the furthest any order got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// The longest order of this key's operations the search found that
    /// respects real time and the model, in that order.
    pub linearized: Vec<OpId>,
    /// The key's value after `linearized`; `None` when missing.
    pub state_after: Option<String>,
    /// The operation that completed before any order could place it, given
    /// `linearized` (its reply cannot be explained, or other operations
    /// that must precede it cannot be); `None` only in a degenerate search.
    pub blocked: Option<OpId>,
    /// The record of `blocked`, so the violation prints without the history.
    pub blocked_record: Option<OpRecord>,
    /// The last few records of `linearized`, oldest first, for the same
    /// reason.
    pub last_linearized: Vec<OpRecord>,
}

/// How many of the last linearized operations a [`Violation`] carries.
const CONTEXT_OPS: usize = 5;

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "key {:?} is not linearizable: the longest valid order has {} operations, \
             leaving the value {:?}",
            self.key,
            self.linearized.len(),
            self.state_after
        )?;
        if !self.last_linearized.is_empty() {
            write!(formatter, "; it ends with")?;
            for record in &self.last_linearized {
                write!(formatter, " [{}]", describe(record))?;
            }
        }
        if let Some(record) = &self.blocked_record {
            write!(
                formatter,
                "; then nothing explains [{}] before its completion",
                describe(record)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(formatter, "linearizable"),
            Verdict::NotLinearizable(violation) => write!(formatter, "{violation}"),
            Verdict::Timeout {
                steps,
                undecided_keys,
            } => write!(
                formatter,
                "undecided after {steps} steps (keys {undecided_keys:?})"
            ),
        }
    }
}

/// One line about an operation, for violation reports.
fn describe(record: &OpRecord) -> String {
    let completed = record
        .complete_ns
        .map_or_else(|| "never".to_owned(), |ns| ns.to_string());
    format!(
        "client {} {:?} -> {:?} invoked {} ns, completed {} ns",
        record.client, record.operation, record.outcome, record.invoke_ns, completed
    )
}

/// Checks `history` with [`CheckOptions::default`] (no step limit).
///
/// The search is exponential in the worst case and its cache grows with
/// it (a key of Porcupine's `c50-bad` alone ran past 100 million steps and
/// 6 GB); runs that must finish, such as seed sweeps, should use
/// [`check_with`] and a `max_steps` of a few million (on the order of
/// 0.5 s per million steps in a debug build, 0.1 s optimized).
pub fn check(history: &History) -> Verdict {
    check_with(history, &CheckOptions::default())
}

/// Checks `history`: each key's search runs in turns of
/// `options.steps_per_turn` steps, keys in key order, stopping at the first
/// violation or when `options.max_steps` is spent.
pub fn check_with(history: &History, options: &CheckOptions) -> Verdict {
    let mut undecided: Vec<(String, Search)> = partition(history);
    let turn = options.steps_per_turn.max(1);
    let mut steps_taken: u64 = 0;
    while !undecided.is_empty() {
        let mut index = 0;
        while index < undecided.len() {
            let budget = match options.max_steps {
                Some(max_steps) if steps_taken >= max_steps => {
                    return Verdict::Timeout {
                        steps: steps_taken,
                        undecided_keys: undecided.into_iter().map(|(key, _)| key).collect(),
                    };
                }
                Some(max_steps) => turn.min(max_steps - steps_taken),
                None => turn,
            };
            let (key, search) = &mut undecided[index];
            let (progress, steps) = search.run(budget);
            steps_taken = steps_taken.saturating_add(steps);
            match progress {
                Progress::Undecided => index += 1,
                Progress::Linearizable => {
                    // `remove`, not `swap_remove`: keeps turns in key order.
                    undecided.remove(index);
                }
                Progress::NotLinearizable(stuck) => {
                    let record = |id: &OpId| history.record(*id).cloned();
                    let context_start = stuck.linearized.len().saturating_sub(CONTEXT_OPS);
                    return Verdict::NotLinearizable(Box::new(Violation {
                        key: std::mem::take(key),
                        last_linearized: stuck.linearized[context_start..]
                            .iter()
                            .filter_map(record)
                            .collect(),
                        blocked_record: stuck.blocked.as_ref().and_then(record),
                        linearized: stuck.linearized,
                        state_after: stuck.state_after,
                        blocked: stuck.blocked,
                    }));
                }
            }
        }
    }
    Verdict::Linearizable
}

/// Splits the history by key, in key order, leaving out operations that
/// neither change nor constrain the state.
fn partition(history: &History) -> Vec<(String, Search)> {
    let mut by_key: BTreeMap<&str, (Vec<SearchOp>, ValueTable)> = BTreeMap::new();
    for (id, record) in history.iter() {
        let (ops, table) = by_key
            .entry(record.key.as_str())
            .or_insert_with(|| (Vec::new(), ValueTable::new()));
        let Some(model) = ModelOp::from_record(&record.operation, &record.outcome, table) else {
            continue;
        };
        ops.push(SearchOp {
            id,
            model,
            invoke_ns: record.invoke_ns,
            complete_ns: record.complete_ns,
        });
    }
    by_key
        .into_iter()
        .map(|(key, (ops, table))| (key.to_owned(), Search::new(ops, table)))
        .collect()
}
