//! The simulator's replicated key-value state machine: put, get, append and
//! compare-and-set on string keys, with commands and replies as JSON.
//! Reads go through the log as commands, or are served from the map after
//! a read barrier (`reads.rs`); the map is shared with those readers.
//!
//! Every apply is also reported to the run's [`Observations`], which checks
//! state-machine safety and apply order as it happens.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use oar::core::{LogId, LogIndex, NodeId, Term};
use oar::runtime::{Committed, SnapshotError, SnapshotFiles, StateMachine};
use serde::{Deserialize, Serialize};

use crate::history::Operation;
use crate::observe::{Observations, Violation};

/// A client command, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: String,
    },
    /// Append `value` to `key` (missing counts as empty).
    Append {
        /// The key.
        key: String,
        /// The suffix.
        value: String,
    },
    /// If `key` holds `expected`, set it to `new`.
    Cas {
        /// The key.
        key: String,
        /// The value it must hold.
        expected: String,
        /// The value to write.
        new: String,
    },
}

/// The answer to a [`KvCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvReply {
    /// A put or append took effect.
    Done,
    /// A get's value (`None`: missing).
    Value(Option<String>),
    /// A cas: whether it swapped.
    Swapped(bool),
    /// The command bytes were not a command (never expected).
    Invalid,
}

impl KvCommand {
    /// The command a client sends for `operation` on `key`.
    pub fn of(key: &str, operation: &Operation) -> KvCommand {
        let key = key.to_string();
        match operation.clone() {
            Operation::Put { value } => KvCommand::Put { key, value },
            Operation::Get => KvCommand::Get { key },
            Operation::Append { value } => KvCommand::Append { key, value },
            Operation::Cas { expected, new } => KvCommand::Cas { key, expected, new },
        }
    }

    /// The command as log bytes.
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("commands serialize"))
    }
}

/// Decodes a reply returned by the state machine.
pub fn decode_reply(bytes: &[u8]) -> KvReply {
    serde_json::from_slice(bytes).unwrap_or(KvReply::Invalid)
}

/// A node's key-value map, shared by its state machine and its readers.
pub type SharedMap = Arc<Mutex<BTreeMap<String, String>>>;

/// One node's key-value map.
pub struct KvMachine {
    node: NodeId,
    map: SharedMap,
    observations: Arc<Mutex<Observations>>,
}

impl KvMachine {
    /// A fresh machine for `node` (after a restart too: it replays the log).
    pub fn new(node: NodeId, observations: Arc<Mutex<Observations>>) -> Self {
        observations
            .lock()
            .expect("observations")
            .node_started(node);
        KvMachine {
            node,
            map: SharedMap::default(),
            observations,
        }
    }

    /// The map, for reads served after a barrier.
    pub fn shared_map(&self) -> SharedMap {
        Arc::clone(&self.map)
    }
}

/// Runs one command on a map.
fn execute(map: &mut BTreeMap<String, String>, command: KvCommand) -> KvReply {
    match command {
        KvCommand::Put { key, value } => {
            map.insert(key, value);
            KvReply::Done
        }
        KvCommand::Get { key } => KvReply::Value(map.get(&key).cloned()),
        KvCommand::Append { key, value } => {
            map.entry(key).or_default().push_str(&value);
            KvReply::Done
        }
        KvCommand::Cas { key, expected, new } => {
            let swap = map.get(&key) == Some(&expected);
            if swap {
                map.insert(key, new);
            }
            KvReply::Swapped(swap)
        }
    }
}

/// The state after the commands applied through `last`, from what the run
/// observed (every command was applied by some node before any snapshot
/// could cover it).
fn replay(observations: &Observations, last: LogIndex) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (id, data) in observations.applied_commands() {
        if id.index > last {
            break;
        }
        if let Ok(command) = serde_json::from_slice::<KvCommand>(data) {
            execute(&mut map, command);
        }
    }
    map
}

/// The snapshot's one file: the map as JSON.
const SNAPSHOT_FILE: &str = "map.json";

impl StateMachine for KvMachine {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let observations = self.observations.clone();
        let mut observations = observations.lock().expect("observations");
        let mut map = self.map.lock().expect("map");
        commands
            .iter()
            .map(|c| {
                observations.applied(self.node, c.id, &c.data);
                let reply = match serde_json::from_slice::<KvCommand>(&c.data) {
                    Ok(command) => execute(&mut map, command),
                    Err(_) => KvReply::Invalid,
                };
                Bytes::from(serde_json::to_vec(&reply).expect("replies serialize"))
            })
            .collect()
    }

    fn on_snapshot_save(&mut self) -> Result<SnapshotFiles, SnapshotError> {
        let json = serde_json::to_vec(&*self.map.lock().expect("map")).expect("maps serialize");
        Ok(SnapshotFiles::from([(
            SNAPSHOT_FILE.to_owned(),
            Bytes::from(json),
        )]))
    }

    fn on_snapshot_load(&mut self, last: LogId, files: SnapshotFiles) -> Result<(), SnapshotError> {
        let data = files
            .get(SNAPSHOT_FILE)
            .ok_or_else(|| SnapshotError::Invalid(format!("no {SNAPSHOT_FILE}")))?;
        let map: BTreeMap<String, String> =
            serde_json::from_slice(data).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        let mut observations = self.observations.lock().expect("observations");
        if replay(&observations, last.index) != map {
            observations.violation(Violation::SnapshotDivergence {
                node: self.node,
                last: last.index,
            });
        }
        observations.snapshot_loaded(self.node, last.index);
        *self.map.lock().expect("map") = map;
        Ok(())
    }

    fn on_leader_start(&mut self, term: Term) {
        self.observations
            .lock()
            .expect("observations")
            .leader_started(self.node, term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_apply_and_reply() {
        let observations = Arc::new(Mutex::new(Observations::default()));
        let mut machine = KvMachine::new(NodeId(1), observations.clone());
        let commands = [
            KvCommand::Append {
                key: "k".into(),
                value: "a".into(),
            },
            KvCommand::Cas {
                key: "k".into(),
                expected: "a".into(),
                new: "b".into(),
            },
            KvCommand::Cas {
                key: "k".into(),
                expected: "a".into(),
                new: "c".into(),
            },
            KvCommand::Get { key: "k".into() },
        ];
        let committed: Vec<Committed> = commands
            .iter()
            .enumerate()
            .map(|(i, c)| Committed {
                id: LogId::new(1, i as u64 + 1),
                data: c.encode(),
            })
            .collect();
        let replies: Vec<KvReply> = machine
            .on_apply(&committed)
            .iter()
            .map(|r| decode_reply(r))
            .collect();
        assert_eq!(
            replies,
            [
                KvReply::Done,
                KvReply::Swapped(true),
                KvReply::Swapped(false),
                KvReply::Value(Some("b".into()))
            ]
        );
        assert!(observations.lock().unwrap().violations().is_empty());
    }
}
