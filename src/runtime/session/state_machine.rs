//! The apply path of a session group: a [`StateMachine`] wrapped around the
//! user's, which deduplicates session requests before the user's state
//! machine sees them and keeps the session table in every snapshot.

use std::collections::BTreeSet;

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
}

/// Where a command's answer comes from.
enum Answer {
    /// Known already (a duplicate, a refusal, an open or close).
    Ready(Bytes),
    /// The user's reply to run entry `at`, answered raw (a Plain command).
    Plain(usize),
    /// The user's reply to run entry `at`, recorded under (session, seq)
    /// and answered in a session reply.
    Session(usize, SessionId, u64),
}

/// Commands collected for one call of the user's `on_apply`.
#[derive(Default)]
struct Run {
    commands: Vec<Committed>,
    /// Fresh session requests in the run, not yet recorded.
    pending: BTreeSet<(SessionId, u64)>,
    /// How many of the answers so far are still waiting on this run.
    first_answer: usize,
}

impl SessionStateMachine {
    pub(crate) fn new(inner: Box<dyn StateMachine>, options: SessionOptions) -> Self {
        SessionStateMachine {
            table: SessionTable::new(options.clone()),
            inner,
            options,
        }
    }

    /// Applies the run: the user's state machine sees its commands, and the
    /// answers waiting on it are filled (session replies recorded). `false`
    /// if the user's state machine broke the response-count contract.
    fn flush(
        &mut self,
        run: &mut Run,
        answers: &mut [Answer],
        ready: &mut [Option<Bytes>],
    ) -> bool {
        if run.commands.is_empty() {
            return true;
        }
        let replies = self.inner.on_apply(&run.commands);
        if replies.len() != run.commands.len() {
            return false;
        }
        for (slot, answer) in answers.iter().enumerate().skip(run.first_answer) {
            match *answer {
                Answer::Ready(_) => {}
                Answer::Plain(at) => ready[slot] = Some(replies[at].clone()),
                Answer::Session(at, session, seq) => {
                    self.table.record(session, seq, replies[at].clone());
                    ready[slot] = Some(encode_reply(&Ok(replies[at].clone())));
                }
            }
        }
        run.commands.clear();
        run.pending.clear();
        run.first_answer = answers.len();
        true
    }
}

impl StateMachine for SessionStateMachine {
    fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
        let mut answers: Vec<Answer> = Vec::with_capacity(commands.len());
        let mut ready: Vec<Option<Bytes>> = vec![None; commands.len()];
        let mut run = Run::default();
        for c in commands {
            let Some(envelope) = Envelope::decode(c.data.clone()) else {
                answers.push(Answer::Ready(encode_reply(&Err(SessionError::Malformed))));
                continue;
            };
            let answer = match envelope {
                Envelope::Plain { time_ms, command } => {
                    self.table.advance(time_ms);
                    run.commands.push(Committed {
                        id: c.id,
                        data: command,
                    });
                    Answer::Plain(run.commands.len() - 1)
                }
                Envelope::Open { time_ms } => {
                    self.table.advance(time_ms);
                    let id = SessionId(c.id.index.0);
                    let opened = self
                        .table
                        .open(id)
                        .map(|()| Bytes::copy_from_slice(&id.0.to_be_bytes()));
                    Answer::Ready(encode_reply(&opened))
                }
                Envelope::Close { time_ms, session } => {
                    self.table.advance(time_ms);
                    Answer::Ready(encode_reply(
                        &self.table.close(session).map(|()| Bytes::new()),
                    ))
                }
                Envelope::Request {
                    time_ms,
                    session,
                    seq,
                    first_unacked,
                    command,
                } => {
                    self.table.advance(time_ms);
                    if run.pending.contains(&(session, seq)) {
                        // A retry of a request earlier in this very batch:
                        // apply the first so that this one finds its reply.
                        if !self.flush(&mut run, &mut answers, &mut ready) {
                            return Vec::new();
                        }
                    }
                    let pending = run
                        .pending
                        .range((session, 0)..=(session, u64::MAX))
                        .count();
                    match self.table.decide(session, seq, first_unacked, pending) {
                        Decision::Fresh => {
                            run.pending.insert((session, seq));
                            run.commands.push(Committed {
                                id: c.id,
                                data: command,
                            });
                            Answer::Session(run.commands.len() - 1, session, seq)
                        }
                        Decision::Duplicate(reply) => Answer::Ready(encode_reply(&Ok(reply))),
                        Decision::Refused(e) => Answer::Ready(encode_reply(&Err(e))),
                    }
                }
            };
            answers.push(answer);
        }
        if !self.flush(&mut run, &mut answers, &mut ready) {
            // A broken contract: the apply loop reports a count mismatch.
            return Vec::new();
        }
        answers
            .into_iter()
            .zip(ready)
            .map(|(answer, filled)| match answer {
                Answer::Ready(bytes) => bytes,
                _ => filled.expect("every run was flushed"),
            })
            .collect()
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
