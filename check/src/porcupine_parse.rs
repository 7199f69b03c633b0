//! Readers for the test histories of the Porcupine checker (MIT licence;
//! copies in `sim/testdata/porcupine/`), whose verdicts are known, so that
//! the checker can be held to them.
//!
//! Two formats, both one event a line, in real-time order, with an
//! operation's invoke and completion on separate lines. Neither carries
//! times, so an event's time is its line number.
//!
//! - Key-value logs (`c01-ok.txt` ...), EDN maps:
//!   `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`,
//!   `:type` one of `:invoke`, `:ok`, `:fail`, `:info`, `:f` one of `:get`,
//!   `:put`, `:append`; a get's `:ok` line carries the value read.
//! - Jepsen etcd logs (`etcd_000.log` ...), a single compare-and-set
//!   register: `INFO  jepsen.util - 3 :ok :read 4` (fields separated by
//!   tabs or spaces), `:f` one of `:read`, `:write`, `:cas` (value
//!   `[expected new]`); read onto key [`ETCD_REGISTER_KEY`].
//!
//! An `:info` completion, or none before the end of the log, is an unknown
//! outcome.

use std::collections::BTreeMap;

use crate::history::{History, OpId, Operation, Outcome, RecordError, Reply};

/// The key the etcd register's operations are recorded on.
pub const ETCD_REGISTER_KEY: &str = "register";

/// Why a log was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub problem: Problem,
}

/// What was wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The text is not the expected EDN.
    #[error("expected {expected} at column {column}")]
    Syntax {
        /// What the reader expected.
        expected: &'static str,
        /// 1-based column (in bytes).
        column: usize,
    },
    /// A field is missing or has a value this format does not use.
    #[error("field {field} is missing or unexpected")]
    Field {
        /// The field, as named in the log.
        field: &'static str,
    },
    /// A completion for a process with no operation in flight.
    #[error("process {process} completes an operation it did not invoke")]
    NothingInFlight {
        /// The process.
        process: u64,
    },
    /// An invoke for a process that still has an operation in flight.
    #[error("process {process} invokes while an operation is in flight")]
    AlreadyInFlight {
        /// The process.
        process: u64,
    },
    /// A completion whose `:f` differs from its invoke's.
    #[error("process {process} completes a different function than it invoked")]
    FunctionMismatch {
        /// The process.
        process: u64,
    },
    /// The history refused the operation.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Reads a Porcupine key-value log into a history.
pub fn parse_kv_log(text: &str) -> Result<History, ParseError> {
    let mut recorder = Recorder::default();
    for (index, line_text) in text.lines().enumerate() {
        let line = index + 1;
        if line_text.trim().is_empty() {
            continue;
        }
        kv_line(line_text, line as u64, &mut recorder)
            .map_err(|problem| ParseError { line, problem })?;
    }
    Ok(recorder.history)
}

/// Reads a Jepsen etcd log into a history on [`ETCD_REGISTER_KEY`].
pub fn parse_etcd_log(text: &str) -> Result<History, ParseError> {
    let mut recorder = Recorder::default();
    for (index, line_text) in text.lines().enumerate() {
        let line = index + 1;
        if line_text.trim().is_empty() {
            continue;
        }
        etcd_line(line_text, line as u64, &mut recorder)
            .map_err(|problem| ParseError { line, problem })?;
    }
    Ok(recorder.history)
}

fn kv_line(text: &str, time: u64, recorder: &mut Recorder) -> Result<(), Problem> {
    let mut reader = EdnReader::new(text);
    let Edn::Map(entries) = reader.value()? else {
        return Err(reader.syntax("a map"));
    };
    reader.end()?;
    let field = |name: &'static str| {
        entries
            .iter()
            .find(|(field, _)| matches!(field, Edn::Keyword(keyword) if keyword == name))
            .map(|(_, value)| value)
            .ok_or(Problem::Field { field: name })
    };
    let process = field("process")?.as_process()?;
    let function = field("f")?.as_keyword("f")?;
    let value = field("value")?;
    match field("type")?.as_keyword("type")? {
        "invoke" => {
            let Edn::Str(key) = field("key")? else {
                return Err(Problem::Field { field: "key" });
            };
            let operation = match (function, value) {
                ("get", Edn::Nil) => Operation::Get,
                ("put", Edn::Str(value)) => Operation::Put {
                    value: value.clone(),
                },
                ("append", Edn::Str(value)) => Operation::Append {
                    value: value.clone(),
                },
                _ => return Err(Problem::Field { field: "value" }),
            };
            recorder.invoke(process, key, function, operation, time)
        }
        "ok" => {
            let reply = match (function, value) {
                // Porcupine's key-value model has no missing keys: every key
                // starts as "". Reading "" as missing is the same thing as
                // long as nothing writes "", which these logs never do.
                ("get", Edn::Str(read)) if read.is_empty() => Reply::Value(None),
                ("get", Edn::Str(read)) => Reply::Value(Some(read.clone())),
                ("get", Edn::Nil) => Reply::Value(None),
                ("put" | "append", _) => Reply::Done,
                _ => return Err(Problem::Field { field: "value" }),
            };
            recorder.complete(process, function, time, Outcome::Ok(reply))
        }
        "fail" => recorder.complete(process, function, time, Outcome::Fail),
        "info" => recorder.complete(process, function, time, Outcome::Unknown),
        _ => Err(Problem::Field { field: "type" }),
    }
}

fn etcd_line(text: &str, time: u64, recorder: &mut Recorder) -> Result<(), Problem> {
    let mut reader = EdnReader::new(text);
    for prefix in ["INFO", "jepsen.util", "-"] {
        if !matches!(reader.value()?, Edn::Symbol(symbol) if symbol == prefix) {
            return Err(reader.syntax("the prefix `INFO  jepsen.util -`"));
        }
    }
    let process = reader.value()?.as_process()?;
    let kind = reader.value()?;
    let function = reader.value()?;
    let value = reader.value()?;
    reader.end()?;
    let function = function.as_keyword("f")?;
    let integer = |edn: &Edn| match edn {
        Edn::Integer(number) => Ok(number.to_string()),
        _ => Err(Problem::Field { field: "value" }),
    };
    let pair = |edn: &Edn| match edn {
        Edn::Vector(items) if items.len() == 2 => Ok((integer(&items[0])?, integer(&items[1])?)),
        _ => Err(Problem::Field { field: "value" }),
    };
    match kind.as_keyword("type")? {
        "invoke" => {
            let operation = match (function, &value) {
                ("read", Edn::Nil) => Operation::Get,
                ("write", _) => Operation::Put {
                    value: integer(&value)?,
                },
                ("cas", _) => {
                    let (expected, new) = pair(&value)?;
                    Operation::Cas { expected, new }
                }
                _ => return Err(Problem::Field { field: "value" }),
            };
            recorder.invoke(process, ETCD_REGISTER_KEY, function, operation, time)
        }
        "ok" => {
            let reply = match (function, &value) {
                ("read", Edn::Nil) => Reply::Value(None),
                ("read", _) => Reply::Value(Some(integer(&value)?)),
                ("write", _) => Reply::Done,
                ("cas", _) => Reply::Swapped(true),
                _ => return Err(Problem::Field { field: "f" }),
            };
            recorder.complete(process, function, time, Outcome::Ok(reply))
        }
        // Jepsen's etcd client reports a compare-and-set whose comparison
        // failed as `:fail`: a definite answer that the register held
        // another value, which is how Porcupine's oracle reads it too.
        // Other `:fail`s (a read that timed out) had no effect.
        "fail" if function == "cas" => {
            recorder.complete(process, function, time, Outcome::Ok(Reply::Swapped(false)))
        }
        "fail" => recorder.complete(process, function, time, Outcome::Fail),
        "info" => recorder.complete(process, function, time, Outcome::Unknown),
        _ => Err(Problem::Field { field: "type" }),
    }
}

/// Pairs invokes with completions by process.
#[derive(Default)]
struct Recorder {
    history: History,
    /// Each process's operation in flight, with its `:f`.
    in_flight: BTreeMap<u64, (OpId, String)>,
}

impl Recorder {
    fn invoke(
        &mut self,
        process: u64,
        key: &str,
        function: &str,
        operation: Operation,
        time: u64,
    ) -> Result<(), Problem> {
        if self.in_flight.contains_key(&process) {
            return Err(Problem::AlreadyInFlight { process });
        }
        let op = self.history.invoke(process, key, operation, time);
        self.in_flight.insert(process, (op, function.to_owned()));
        Ok(())
    }

    fn complete(
        &mut self,
        process: u64,
        function: &str,
        time: u64,
        outcome: Outcome,
    ) -> Result<(), Problem> {
        let Some((op, invoked)) = self.in_flight.remove(&process) else {
            return Err(Problem::NothingInFlight { process });
        };
        if invoked != function {
            return Err(Problem::FunctionMismatch { process });
        }
        Ok(self.history.complete(op, time, outcome)?)
    }
}

/// The subset of EDN these logs use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edn {
    Nil,
    Integer(i64),
    Keyword(String),
    Symbol(String),
    Str(String),
    Vector(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

impl Edn {
    fn as_process(&self) -> Result<u64, Problem> {
        match self {
            Edn::Integer(number) => {
                u64::try_from(*number).map_err(|_| Problem::Field { field: "process" })
            }
            _ => Err(Problem::Field { field: "process" }),
        }
    }

    fn as_keyword(&self, field: &'static str) -> Result<&str, Problem> {
        match self {
            Edn::Keyword(keyword) => Ok(keyword),
            _ => Err(Problem::Field { field }),
        }
    }
}

/// Reads EDN values from one line.
struct EdnReader<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> EdnReader<'a> {
    fn new(text: &'a str) -> Self {
        EdnReader { text, position: 0 }
    }

    fn syntax(&self, expected: &'static str) -> Problem {
        Problem::Syntax {
            expected,
            column: self.position + 1,
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    /// Skips whitespace; EDN counts commas as whitespace.
    fn skip_blank(&mut self) {
        let rest = self.rest();
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        self.position += rest.len() - trimmed.len();
    }

    /// Only blanks may remain.
    fn end(&mut self) -> Result<(), Problem> {
        self.skip_blank();
        if self.rest().is_empty() {
            Ok(())
        } else {
            Err(self.syntax("the end of the line"))
        }
    }

    fn value(&mut self) -> Result<Edn, Problem> {
        self.skip_blank();
        let Some(first) = self.rest().chars().next() else {
            return Err(self.syntax("a value"));
        };
        match first {
            '"' => self.string(),
            '[' => {
                self.position += 1;
                Ok(Edn::Vector(self.items(']')?))
            }
            '{' => {
                self.position += 1;
                let mut items = self.items('}')?.into_iter();
                let mut entries = Vec::new();
                while let Some(key) = items.next() {
                    let value = items.next().ok_or_else(|| self.syntax("a map value"))?;
                    entries.push((key, value));
                }
                Ok(Edn::Map(entries))
            }
            _ => self.atom(),
        }
    }

    /// Values up to `close`, which is consumed.
    fn items(&mut self, close: char) -> Result<Vec<Edn>, Problem> {
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            if self.rest().starts_with(close) {
                self.position += close.len_utf8();
                return Ok(items);
            }
            items.push(self.value()?);
        }
    }

    fn string(&mut self) -> Result<Edn, Problem> {
        self.position += 1; // the opening quote
        let mut value = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((offset, c)) = chars.next() {
            match c {
                '"' => {
                    self.position += offset + 1;
                    return Ok(Edn::Str(value));
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                    _ => {
                        self.position += offset;
                        return Err(self.syntax("a known string escape"));
                    }
                },
                _ => value.push(c),
            }
        }
        self.position = self.text.len();
        Err(self.syntax("a closing quote"))
    }

    /// A keyword, integer, `nil` or symbol: a run up to a delimiter.
    fn atom(&mut self) -> Result<Edn, Problem> {
        let rest = self.rest();
        let length = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '"' | '[' | ']' | '{' | '}'))
            .unwrap_or(rest.len());
        if length == 0 {
            return Err(self.syntax("a value"));
        }
        let token = &rest[..length];
        self.position += length;
        Ok(if token == "nil" {
            Edn::Nil
        } else if let Some(keyword) = token.strip_prefix(':') {
            Edn::Keyword(keyword.to_owned())
        } else if let Ok(number) = token.parse::<i64>() {
            Edn::Integer(number)
        } else {
            Edn::Symbol(token.to_owned())
        })
    }
}
