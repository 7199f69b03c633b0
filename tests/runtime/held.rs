//! A recording state machine whose apply task a test can hold inside a
//! committed write: reads and barriers asked meanwhile must wait for it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oar::runtime::{Committed, StateMachine};

use super::Recorder;

/// Shut while `true`; opened once by the test.
pub type Gate = Arc<(Mutex<bool>, Condvar)>;

/// The recording state machine, holding its apply task on `set held`
/// commands until the gate opens (at most 10 s, so that a broken runtime
/// fails the test instead of hanging it).
pub struct Held {
    pub inner: Recorder,
    pub gate: Gate,
}

impl StateMachine for Held {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        if commands.iter().any(|c| c.data.starts_with(b"set held")) {
            let (shut, opened) = &*self.gate;
            let shut = shut.lock().unwrap();
            let _ = opened
                .wait_timeout_while(shut, Duration::from_secs(10), |shut| *shut)
                .unwrap();
        }
        self.inner.on_apply(commands)
    }

    fn may_block(&self) -> bool {
        true
    }
}
