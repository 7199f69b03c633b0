//! Linearizable reads through the client: by the read policy of the
//! options or of the call, at the leader or (follower reads) spread over
//! every member.

use bytes::Bytes;

use super::error::ClientError;
use super::retry::{Client, unexpected};
use crate::core::ReadPolicy;
use crate::runtime::GroupId;
use crate::runtime::wire::proto;
use crate::runtime::wire::proto::client_request::Op;
use crate::runtime::wire::proto::client_response::Result as Answer;

impl Client {
    /// Runs a read-only `query` on `group`'s state machine, linearizably,
    /// by [`ClientOptions::read_policy`](super::ClientOptions::read_policy)
    /// (at any member with
    /// [`follower_reads`](super::ClientOptions::follower_reads)). Retried
    /// freely until the deadline, since it changes nothing.
    ///
    /// # Errors
    /// [`ClientError`]; a query the state machine finds invalid is
    /// [`ClientError::Refused`].
    pub async fn read(&self, group: GroupId, query: Bytes) -> Result<Bytes, ClientError> {
        self.read_with(group, query, self.options().read_policy)
            .await
    }

    /// [`read`](Self::read) by `policy`. `ReadIndex` and `Lease` skip the
    /// log when the group's state machine answers queries
    /// (`StateMachine::on_query`); otherwise, and with `Log`, the server
    /// makes the read through the log.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub async fn read_with(
        &self,
        group: GroupId,
        query: Bytes,
        policy: ReadPolicy,
    ) -> Result<Bytes, ClientError> {
        let wire_policy = match policy {
            ReadPolicy::ReadIndex => proto::ReadPolicy::ReadIndex,
            ReadPolicy::Lease => proto::ReadPolicy::Lease,
            ReadPolicy::Log => proto::ReadPolicy::Log,
        };
        let request = proto::ClientRequest {
            request_id: 0,
            group_id: group.0,
            op: Some(Op::Read(proto::ClientRead {
                query,
                policy: wire_policy as i32,
            })),
        };
        // Only the leader makes a Log read.
        let spread = self.options().follower_reads && policy != ReadPolicy::Log;
        match self.call_with(request, true, spread).await? {
            Answer::Reply(reply) => Ok(reply),
            other => Err(unexpected(&other)),
        }
    }
}
