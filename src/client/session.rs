//! A client session: exactly-once writes through the retry loop.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use super::error::ClientError;
use super::retry::Client;
use crate::runtime::wire::proto;
use crate::runtime::wire::proto::client_request::Op;
use crate::runtime::wire::proto::client_response::Result as Answer;
use crate::runtime::{GroupId, SessionId};

/// A session in one group, opened by [`Client::open_session`]. Every
/// [`apply`](Self::apply) gets the next sequence number and keeps it across
/// its retries, so the group applies it once whatever the network does.
/// Concurrent applies on one session are fine.
#[derive(Debug)]
pub struct Session {
    client: Client,
    group: GroupId,
    id: SessionId,
    sequence: Mutex<Sequence>,
}

/// Sequence numbers handed out and not yet answered.
#[derive(Debug)]
struct Sequence {
    next: u64,
    /// In increasing order (numbers are handed out in order and pushed at
    /// the back), every element below `next`. A deque, not a set: with one
    /// request in flight it empties and refills on every apply, in the
    /// buffer it already has.
    in_flight: VecDeque<u64>,
}

impl Sequence {
    fn end(&mut self, seq: u64) {
        if let Ok(at) = self.in_flight.binary_search(&seq) {
            self.in_flight.remove(at);
        }
    }
}

/// One apply's sequence number, in flight until this is dropped: when the
/// apply returns, and also when its caller drops it unfinished (a timeout
/// around it, a `select!`), or the number would hold the session's
/// watermark, and the group's copy of every later reply, for the
/// session's life.
struct InFlight<'a> {
    sequence: &'a Mutex<Sequence>,
    seq: u64,
    /// The lowest number still in flight when this one began.
    first_unacked: u64,
}

impl<'a> InFlight<'a> {
    fn begin(sequence: &'a Mutex<Sequence>) -> Self {
        let mut numbers = sequence.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = numbers.next;
        numbers.next += 1;
        numbers.in_flight.push_back(seq);
        let first_unacked = *numbers.in_flight.front().expect("just pushed");
        InFlight {
            sequence,
            seq,
            first_unacked,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.sequence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .end(self.seq);
    }
}

impl Session {
    pub(crate) fn new(client: Client, group: GroupId, id: SessionId) -> Self {
        Session {
            client,
            group,
            id,
            sequence: Mutex::new(Sequence {
                next: 1,
                in_flight: VecDeque::new(),
            }),
        }
    }

    /// The session's id (the log index that opened it).
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The session's group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Applies `command` exactly once and returns the state machine's
    /// reply, retrying across leader changes and reconnections until the
    /// deadline.
    ///
    /// # Errors
    /// [`ClientError::Session`] (not applied; for `Expired`, open a new
    /// session), [`ClientError::Timeout`] (applied at most once; unknown
    /// whether it was: read back), [`ClientError::Refused`].
    pub async fn apply(&self, command: Bytes) -> Result<Bytes, ClientError> {
        let request = InFlight::begin(&self.sequence);
        self.apply_as(request.seq, request.first_unacked, command)
            .await
    }

    /// Sends request `seq` with this watermark as it is: what
    /// [`apply`](Self::apply) does for each attempt. For tests that replay
    /// a request whose reply was lost.
    #[doc(hidden)]
    pub async fn apply_as(
        &self,
        seq: u64,
        first_unacked: u64,
        command: Bytes,
    ) -> Result<Bytes, ClientError> {
        let request = proto::ClientRequest {
            request_id: 0,
            group_id: self.group.0,
            op: Some(Op::Apply(proto::ClientApply {
                session: self.id.0,
                seq,
                first_unacked,
                command,
            })),
        };
        match self.client.call(request).await? {
            Answer::Reply(reply) => Ok(reply),
            other => Err(ClientError::Refused(format!(
                "an unexpected answer {other:?}"
            ))),
        }
    }

    /// Closes the session: the group forgets its replies.
    ///
    /// # Errors
    /// [`ClientError`]; `Session(Expired)` if it had expired already.
    pub async fn close(self) -> Result<(), ClientError> {
        let request = proto::ClientRequest {
            request_id: 0,
            group_id: self.group.0,
            op: Some(Op::CloseSession(proto::ClientCloseSession {
                session: self.id.0,
            })),
        };
        self.client.call(request).await.map(|_| ())
    }
}
