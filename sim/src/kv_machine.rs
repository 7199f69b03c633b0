//! The simulator's replicated key-value state machine: put, get, append,
//! compare-and-set and increment on string keys, with commands and replies
//! as JSON. Reads go through the log as commands, or are served from the
//! map after a read barrier (`reads.rs`); the map is shared with those
//! readers.
//!
//! Every apply is also reported to the run's [`Observations`], which checks
//! state-machine safety and apply order as it happens. Where the run
//! records a trace, the callbacks also record the server's role changes,
//! commits, committed configurations and snapshot loads in it (the
//! timeline's lanes); they run synchronously, so recording them changes
//! nothing in the run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use oar::core::{LogId, LogIndex, Membership, NodeId, Term};
use oar::runtime::{
    Committed, Error, SnapshotError, SnapshotReader, SnapshotView, StateMachine, snapshot_file,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::history::Operation;
use crate::observe::{Observations, Violation};
use crate::trace::Trace;

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
    /// Increment `key` as a counter (missing counts as 0).
    Incr {
        /// The key.
        key: String,
        /// The request's name; ignored, it makes every increment's bytes
        /// unique (the final checks find a command by its bytes).
        id: String,
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
    /// An increment: the new count.
    Count(u64),
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
            Operation::Incr { id } => KvCommand::Incr { key, id },
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

/// A state machine's own store (`SimOptions::disk_state_machine`): the map
/// through an applied point, outliving its server's restarts.
pub type MachineDisk = Arc<Mutex<Option<(LogId, BTreeMap<String, String>)>>>;

/// One node's key-value map.
pub struct KvMachine {
    node: NodeId,
    map: SharedMap,
    /// Its own store, if it is an on-disk state machine.
    disk: Option<MachineDisk>,
    observations: Arc<Mutex<Observations>>,
    trace: Trace,
    /// The simulated clock, in nanoseconds, for the trace.
    now_ns: fn() -> u64,
    /// Reports each command it applies with a byte added: a planted
    /// divergence, which the checks must catch.
    misreports: bool,
    /// The group its events name, in a run of several.
    group: Option<u64>,
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
            disk: None,
            observations,
            trace: Trace::new(false),
            now_ns: || 0,
            misreports: false,
            group: None,
        }
    }

    /// The same machine, its trace events naming `group` (in a run of
    /// several groups).
    pub fn in_group(mut self, group: u64) -> Self {
        self.group = Some(group);
        self
    }

    /// The same machine, telling the observations it applied something
    /// else than the log holds (a planted State Machine Safety break, to
    /// show that a run's checks see this machine's group).
    pub fn misreporting(mut self) -> Self {
        self.misreports = true;
        self
    }

    /// The same machine, keeping its state in `disk` too (written after
    /// each batch whose last index is not a multiple of 3, so that a
    /// restart finds it a batch behind now and then) and resuming from it.
    pub fn on_disk(mut self, disk: MachineDisk) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Writes the map through `last` to the machine's own store, if any.
    fn persist(&self, last: LogId, map: &BTreeMap<String, String>) {
        if let Some(disk) = &self.disk {
            *disk.lock().expect("machine disk") = Some((last, map.clone()));
        }
    }

    /// The map, for reads served after a barrier.
    pub fn shared_map(&self) -> SharedMap {
        Arc::clone(&self.map)
    }
    /// The same machine, recording its server's role changes, commits,
    /// configurations and snapshot loads in `trace`, timed by `now_ns`.
    pub fn with_trace(mut self, trace: Trace, now_ns: fn() -> u64) -> Self {
        self.trace = trace;
        self.now_ns = now_ns;
        self
    }

    /// Records `event` for this server, if the run keeps a trace (the
    /// fields are built only then: applies are frequent).
    fn record(&self, event: &str, fields: impl FnOnce() -> serde_json::Value) {
        if self.trace.is_enabled() {
            let mut fields = fields();
            fields["node"] = json!(self.node.0);
            if let Some(group) = self.group {
                fields["group"] = json!(group);
            }
            self.trace.event((self.now_ns)(), event, fields);
        }
    }
}

/// A configuration as the trace shows it: voters (and the outgoing ones
/// of a joint configuration) and learners.
fn membership_json(m: &Membership) -> serde_json::Value {
    let ids =
        |set: &std::collections::BTreeSet<NodeId>| set.iter().map(|n| n.0).collect::<Vec<_>>();
    json!({
        "voters": ids(&m.voters),
        "outgoing": ids(&m.outgoing_voters),
        "learners": ids(&m.learners),
    })
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
        KvCommand::Incr { key, .. } => {
            // Counters live on their own keys; a value that is not a
            // count is refused (the checker's model does the same).
            let before = match map.get(&key) {
                None => Some(0),
                Some(value) => value.parse::<u64>().ok(),
            };
            match before.and_then(|count| count.checked_add(1)) {
                Some(count) => {
                    map.insert(key, count.to_string());
                    KvReply::Count(count)
                }
                None => KvReply::Invalid,
            }
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
        let replies = commands
            .iter()
            .map(|c| {
                match self.misreports {
                    true => {
                        let planted = [&c.data[..], b"!"].concat();
                        observations.applied(self.node, c.id, &Bytes::from(planted));
                    }
                    false => observations.applied(self.node, c.id, &c.data),
                }
                let reply = match serde_json::from_slice::<KvCommand>(&c.data) {
                    Ok(command) => execute(&mut map, command),
                    Err(_) => KvReply::Invalid,
                };
                Bytes::from(serde_json::to_vec(&reply).expect("replies serialize"))
            })
            .collect();
        if let Some(last) = commands.last()
            && last.id.index.0 % 3 != 0
        {
            self.persist(last.id, &map);
        }
        drop(map);
        drop(observations);
        if let Some(last) = commands.last() {
            let n = commands.len();
            self.record(
                "commit",
                || json!({ "through": last.id.to_string(), "n": n }),
            );
        }
        replies
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        let json = serde_json::to_vec(&*self.map.lock().expect("map")).expect("maps serialize");
        Ok(snapshot_file(SNAPSHOT_FILE, json))
    }

    /// Streams the file through the checking reader (the path a large
    /// state takes), so the simulator's snapshot check covers it.
    fn on_snapshot_load(
        &mut self,
        last: LogId,
        snapshot: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        let file = std::io::BufReader::new(snapshot.open_file(SNAPSHOT_FILE)?);
        let map: BTreeMap<String, String> =
            serde_json::from_reader(file).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        let mut observations = self.observations.lock().expect("observations");
        if replay(&observations, last.index) != map {
            observations.violation(Violation::SnapshotDivergence {
                node: self.node,
                last: last.index,
            });
        }
        observations.snapshot_loaded(self.node, last.index);
        drop(observations);
        self.record("snapshot_load", || json!({ "last": last.to_string() }));
        self.persist(last, &map);
        *self.map.lock().expect("map") = map;
        Ok(())
    }

    /// Offers the machine's own store, checked against what the run
    /// applied through its point (as a loaded snapshot is).
    fn durable_applied(&mut self) -> Result<Option<LogId>, SnapshotError> {
        let Some(disk) = &self.disk else {
            return Ok(None);
        };
        let Some((last, map)) = disk.lock().expect("machine disk").clone() else {
            return Ok(None);
        };
        let mut observations = self.observations.lock().expect("observations");
        if replay(&observations, last.index) != map {
            observations.violation(Violation::SnapshotDivergence {
                node: self.node,
                last: last.index,
            });
        }
        observations.resuming(self.node, last.index);
        drop(observations);
        *self.map.lock().expect("map") = map;
        Ok(Some(last))
    }

    fn on_leader_start(&mut self, term: Term) {
        self.observations
            .lock()
            .expect("observations")
            .leader_started(self.node, term);
        self.record("lead", || json!({ "term": term.0 }));
    }

    fn on_leader_stop(&mut self) {
        self.record("lead_stop", || json!({}));
    }

    fn on_start_following(&mut self, leader: NodeId, term: Term) {
        self.record("follow", || json!({ "leader": leader.0, "term": term.0 }));
    }

    fn on_stop_following(&mut self, leader: NodeId) {
        self.record("follow_stop", || json!({ "leader": leader.0 }));
    }

    fn on_configuration_committed(&mut self, membership: &Membership) {
        self.record("config_committed", || membership_json(membership));
    }

    fn on_error(&mut self, error: &Error) {
        self.record("group_error", || json!({ "error": error.to_string() }));
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
            KvCommand::Incr {
                key: "n".into(),
                id: "1".into(),
            },
            KvCommand::Incr {
                key: "n".into(),
                id: "2".into(),
            },
            KvCommand::Incr {
                key: "k".into(),
                id: "3".into(),
            },
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
                KvReply::Value(Some("b".into())),
                KvReply::Count(1),
                KvReply::Count(2),
                KvReply::Invalid,
            ]
        );
        assert!(observations.lock().unwrap().violations().is_empty());
    }
}
