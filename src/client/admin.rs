//! Admin verbs sent to a group's leader found through the route table,
//! for an embedder's tools: the operator names any server, not the
//! leader. (`oarctl` follows the admin answers' not-leader hints instead,
//! which keeps their error classes.)

use super::error::ClientError;
use super::retry::Client;
use crate::runtime::GroupId;
use crate::runtime::admin_client::{AdminError, AdminOp, call};

impl Client {
    /// Runs admin `op` on the leader of `group`, found by a fresh route
    /// lookup at every known server (admin verbs are rare; a cached leader,
    /// or the first server's word, may be stale), waiting
    /// out an election; once more if the leader refused (it may have just
    /// lost leadership). The client must have
    /// been made with an operator's [`Dialer`](crate::runtime::Dialer).
    ///
    /// # Errors
    /// [`ClientError`]; `Refused` with the server's answer.
    pub async fn admin_at_leader(
        &self,
        group: GroupId,
        op: AdminOp,
    ) -> Result<String, ClientError> {
        let mut last = None;
        for _ in 0..2 {
            // Every server is asked and the newest term wins: the first
            // server to answer may not have heard of a new leader yet.
            self.forget_leader(group);
            self.refresh().await;
            let (_, addr) = self.leader(group).await?;
            let timeout = self.options().attempt_timeout.max(self.options().deadline);
            match call(self.dialer(), addr, group, op.clone(), timeout).await {
                Ok(text) => return Ok(text),
                Err(e) => {
                    last = Some(e);
                    self.forget_leader(group);
                }
            }
        }
        Err(match last.expect("an attempt was made") {
            AdminError::Refused(text) => ClientError::Refused(text),
            other => ClientError::Refused(other.to_string()),
        })
    }
}
