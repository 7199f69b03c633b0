//! The client history of a key-value workload: the simulator's, or the
//! real-network test's (`tests/real_linearizability.rs`).
//!
//! Every operation a client sends is recorded twice: when it is
//! invoked and when the client learns how it ended. The linearizability
//! checker ([`crate::linearizability`]) reads nothing else, so this
//! record is the whole contract between the workload and the checker.
//!
//! The history is written as JSON lines, one operation a line, in invoke
//! order:
//!
//! ```text
//! {"client":3,"op":"put","key":"k1","value":"v7","invoke_ns":1200,"complete_ns":5400,"outcome":"ok","result":null}
//! {"client":1,"op":"cas","key":"k1","value":["v7","v8"],"invoke_ns":1300,"complete_ns":null,"outcome":"unknown","result":null}
//! ```
//!
//! Recording a run:
//!
//! ```
//! use oar_check::history::{History, Operation, Outcome, Reply};
//!
//! let mut history = History::new();
//! let put = history.invoke(3, "k1", Operation::Put { value: "v7".into() }, 1200);
//! history.complete(put, 5400, Outcome::Ok(Reply::Done)).unwrap();
//! let get = history.invoke(4, "k1", Operation::Get, 6000);
//! history.complete(get, 6100, Outcome::Ok(Reply::Value(Some("v7".into())))).unwrap();
//! let mut jsonl = Vec::new();
//! history.write_jsonl(&mut jsonl).unwrap();
//! assert_eq!(History::read_jsonl(&jsonl[..]).unwrap(), history);
//! ```

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// What a client asks of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Set the key to `value`.
    Put {
        /// The new value.
        value: String,
    },
    /// Read the key.
    Get,
    /// Append `value` to the key's value (a missing key counts as empty).
    Append {
        /// The suffix to append.
        value: String,
    },
    /// Compare-and-set: if the key holds `expected`, set it to `new`.
    Cas {
        /// The value the key must hold for the swap to happen.
        expected: String,
        /// The value written when the comparison succeeds.
        new: String,
    },
    /// Increment the key as a counter (a missing key counts as 0); the
    /// reply is the new count, so every reply pins the exact number of
    /// increments before it.
    Incr {
        /// Names the request (unique in a history) so that its log entry
        /// can be told apart from every other increment; not part of the
        /// operation's meaning.
        id: String,
    },
}

impl Operation {
    /// The operation's name as written in the `op` field.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Put { .. } => "put",
            Operation::Get => "get",
            Operation::Append { .. } => "append",
            Operation::Cas { .. } => "cas",
            Operation::Incr { .. } => "incr",
        }
    }
}

/// What the client was told when an operation succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A put or append was applied.
    Done,
    /// A get read this value; `None` when the key was missing.
    Value(Option<String>),
    /// A compare-and-set ran: `true` when it swapped, `false` when the
    /// key did not hold the expected value.
    Swapped(bool),
    /// An increment ran: the counter's new value.
    Count(u64),
}

/// How an operation ended, as far as its client knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect, with this reply.
    Ok(Reply),
    /// It definitely did not take effect (e.g. rejected before it reached
    /// the log).
    Fail,
    /// The client gave up waiting (or the run ended first): the operation
    /// may or may not have taken effect, at any time after its invoke.
    Unknown,
}

impl Outcome {
    /// The outcome's name as written in the `outcome` field.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        }
    }
}

/// Identifies one recorded operation of a [`History`]: its position in
/// invoke order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(usize);

impl OpId {
    /// The operation's position in the history (0-based, invoke order).
    pub fn index(self) -> usize {
        self.0
    }
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    /// The client that sent it.
    pub client: u64,
    /// The key it touches.
    pub key: String,
    /// What was asked.
    pub operation: Operation,
    /// Time of the invoke, in nanoseconds (simulated time in the simulator;
    /// since the run began on a real clock).
    pub invoke_ns: u64,
    /// Time the client learned the outcome; `None` for unknown
    /// outcomes, whose effect may land at any later time.
    pub complete_ns: Option<u64>,
    /// How it ended; [`Outcome::Unknown`] until completed.
    pub outcome: Outcome,
}

/// An operation or completion that the history refuses, because the checker
/// could not give it a meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The id does not name a recorded operation.
    #[error("no operation {0:?} in this history")]
    NoSuchOp(OpId),
    /// The operation already has an outcome.
    #[error("operation {0:?} was already completed")]
    AlreadyCompleted(OpId),
    /// The completion time lies before the invoke time.
    #[error("completion at {complete_ns} ns precedes the invoke at {invoke_ns} ns")]
    CompletedBeforeInvoke {
        /// When the operation was invoked.
        invoke_ns: u64,
        /// The completion time given.
        complete_ns: u64,
    },
    /// The reply does not fit the operation (e.g. a boolean for a get).
    #[error("a {operation} cannot reply {reply}")]
    ReplyDoesNotFit {
        /// The operation's name.
        operation: &'static str,
        /// The reply given, in short.
        reply: String,
    },
}

/// Why [`History::read_jsonl`] rejected its input.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the input failed.
    #[error("line {line}: {source}")]
    Io {
        /// 1-based line number.
        line: usize,
        /// The underlying error.
        source: io::Error,
    },
    /// The line is not a JSON object of the history's shape.
    #[error("line {line}: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A field does not fit the operation or outcome (e.g. a cas whose
    /// value is not `[expected, new]`).
    #[error("line {line}: field `{field}` does not fit a {operation} with outcome {outcome}")]
    Field {
        /// 1-based line number.
        line: usize,
        /// The offending field.
        field: &'static str,
        /// The line's `op`.
        operation: &'static str,
        /// The line's `outcome`.
        outcome: &'static str,
    },
    /// The line is well formed but the history refuses it.
    #[error("line {line}: {source}")]
    Record {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        source: RecordError,
    },
}

/// The client history of one run: operations in invoke order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    records: Vec<OpRecord>,
    /// Whether each record has been given its outcome; kept apart from
    /// `Outcome::Unknown` so that a second completion is caught.
    completed: Vec<bool>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `client` sent `operation` on `key` at `invoke_ns`.
    /// Until [`History::complete`] is called the outcome is unknown, so an
    /// operation still in flight when the run ends needs nothing more.
    pub fn invoke(
        &mut self,
        client: u64,
        key: impl Into<String>,
        operation: Operation,
        invoke_ns: u64,
    ) -> OpId {
        self.records.push(OpRecord {
            client,
            key: key.into(),
            operation,
            invoke_ns,
            complete_ns: None,
            outcome: Outcome::Unknown,
        });
        self.completed.push(false);
        OpId(self.records.len() - 1)
    }

    /// Records how operation `op` ended, learned at `complete_ns`. For
    /// [`Outcome::Unknown`] the time is not kept: the operation may take
    /// effect after the client gave up, so only "never" bounds it.
    pub fn complete(
        &mut self,
        op: OpId,
        complete_ns: u64,
        outcome: Outcome,
    ) -> Result<(), RecordError> {
        let record = self
            .records
            .get_mut(op.0)
            .ok_or(RecordError::NoSuchOp(op))?;
        if self.completed[op.0] {
            return Err(RecordError::AlreadyCompleted(op));
        }
        if complete_ns < record.invoke_ns {
            return Err(RecordError::CompletedBeforeInvoke {
                invoke_ns: record.invoke_ns,
                complete_ns,
            });
        }
        if let Outcome::Ok(reply) = &outcome {
            check_reply_fits(&record.operation, reply)?;
        }
        record.complete_ns = match outcome {
            Outcome::Unknown => None,
            Outcome::Ok(_) | Outcome::Fail => Some(complete_ns),
        };
        record.outcome = outcome;
        self.completed[op.0] = true;
        Ok(())
    }

    /// A copy in which every operation of unknown outcome that
    /// `took_effect` says never took effect is marked failed (at its invoke
    /// time). Sound for a pass: an unknown operation may always be taken as
    /// never applied, so if the copy is linearizable, so is `self`.
    pub fn resolve_unknowns(&self, took_effect: impl Fn(&OpRecord) -> bool) -> History {
        let mut resolved = self.clone();
        for record in &mut resolved.records {
            if record.outcome == Outcome::Unknown && !took_effect(record) {
                record.outcome = Outcome::Fail;
                record.complete_ns = Some(record.invoke_ns);
            }
        }
        resolved
    }

    /// All operations, in invoke order; `records()[id.index()]` is `id`'s.
    pub fn records(&self) -> &[OpRecord] {
        &self.records
    }

    /// All operations with their ids, in invoke order.
    pub fn iter(&self) -> impl Iterator<Item = (OpId, &OpRecord)> {
        self.records
            .iter()
            .enumerate()
            .map(|(index, record)| (OpId(index), record))
    }

    /// The record of one operation.
    pub fn record(&self, op: OpId) -> Option<&OpRecord> {
        self.records.get(op.0)
    }

    /// Number of recorded operations.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Writes the history as JSON lines, one operation a line, in invoke
    /// order (the format in the module docs).
    pub fn write_jsonl(&self, out: &mut impl Write) -> io::Result<()> {
        for record in &self.records {
            serde_json::to_writer(&mut *out, &Line::from_record(record))?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Reads back what [`History::write_jsonl`] wrote. Blank lines are
    /// skipped; anything else that does not fit is an error naming its line.
    pub fn read_jsonl(input: impl BufRead) -> Result<History, ReadError> {
        let mut history = History::new();
        for (index, text) in input.lines().enumerate() {
            let line = index + 1;
            let text = text.map_err(|source| ReadError::Io { line, source })?;
            if text.trim().is_empty() {
                continue;
            }
            let parsed: Line =
                serde_json::from_str(&text).map_err(|source| ReadError::Json { line, source })?;
            parsed.record_into(&mut history, line)?;
        }
        Ok(history)
    }
}

fn check_reply_fits(operation: &Operation, reply: &Reply) -> Result<(), RecordError> {
    let fits = matches!(
        (operation, reply),
        (
            Operation::Put { .. } | Operation::Append { .. },
            Reply::Done
        ) | (Operation::Get, Reply::Value(_))
            | (Operation::Cas { .. }, Reply::Swapped(_))
            | (Operation::Incr { .. }, Reply::Count(_))
    );
    if fits {
        Ok(())
    } else {
        Err(RecordError::ReplyDoesNotFit {
            operation: operation.name(),
            reply: format!("{reply:?}"),
        })
    }
}

/// The `op` field.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OpName {
    Put,
    Get,
    Append,
    Cas,
    Incr,
}

/// The `outcome` field.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutcomeName {
    Ok,
    Fail,
    Unknown,
}

/// One JSON line; field order here is the order on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    client: u64,
    op: OpName,
    key: String,
    value: Json,
    invoke_ns: u64,
    #[serde(default)]
    complete_ns: Option<u64>,
    outcome: OutcomeName,
    result: Json,
}

impl Line {
    fn from_record(record: &OpRecord) -> Line {
        let (op, value) = match &record.operation {
            Operation::Put { value } => (OpName::Put, Json::from(value.as_str())),
            Operation::Get => (OpName::Get, Json::Null),
            Operation::Append { value } => (OpName::Append, Json::from(value.as_str())),
            Operation::Cas { expected, new } => (
                OpName::Cas,
                Json::from(vec![expected.as_str(), new.as_str()]),
            ),
            Operation::Incr { id } => (OpName::Incr, Json::from(id.as_str())),
        };
        let (outcome, result) = match &record.outcome {
            Outcome::Ok(Reply::Done) => (OutcomeName::Ok, Json::Null),
            Outcome::Ok(Reply::Value(value)) => (OutcomeName::Ok, Json::from(value.as_deref())),
            Outcome::Ok(Reply::Swapped(swapped)) => (OutcomeName::Ok, Json::from(*swapped)),
            Outcome::Ok(Reply::Count(count)) => (OutcomeName::Ok, Json::from(*count)),
            Outcome::Fail => (OutcomeName::Fail, Json::Null),
            Outcome::Unknown => (OutcomeName::Unknown, Json::Null),
        };
        Line {
            client: record.client,
            op,
            key: record.key.clone(),
            value,
            invoke_ns: record.invoke_ns,
            complete_ns: record.complete_ns,
            outcome,
            result,
        }
    }

    /// Checks the line's fields against each other and appends it to
    /// `history`.
    fn record_into(self, history: &mut History, line: usize) -> Result<(), ReadError> {
        let operation_name = match self.op {
            OpName::Put => "put",
            OpName::Get => "get",
            OpName::Append => "append",
            OpName::Cas => "cas",
            OpName::Incr => "incr",
        };
        let outcome_name = match self.outcome {
            OutcomeName::Ok => "ok",
            OutcomeName::Fail => "fail",
            OutcomeName::Unknown => "unknown",
        };
        let field_error = |field| ReadError::Field {
            line,
            field,
            operation: operation_name,
            outcome: outcome_name,
        };
        let operation = match (self.op, self.value) {
            (OpName::Put, Json::String(value)) => Operation::Put { value },
            (OpName::Append, Json::String(value)) => Operation::Append { value },
            (OpName::Incr, Json::String(id)) => Operation::Incr { id },
            (OpName::Get, Json::Null) => Operation::Get,
            (OpName::Cas, Json::Array(pair)) => match <[Json; 2]>::try_from(pair) {
                Ok([Json::String(expected), Json::String(new)]) => Operation::Cas { expected, new },
                _ => return Err(field_error("value")),
            },
            _ => return Err(field_error("value")),
        };
        let outcome = match (self.outcome, &operation, self.result) {
            (OutcomeName::Ok, Operation::Put { .. } | Operation::Append { .. }, Json::Null) => {
                Outcome::Ok(Reply::Done)
            }
            (OutcomeName::Ok, Operation::Get, Json::Null) => Outcome::Ok(Reply::Value(None)),
            (OutcomeName::Ok, Operation::Get, Json::String(value)) => {
                Outcome::Ok(Reply::Value(Some(value)))
            }
            (OutcomeName::Ok, Operation::Cas { .. }, Json::Bool(swapped)) => {
                Outcome::Ok(Reply::Swapped(swapped))
            }
            (OutcomeName::Ok, Operation::Incr { .. }, Json::Number(count)) => {
                match count.as_u64() {
                    Some(count) => Outcome::Ok(Reply::Count(count)),
                    None => return Err(field_error("result")),
                }
            }
            (OutcomeName::Fail, _, Json::Null) => Outcome::Fail,
            (OutcomeName::Unknown, _, Json::Null) => Outcome::Unknown,
            _ => return Err(field_error("result")),
        };
        // A known outcome needs its time; an unknown one must not have one,
        // or a reader could think the operation was bounded by it.
        let complete_ns = match (&outcome, self.complete_ns) {
            (Outcome::Unknown, None) => self.invoke_ns,
            (Outcome::Ok(_) | Outcome::Fail, Some(complete_ns)) => complete_ns,
            _ => return Err(field_error("complete_ns")),
        };
        let op = history.invoke(self.client, self.key, operation, self.invoke_ns);
        history
            .complete(op, complete_ns, outcome)
            .map_err(|source| ReadError::Record { line, source })
    }
}

#[cfg(test)]
mod tests;
