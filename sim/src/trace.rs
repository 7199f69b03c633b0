//! The run's event trace: one JSON object a line, in simulated time order,
//! byte-identical for the same seed.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// A shared, optionally disabled, event trace.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    lines: Option<Arc<Mutex<Vec<String>>>>,
}

impl Trace {
    /// A trace that records (`enabled`) or ignores events.
    pub fn new(enabled: bool) -> Self {
        Trace {
            lines: enabled.then(Arc::default),
        }
    }

    /// Whether events are recorded (callers with costly fields check first).
    pub fn is_enabled(&self) -> bool {
        self.lines.is_some()
    }

    /// Every event recorded so far, parsed, in order.
    pub fn events(&self) -> Vec<Value> {
        self.lines.as_ref().map_or_else(Vec::new, |lines| {
            let lines = lines.lock().expect("trace");
            lines
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
    }

    /// Records `event` at simulated time `now_ns` with these fields.
    pub fn event(&self, now_ns: u64, event: &str, fields: Value) {
        let Some(lines) = &self.lines else { return };
        let mut line = json!({ "t_ns": now_ns, "event": event });
        if let (Value::Object(line), Value::Object(fields)) = (&mut line, fields) {
            line.extend(fields);
        }
        lines.lock().expect("trace").push(line.to_string());
    }

    /// Writes every event, one a line.
    ///
    /// # Errors
    /// Write failures.
    pub fn write_jsonl(&self, out: &mut impl Write) -> io::Result<()> {
        if let Some(lines) = &self.lines {
            for line in lines.lock().expect("trace").iter() {
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }

    /// How many events were recorded.
    pub fn len(&self) -> usize {
        self.lines
            .as_ref()
            .map_or(0, |l| l.lock().expect("trace").len())
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
