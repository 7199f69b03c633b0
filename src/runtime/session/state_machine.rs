//! The apply path of a session group: a [`StateMachine`] wrapped around the
//! user's, which deduplicates session requests before the user's state
//! machine sees them and keeps the session table in every snapshot.

use bytes::Bytes;

use super::codec::{Envelope, encode_reply};
use super::error::SessionError;
use super::options::SessionOptions;
use super::table::{Decision, SessionId, SessionTable};
use crate::core::{LogId, Membership, NodeId, Term};
use crate::runtime::error::Error;
use crate::runtime::snapshot_view::SnapshotView;
use crate::runtime::state_machine::{Committed, QueryError, SnapshotError, StateMachine};
use crate::storage::{SnapshotReader, SnapshotWriter};

/// The snapshot file that holds the session table; a state machine of a
/// session group must not save a file of this name.
pub const SESSIONS_FILE: &str = "oar.sessions";

/// The user's state machine behind the session table.
pub(crate) struct SessionStateMachine {
    inner: Box<dyn StateMachine>,
    table: SessionTable,
    options: SessionOptions,
    /// Commands collected for the next call of the user's `on_apply`
    /// (empty between batches; the buffer is reused, as is `waiting`'s).
    run: Vec<Committed>,
    /// The answers waiting on `run`, in order.
    waiting: Vec<Waiting>,
}

/// An answer that the user's reply to a command of the run fills.
struct Waiting {
    /// Its place in the batch's answers.
    slot: usize,
    /// A session request's (session, seq), its reply recorded under them
    /// and answered in a session reply; `None` for a Plain command,
    /// answered raw.
    request: Option<(SessionId, u64)>,
}

impl SessionStateMachine {
    pub(crate) fn new(inner: Box<dyn StateMachine>, options: SessionOptions) -> Self {
        SessionStateMachine {
            table: SessionTable::new(options.clone()),
            inner,
            options,
            run: Vec::new(),
            waiting: Vec::new(),
        }
    }

    /// Applies the run: the user's state machine sees its commands, and the
    /// answers waiting on it are filled (session replies recorded). `false`
    /// if the user's state machine broke the response-count contract.
    fn flush(&mut self, answers: &mut [Bytes]) -> bool {
        if self.run.is_empty() {
            return true;
        }
        let replies = self.inner.on_apply(&self.run);
        self.run.clear();
        if replies.len() != self.waiting.len() {
            // Nothing of the run is recorded: its requests are pending no more.
            for w in self.waiting.drain(..) {
                if let Some((session, seq)) = w.request {
                    self.table.unmark(session, seq);
                }
            }
            return false;
        }
        for (w, reply) in self.waiting.drain(..).zip(replies) {
            answers[w.slot] = match w.request {
                None => reply,
                Some((session, seq)) => {
                    let answer = encode_reply(&Ok(reply));
                    // The record shares the answer's bytes.
                    self.table.record(session, seq, answer.slice(1..));
                    answer
                }
            };
        }
        true
    }

    /// Adds a command to the run, its answer at `slot` waiting on it.
    fn push(
        &mut self,
        c: &Committed,
        command: Bytes,
        slot: usize,
        request: Option<(SessionId, u64)>,
    ) {
        self.run.push(Committed {
            id: c.id,
            data: command,
        });
        self.waiting.push(Waiting { slot, request });
    }
}

impl StateMachine for SessionStateMachine {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        // Answers waiting on a run hold an empty placeholder until it flushes.
        let mut answers: Vec<Bytes> = Vec::with_capacity(commands.len());
        for c in commands {
            let slot = answers.len();
            let Some(envelope) = Envelope::decode(c.data.clone()) else {
                answers.push(encode_reply(&Err(SessionError::Malformed)));
                continue;
            };
            let answer = match envelope {
                Envelope::Plain { time_ms, command } => {
                    self.table.advance(time_ms);
                    self.push(c, command, slot, None);
                    Bytes::new()
                }
                Envelope::Open { time_ms } => {
                    self.table.advance(time_ms);
                    let id = SessionId(c.id.index.0);
                    let opened = self
                        .table
                        .open(id)
                        .map(|()| Bytes::copy_from_slice(&id.0.to_be_bytes()));
                    encode_reply(&opened)
                }
                Envelope::Close { time_ms, session } => {
                    self.table.advance(time_ms);
                    encode_reply(&self.table.close(session).map(|()| Bytes::new()))
                }
                Envelope::Request {
                    time_ms,
                    session,
                    seq,
                    first_unacked,
                    command,
                } => {
                    self.table.advance(time_ms);
                    let mut decision = self.table.decide(session, seq, first_unacked);
                    if decision == Decision::InFlight {
                        // A retry of a request earlier in this very batch:
                        // apply the first so that this one finds its reply.
                        if !self.flush(&mut answers) {
                            return Vec::new();
                        }
                        decision = self.table.decide(session, seq, first_unacked);
                    }
                    match decision {
                        Decision::Fresh => {
                            self.push(c, command, slot, Some((session, seq)));
                            Bytes::new()
                        }
                        Decision::Duplicate(reply) => encode_reply(&Ok(reply)),
                        Decision::Refused(e) => encode_reply(&Err(e)),
                        Decision::InFlight => {
                            unreachable!("the batch's fresh requests were just recorded")
                        }
                    }
                }
            };
            answers.push(answer);
        }
        if !self.flush(&mut answers) {
            // A broken contract: the apply loop reports a count mismatch.
            return Vec::new();
        }
        answers
    }

    fn on_leader_start(&mut self, term: Term) {
        self.inner.on_leader_start(term);
    }

    fn on_leader_stop(&mut self) {
        self.inner.on_leader_stop();
    }

    fn on_start_following(&mut self, leader: NodeId, term: Term) {
        self.inner.on_start_following(leader, term);
    }

    fn on_stop_following(&mut self, leader: NodeId) {
        self.inner.on_stop_following(leader);
    }

    fn on_configuration_committed(&mut self, membership: &Membership) {
        self.inner.on_configuration_committed(membership);
    }

    fn on_error(&mut self, error: &Error) {
        self.inner.on_error(error);
    }

    fn on_snapshot_save(&mut self) -> Result<Box<dyn SnapshotView>, SnapshotError> {
        let inner = self.inner.on_snapshot_save()?;
        // Encoded now: the table goes on changing while the view is written.
        let table = self.table.encode();
        Ok(Box::new(move |writer: &mut SnapshotWriter| {
            inner.write_to(writer)?;
            if writer.file_names().any(|name| name == SESSIONS_FILE) {
                return Err(SnapshotError::Invalid(format!(
                    "the state machine saved {SESSIONS_FILE:?}, a name sessions reserve"
                )));
            }
            Ok(writer.write_file(SESSIONS_FILE, &table)?)
        }))
    }

    fn on_snapshot_load(
        &mut self,
        last: LogId,
        snapshot: &SnapshotReader,
    ) -> Result<(), SnapshotError> {
        // A snapshot from before the group had sessions has no table.
        let saved = snapshot
            .meta()
            .files
            .iter()
            .any(|f| f.name == SESSIONS_FILE);
        let table = match saved {
            true => {
                let bytes = Bytes::from(snapshot.read_file(SESSIONS_FILE)?);
                SessionTable::decode(self.options.clone(), bytes).map_err(SnapshotError::Invalid)?
            }
            false => SessionTable::new(self.options.clone()),
        };
        self.inner.on_snapshot_load(last, snapshot)?;
        self.table = table;
        Ok(())
    }

    fn on_shutdown(&mut self) {
        self.inner.on_shutdown();
    }

    fn may_block(&self) -> bool {
        self.inner.may_block()
    }

    /// Queries bypass the session table: they change nothing, so there is
    /// nothing to deduplicate.
    fn on_query(&self, query: &[u8]) -> Result<Bytes, QueryError> {
        self.inner.on_query(query)
    }

    fn durable_applied(&mut self) -> Result<Option<LogId>, SnapshotError> {
        // The session table lives in snapshots only: resuming from the
        // user's store would lose it, so the snapshot is always loaded
        // (and replaces that store).
        Ok(None)
    }
}
