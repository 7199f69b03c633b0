//! A counter state machine for exactly-once tests: `incr` adds one and
//! answers the new value, `get` answers it; every `incr` it ever applied is
//! counted apart, so a double apply shows.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use oar::core::LogId;
use oar::runtime::{
    Committed, GroupOptions, NodeManager, QueryError, SnapshotError, SnapshotReader, SnapshotView,
    StateMachine, snapshot_file,
};

use super::{Member, Record, Store};

/// What a counter holds, shared with the test.
#[derive(Debug, Default)]
pub struct Count {
    /// The counter (restored from snapshots).
    pub value: u64,
    /// `incr` commands this replica's state machine applied since it
    /// started or last loaded a snapshot.
    pub applied_incrs: u64,
    /// Queries this replica's state machine answered (outside the log).
    pub queries: u64,
}

/// The counter state machine.
pub struct Counter(pub Arc<Mutex<Count>>);

impl StateMachine for Counter {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut count = self.0.lock().unwrap();
        commands
            .iter()
            .map(|c| {
                if &c.data[..] == b"incr" {
                    count.value += 1;
                    count.applied_incrs += 1;
                }
                Bytes::from(count.value.to_string())
            })
            .collect()
    }

    /// `get` answers the value, and counts the query.
    fn on_query(&self, query: &[u8]) -> Result<Bytes, QueryError> {
        if query != b"get" {
            return Err(QueryError::Invalid("only `get`".into()));
        }
        let mut count = self.0.lock().unwrap();
        count.queries += 1;
        Ok(Bytes::from(count.value.to_string()))
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        let value = self.0.lock().unwrap().value;
        Ok(snapshot_file("counter", value.to_string()))
    }

    fn on_snapshot_load(&mut self, _: LogId, files: &SnapshotReader) -> Result<(), SnapshotError> {
        let text = files.read_file("counter")?;
        let value = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(SnapshotError::Invalid("bad counter".into()))?;
        let mut count = self.0.lock().unwrap();
        count.value = value;
        count.applied_incrs = 0;
        Ok(())
    }
}

/// A started counter member: its handle, storage and count.
pub struct CounterMember {
    pub member: Member,
    pub count: Arc<Mutex<Count>>,
}

/// Starts a counter member with these options.
pub fn start_counter(server: &NodeManager, options: GroupOptions, store: Store) -> CounterMember {
    let count = Arc::new(Mutex::new(Count::default()));
    let node = server
        .add_group(options, store.open(), Box::new(Counter(count.clone())))
        .unwrap();
    CounterMember {
        member: Member {
            server: server.clone(),
            node,
            store,
            record: Arc::new(Mutex::new(Record::default())),
        },
        count,
    }
}
