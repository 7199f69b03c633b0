//! A counter state machine for exactly-once tests: `incr` adds one and
//! answers the new value, `get` answers it; every `incr` it ever applied is
//! counted apart, so a double apply shows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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

/// Holds the apply of one `incr` after its effect was counted and before
/// its answer goes out (a write applied but unanswered), until released.
#[derive(Default)]
pub struct Hold {
    armed: AtomicBool,
    held: AtomicBool,
    released: Mutex<bool>,
    release: Condvar,
}

impl Hold {
    /// The next `incr` this replica applies is held.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Whether an `incr` took effect and is held.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets the held `incr` answer.
    pub fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.release.notify_all();
    }

    /// Waits for `release` (at most 20 s, so that a failing test ends).
    fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
        let released = self.released.lock().unwrap();
        let _ = self
            .release
            .wait_timeout_while(released, Duration::from_secs(20), |r| !*r)
            .unwrap();
    }
}

/// The counter state machine.
pub struct Counter {
    pub count: Arc<Mutex<Count>>,
    pub hold: Arc<Hold>,
}

impl StateMachine for Counter {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut replies = Vec::with_capacity(commands.len());
        for c in commands {
            let incr = &c.data[..] == b"incr";
            let value = {
                let mut count = self.count.lock().unwrap();
                if incr {
                    count.value += 1;
                    count.applied_incrs += 1;
                }
                count.value
            };
            if incr && self.hold.armed.swap(false, Ordering::SeqCst) {
                self.hold.hold();
            }
            replies.push(Bytes::from(value.to_string()));
        }
        replies
    }

    /// It may hold an apply (see [`Hold`]).
    fn may_block(&self) -> bool {
        true
    }

    /// `get` answers the value, and counts the query.
    fn on_query(&self, query: &[u8]) -> Result<Bytes, QueryError> {
        if query != b"get" {
            return Err(QueryError::Invalid("only `get`".into()));
        }
        let mut count = self.count.lock().unwrap();
        count.queries += 1;
        Ok(Bytes::from(count.value.to_string()))
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        let value = self.count.lock().unwrap().value;
        Ok(snapshot_file("counter", value.to_string()))
    }

    fn on_snapshot_load(&mut self, _: LogId, files: &SnapshotReader) -> Result<(), SnapshotError> {
        let text = files.read_file("counter")?;
        let value = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(SnapshotError::Invalid("bad counter".into()))?;
        let mut count = self.count.lock().unwrap();
        count.value = value;
        count.applied_incrs = 0;
        Ok(())
    }
}

/// A started counter member: its handle, storage, count and hold.
pub struct CounterMember {
    pub member: Member,
    pub count: Arc<Mutex<Count>>,
    pub hold: Arc<Hold>,
}

/// Starts a counter member with these options.
pub fn start_counter(server: &NodeManager, options: GroupOptions, store: Store) -> CounterMember {
    let count = Arc::new(Mutex::new(Count::default()));
    let hold = Arc::new(Hold::default());
    let counter = Counter {
        count: count.clone(),
        hold: hold.clone(),
    };
    let node = server
        .add_group(options, store.open(), Box::new(counter))
        .unwrap();
    CounterMember {
        member: Member {
            server: server.clone(),
            node,
            store,
            record: Arc::new(Mutex::new(Record::default())),
        },
        count,
        hold,
    }
}
