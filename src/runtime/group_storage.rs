//! What a group's driver needs from durable storage: recover at start, then
//! execute the core's ordered writes in batches with one sync per batch.

use std::sync::{Arc, Mutex};

use crate::core::{Entry, HardState, LogId};

/// A write the core asked for (`PersistHardState` / `PersistEntries`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersistOp {
    /// Make this term and vote durable.
    HardState(HardState),
    /// Drop durable entries from `entries[0]`'s index on, then append these.
    Entries(Vec<Entry>),
}

/// A completed write, reported back to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persisted {
    /// The term and vote are durable.
    HardState(HardState),
    /// Every entry up to this one is durable.
    Entries(LogId),
}

/// What a group recovers from its storage at start.
#[derive(Clone, Debug, Default)]
pub struct RecoveredState {
    /// The durable term and vote.
    pub hard_state: HardState,
    /// The last entry covered by a snapshot, `(0,0)` if none.
    pub snapshot_last: LogId,
    /// The durable entries after `snapshot_last`, in order.
    pub entries: Vec<Entry>,
}

/// A storage failure, as the runtime reports it.
pub type StorageFailure = Box<dyn std::error::Error + Send + Sync>;

/// Durable storage of one group.
pub trait GroupStorage: Send + 'static {
    /// Reads back what is durable.
    ///
    /// # Errors
    /// Any failure to read or validate the stored state.
    fn recover(&mut self) -> Result<RecoveredState, StorageFailure>;

    /// Executes `ops` in order and makes them durable (one sync for the
    /// batch where possible), then returns their completions in order.
    ///
    /// # Errors
    /// Any failure: the runtime then stops the group (fail-stop), because
    /// it can no longer vouch for what is durable.
    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<Vec<Persisted>, StorageFailure>;
}

/// In-memory storage: durable for the life of the value (clones share it),
/// so a test can stop a group and start it again from the same state.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    state: Arc<Mutex<RecoveredState>>,
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }
}

impl GroupStorage for MemStorage {
    fn recover(&mut self) -> Result<RecoveredState, StorageFailure> {
        Ok(self.state.lock().map_err(|_| "poisoned")?.clone())
    }

    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<Vec<Persisted>, StorageFailure> {
        let mut state = self.state.lock().map_err(|_| "poisoned")?;
        let mut done = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                PersistOp::HardState(hs) => {
                    state.hard_state = hs;
                    done.push(Persisted::HardState(hs));
                }
                PersistOp::Entries(entries) => {
                    let Some(last) = entries.last().map(|e| e.id) else {
                        continue;
                    };
                    let keep = entries[0]
                        .id
                        .index
                        .0
                        .saturating_sub(state.snapshot_last.index.0 + 1);
                    state.entries.truncate(keep as usize);
                    state.entries.extend(entries);
                    done.push(Persisted::Entries(last));
                }
            }
        }
        Ok(done)
    }
}
