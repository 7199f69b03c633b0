//! The session verbs of a [`Node`]: open a session, apply a command in it,
//! close it. They go through the log like any command; the leader stamps
//! each with its clock, the one time sessions expire by.

use bytes::Bytes;

use super::codec::{Envelope, decode_reply, now_ms};
use super::table::SessionId;
use crate::runtime::apply_loop::Applied;
use crate::runtime::error::Error;
use crate::runtime::node::Node;

impl Node {
    /// Whether this group keeps client sessions
    /// ([`GroupOptions::sessions`](crate::runtime::GroupOptions::sessions)).
    pub fn has_sessions(&self) -> bool {
        self.sessions
    }

    /// Opens a client session through the log; its id is the index of the
    /// entry that opened it.
    ///
    /// # Errors
    /// As [`apply`](Self::apply); `SessionsDisabled` in a group without
    /// sessions; `Session(TooManySessions)` when the table is full. A
    /// session opened by an attempt whose outcome was unknown is never
    /// used and expires.
    pub async fn open_session(&self) -> Result<SessionId, Error> {
        let envelope = Envelope::Open { time_ms: now_ms() };
        let applied = self.apply_session_envelope(envelope).await?;
        let id: [u8; 8] = applied.response[..]
            .try_into()
            .map_err(|_| Error::StateMachine("a malformed session id".into()))?;
        Ok(SessionId(u64::from_be_bytes(id)))
    }

    /// Applies `command` as request `seq` of `session`, at most once: a
    /// retry of a request that was applied gets the reply recorded then
    /// (with the index of the retry's entry). `first_unacked` is the lowest
    /// sequence number whose reply the client still needs; replies below it
    /// are forgotten, and requests below it refused.
    ///
    /// # Errors
    /// As [`apply`](Self::apply), every one of them safe to retry with the
    /// same `seq`; `Session(..)` for a refused request (expired session,
    /// forgotten reply, full reply cache): not applied.
    pub async fn apply_in_session(
        &self,
        session: SessionId,
        seq: u64,
        first_unacked: u64,
        command: Bytes,
    ) -> Result<Applied, Error> {
        self.check_size(command.len())?;
        let envelope = Envelope::Request {
            time_ms: now_ms(),
            session,
            seq,
            first_unacked,
            command,
        };
        self.apply_session_envelope(envelope).await
    }

    /// Closes a session: its replies are forgotten and its requests refused.
    ///
    /// # Errors
    /// As [`apply`](Self::apply); `Session(Expired)` if it was not open.
    pub async fn close_session(&self, session: SessionId) -> Result<(), Error> {
        let envelope = Envelope::Close {
            time_ms: now_ms(),
            session,
        };
        self.apply_session_envelope(envelope).await.map(|_| ())
    }

    async fn apply_session_envelope(&self, envelope: Envelope) -> Result<Applied, Error> {
        if !self.sessions {
            return Err(Error::SessionsDisabled);
        }
        let applied = self.propose(envelope.encode()).await?;
        match decode_reply(applied.response) {
            Some(Ok(response)) => Ok(Applied {
                index: applied.index,
                response,
            }),
            Some(Err(e)) => Err(Error::Session(e)),
            None => Err(Error::StateMachine("a malformed session reply".into())),
        }
    }
}
