//! Client sessions: exactly-once commands under retries (Raft thesis §6.3,
//! dragonboat's sessions).
//!
//! A client opens a session through the log; its id is the index of the
//! entry that opened it. Every request then carries (session, sequence
//! number, the lowest sequence whose reply the client still needs). The
//! apply path, above the user's state machine, answers a retry with the
//! reply recorded the first time instead of applying the command again,
//! and forgets replies below the client's watermark.
//!
//! ```text
//!   Node::apply_in_session ─► envelope {time, session, seq, first_unacked, command}
//!        (stamped by the leader)          │ through the log
//!                                         ▼
//!   SessionStateMachine::on_apply ─► SessionTable::decide
//!        ├─ fresh      ─► user StateMachine::on_apply ─► reply recorded
//!        ├─ duplicate  ─► the recorded reply
//!        └─ refused    ─► a typed SessionError (expired, forgotten, full)
//! ```
//!
//! Everything that decides is a function of the log: a session expires when
//! the *log's* time (the largest time a leader stamped on an entry) passes
//! its last activity by [`SessionOptions::expiry`], never by a node's own
//! clock; so every replica keeps the same table. The table is a file of
//! every snapshot (`oar.sessions`) and is rebuilt from snapshot and log on
//! restart. Groups without [`GroupOptions::sessions`](super::GroupOptions::sessions)
//! log commands unchanged, and their state machine sees nothing of this.

mod codec;
mod error;
mod node_api;
mod options;
mod state_machine;
#[cfg(test)]
mod state_machine_tests;
mod table;

#[doc(hidden)]
pub use codec::{decode_session_error, logged_command};
pub(crate) use codec::{encode_plain, encode_session_error};
pub use error::SessionError;
pub use options::SessionOptions;
pub use state_machine::SESSIONS_FILE;
pub(crate) use state_machine::SessionStateMachine;
pub use table::SessionId;
