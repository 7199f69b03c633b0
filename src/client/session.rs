//! A client session: exactly-once writes through the retry loop.

use std::collections::BTreeSet;
use std::sync::Mutex;

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
    /// Invariant: every element is below `next`.
    in_flight: BTreeSet<u64>,
}

impl Session {
    pub(crate) fn new(client: Client, group: GroupId, id: SessionId) -> Self {
        Session {
            client,
            group,
            id,
            sequence: Mutex::new(Sequence {
                next: 1,
                in_flight: BTreeSet::new(),
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
        let (seq, first_unacked) = {
            let mut sequence = self.sequence.lock().expect("sequence lock");
            let seq = sequence.next;
            sequence.next += 1;
            sequence.in_flight.insert(seq);
            (seq, *sequence.in_flight.first().expect("just inserted"))
        };
        let result = self.apply_as(seq, first_unacked, command).await;
        self.sequence
            .lock()
            .expect("sequence lock")
            .in_flight
            .remove(&seq);
        result
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
