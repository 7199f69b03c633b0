//! What the log may look like after a crash, given what was acknowledged.

use std::collections::BTreeMap;

use oar::core::{Entry, LogId};
use oar::storage::RecoveredLog;

/// An operation that had started and not returned when the power went off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InFlight {
    /// None, or one whose effects on acknowledged data are nil (append, flush).
    Nothing,
    /// `truncate_suffix(last_kept)`.
    TruncateSuffix(u64),
    /// `truncate_prefix(last_purged)`.
    TruncatePrefix(LogId),
}

/// The log as the test believes it: every entry written and not removed,
/// and how far it is acknowledged durable.
///
/// Invariant: `entries` holds `(purged.index, last]` contiguously;
/// `acked_last <= last`.
#[derive(Clone, Debug, Default)]
pub struct LogModel {
    /// Written entries by index (acknowledged or not).
    pub entries: BTreeMap<u64, Entry>,
    /// The last purged entry, acknowledged.
    pub purged: LogId,
    /// Entries up to here were reported durable (by `flush` or a truncation).
    pub acked_last: u64,
}

impl LogModel {
    /// The index of the last written entry.
    pub fn last(&self) -> u64 {
        self.entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.purged.index.0)
    }

    /// Records appended (not yet durable) entries.
    pub fn append(&mut self, entries: &[Entry]) {
        for e in entries {
            assert_eq!(e.id.index.0, self.last() + 1);
            self.entries.insert(e.id.index.0, e.clone());
        }
    }

    /// Everything written is now durable.
    pub fn flushed(&mut self) {
        self.acked_last = self.last();
    }

    /// A truncation of the suffix after `last_kept` returned.
    pub fn truncated_suffix(&mut self, last_kept: u64) {
        self.entries.split_off(&(last_kept + 1));
        self.acked_last = self.acked_last.min(last_kept);
    }

    /// A truncation of the prefix up to `purged` returned.
    pub fn truncated_prefix(&mut self, purged: LogId) {
        if purged.index <= self.purged.index {
            return;
        }
        self.entries = self.entries.split_off(&(purged.index.0 + 1));
        self.purged = purged;
        self.acked_last = self.acked_last.max(purged.index.0);
    }

    /// Checks a recovered log against the model, then adopts it: recovery
    /// makes what it found durable.
    pub fn check_recovered(
        &mut self,
        got: &RecoveredLog,
        in_flight: InFlight,
    ) -> Result<(), String> {
        let purge_ok = got.last_purged == self.purged
            || matches!(in_flight, InFlight::TruncatePrefix(p) if p == got.last_purged);
        if !purge_ok {
            return Err(format!(
                "last_purged {:?}, model {:?} ({in_flight:?})",
                got.last_purged, self.purged
            ));
        }
        let first = got.last_purged.index.0 + 1;
        for (k, e) in got.entries.iter().enumerate() {
            let index = first + k as u64;
            if e.id.index.0 != index {
                return Err(format!(
                    "entry {k} has index {}, expected {index}",
                    e.id.index
                ));
            }
            match self.entries.get(&index) {
                Some(want) if want == e => {}
                // An in-flight reset may purge past the model's last entry:
                // then nothing may be recovered after it, checked below.
                want => return Err(format!("recovered {e:?} at {index}, model has {want:?}")),
            }
        }
        let got_last = got.last_purged.index.0 + got.entries.len() as u64;
        let must_reach = match in_flight {
            InFlight::TruncateSuffix(t) => self.acked_last.min(t),
            _ => self.acked_last,
        };
        if got_last < must_reach {
            return Err(format!(
                "lost acknowledged entries: recovered up to {got_last}, acked {must_reach}"
            ));
        }
        self.purged = got.last_purged;
        self.entries = got
            .entries
            .iter()
            .map(|e| (e.id.index.0, e.clone()))
            .collect();
        self.acked_last = got_last;
        Ok(())
    }
}
