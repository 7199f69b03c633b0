//! `Node`: the handle a service holds on one Raft group member (braft's
//! `Node`): apply commands, ask who leads, read status, shut down.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::admin::AdminRequest;
use super::apply_loop::Applied;
use super::error::Error;
use super::group::{GroupInput, SharedState};
use super::group_id::GroupId;
use super::queue;
use super::read_barrier::ReadWaiter;
use super::state_machine::QueryError;
use std::net::SocketAddr;
use std::time::Duration;

use crate::core::{ConfChangeError, LogId, LogIndex, Membership, NodeId, Status};

/// A handle on one member of a Raft group running on a
/// [`NodeManager`](super::NodeManager). Cheap to clone.
///
/// Made by [`NodeManager::add_group`](super::NodeManager::add_group) (its
/// example starts one). The examples on [`apply`](Self::apply),
/// [`read_barrier`](Self::read_barrier), [`watch`](Self::watch) and
/// [`shutdown`](Self::shutdown) run as doc tests, `examples/embed.rs` runs
/// them on three servers; the admin verbs are exercised against live
/// groups in `tests/runtime_membership.rs` and `tests/runtime_admin.rs`.
#[derive(Clone, Debug)]
pub struct Node {
    pub(crate) group: GroupId,
    pub(crate) id: NodeId,
    pub(crate) inbox: queue::Sender<GroupInput>,
    pub(crate) shared: Arc<SharedState>,
    /// Commands above this size are refused before they reach the log.
    pub(crate) command_bytes_max: usize,
    /// The group keeps client sessions: every command is logged in a
    /// session envelope (see `session/`).
    pub(crate) sessions: bool,
}

impl Node {
    /// The group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Replicates `command` and applies it; resolves once the local state
    /// machine applied it, with its index and the state machine's response.
    ///
    /// # Errors
    /// `NotLeader` (with the leader's address when known) on a non-leader;
    /// `Overwritten` when a new leader replaced the entry; `NotRunning` when
    /// the group had stopped (not applied); `Shutdown` when it stops with
    /// the command in flight (it may or may not have committed);
    /// `Storage` after a storage failure; `CommandTooLarge` over
    /// [`GroupOptions::command_bytes_max`](super::GroupOptions::command_bytes_max)
    /// (nothing logged).
    ///
    /// # Example
    /// ```
    /// # use std::time::Duration;
    /// # use oar::prelude::*;
    /// # /// Answers each command with itself.
    /// # struct Echo;
    /// # impl StateMachine for Echo {
    /// #     fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
    /// #         commands.iter().map(|c| c.data.clone()).collect()
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = NodeManager::bind(
    /// #     "127.0.0.1:0".parse()?,
    /// #     Security::insecure("doc"),
    /// #     TransportOptions::default(),
    /// # )
    /// # .await?;
    /// # let peers = [(NodeId(1), server.local_addr())].into();
    /// # let mut options = GroupOptions::new(GroupId(1), NodeId(1), peers);
    /// # options.raft.election_timeout_min = Duration::from_millis(100);
    /// # options.raft.election_timeout_max = Duration::from_millis(200);
    /// # options.raft.heartbeat_interval = Duration::from_millis(20);
    /// # let node = server.add_group(options, MemStorage::new(), Echo)?;
    /// node.wait_for_leader(Duration::from_secs(5)).await?;
    /// let applied = node.apply(Bytes::from_static(b"hello")).await?;
    /// assert_eq!(applied.response, "hello");
    /// assert!(node.applied_index() >= applied.index);
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn apply(&self, command: Bytes) -> Result<Applied, Error> {
        self.check_size(command.len())?;
        let command = match self.sessions {
            true => super::session::encode_plain(&command),
            false => command,
        };
        self.propose(command).await
    }

    pub(crate) fn check_size(&self, size: usize) -> Result<(), Error> {
        match size > self.command_bytes_max {
            true => Err(Error::CommandTooLarge {
                size,
                max: self.command_bytes_max,
            }),
            false => Ok(()),
        }
    }

    /// Proposes a command as it is to be logged, and waits for its apply.
    pub(crate) async fn propose(&self, command: Bytes) -> Result<Applied, Error> {
        let (reply, response) = oneshot::channel();
        self.inbox
            .send(GroupInput::Propose { command, reply })
            .await
            .map_err(|_| Error::NotRunning)?;
        response.await.map_err(|_| Error::Shutdown)?
    }

    /// A linearizable read barrier: resolves once this member's state
    /// machine has applied everything a linearizable read must see — every
    /// write that completed before the call — so the caller then reads its
    /// own state directly. Works on the leader and (with `ReadIndex` or
    /// `Lease`) on followers and learners, which ask the leader for a read
    /// index. Concurrent calls share heartbeat rounds. Returns the index
    /// the state machine had applied when it resolved.
    ///
    /// `ReadPolicy::Lease` relies on bounded clock drift
    /// (`RaftOptions::max_clock_drift`, see `oar::core::read`).
    ///
    /// # Errors
    /// `NotLeader` (a `Log` read off the leader, no leader known, or the
    /// leader refused); `LeadershipLost` when the leader changed before the
    /// read was confirmed; `Timeout` when no quorum confirmed it in an
    /// election timeout; `Busy`; `NotRunning` / `Shutdown`. All retryable:
    /// a failed barrier served nothing.
    ///
    /// # Example
    /// ```
    /// # use std::time::Duration;
    /// # use oar::prelude::*;
    /// # /// Answers each command with itself.
    /// # struct Echo;
    /// # impl StateMachine for Echo {
    /// #     fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
    /// #         commands.iter().map(|c| c.data.clone()).collect()
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = NodeManager::bind(
    /// #     "127.0.0.1:0".parse()?,
    /// #     Security::insecure("doc"),
    /// #     TransportOptions::default(),
    /// # )
    /// # .await?;
    /// # let peers = [(NodeId(1), server.local_addr())].into();
    /// # let mut options = GroupOptions::new(GroupId(1), NodeId(1), peers);
    /// # options.raft.election_timeout_min = Duration::from_millis(100);
    /// # options.raft.election_timeout_max = Duration::from_millis(200);
    /// # options.raft.heartbeat_interval = Duration::from_millis(20);
    /// # let node = server.add_group(options, MemStorage::new(), Echo)?;
    /// node.wait_for_leader(Duration::from_secs(5)).await?;
    /// let written = node.apply(Bytes::from_static(b"x")).await?;
    /// // After the barrier, this member's state machine has applied every
    /// // write completed before it: read its state directly.
    /// let applied = node.read_barrier(ReadPolicy::ReadIndex).await?;
    /// assert!(applied >= written.index);
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read_barrier(&self, policy: crate::core::ReadPolicy) -> Result<LogIndex, Error> {
        // The leader's lease, as its group task last published it: no hop
        // through that task (`read_lease.rs` says why this is never stale).
        let lease = &self.shared.read_lease;
        if policy == crate::core::ReadPolicy::Lease
            && let Some(index) = lease.read_index_if_held()
        {
            return lease.wait_applied(index).await;
        }
        if policy == crate::core::ReadPolicy::Log {
            let (reply, response) = oneshot::channel();
            let waiter = ReadWaiter::Barrier(reply);
            self.inbox
                .send(GroupInput::Read { policy, waiter })
                .await
                .map_err(|_| Error::NotRunning)?;
            return response.await.map_err(|_| Error::Shutdown)?;
        }
        // ReadIndex, and Lease outside the lease: join the next read batch
        // (`read_batch.rs` says why that is never stale); only the reader
        // that asked for it first wakes the group task.
        let batches = &self.shared.read_batches;
        let (batch, wake) = batches.join();
        if wake {
            self.inbox
                .send(GroupInput::ReadBatchWanted)
                .await
                .map_err(|_| Error::NotRunning)?;
        }
        batches.wait(batch).await?;
        Ok(LogIndex(self.shared.applied_index.load(Ordering::Acquire)))
    }

    /// A linearizable query without the log: this member's state machine
    /// answers `query` ([`StateMachine::on_query`](super::StateMachine::on_query))
    /// on its apply task once it has applied everything a linearizable read
    /// must see, as after [`read_barrier`](Self::read_barrier); only `Log`
    /// appends anything (a no-op entry, never the query). Works on
    /// followers and learners with `ReadIndex` and `Lease`.
    ///
    /// # Errors
    /// Those of [`read_barrier`](Self::read_barrier) (all retryable), and
    /// [`Error::Query`] from the state machine: `Unsupported` (the default
    /// `on_query`: run the query through [`apply`](Self::apply) instead,
    /// which is what the client service does) or `Invalid`.
    pub async fn query(
        &self,
        policy: crate::core::ReadPolicy,
        query: Bytes,
    ) -> Result<Bytes, Error> {
        // Learned from the first query: no round for the rest.
        if self.shared.queries_unsupported.load(Ordering::Relaxed) {
            return Err(Error::Query(QueryError::Unsupported));
        }
        let (reply, response) = oneshot::channel();
        let waiter = ReadWaiter::Query { query, reply };
        self.inbox
            .send(GroupInput::Read { policy, waiter })
            .await
            .map_err(|_| Error::NotRunning)?;
        response.await.map_err(|_| Error::Shutdown)?
    }

    /// The largest command [`apply`](Self::apply) accepts, in bytes.
    pub fn command_bytes_max(&self) -> usize {
        self.command_bytes_max
    }

    /// Messages this member refused because their sender node does not
    /// live on the authenticated server that sent them.
    pub fn forbidden_messages(&self) -> u64 {
        self.shared.forbidden_messages.load(Ordering::Relaxed)
    }

    /// The leader this member knows of, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.shared.status.leader()
    }

    /// The highest index the state machine has applied.
    pub fn applied_index(&self) -> LogIndex {
        LogIndex(self.shared.applied_index.load(Ordering::Acquire))
    }

    /// The member's role, term, log pointers and (when leading) per-peer progress.
    ///
    /// # Errors
    /// `NotRunning` if the group stopped.
    pub async fn status(&self) -> Result<Status, Error> {
        let (reply, status) = oneshot::channel();
        self.inbox
            .send(GroupInput::Status { reply })
            .await
            .map_err(|_| Error::NotRunning)?;
        status.await.map_err(|_| Error::NotRunning)
    }

    /// Saves a snapshot of the state machine now (braft's `snapshot`); once
    /// durable, the log before it (less the compaction margin) is dropped.
    /// Returns the snapshot's last entry.
    ///
    /// # Errors
    /// `StateMachine` if it does not support snapshots or failed to save;
    /// `Storage` if the snapshot could not be made durable; `NotRunning`.
    pub async fn snapshot(&self) -> Result<LogId, Error> {
        let (reply, done) = oneshot::channel();
        self.inbox
            .send(GroupInput::Snapshot { reply })
            .await
            .map_err(|_| Error::NotRunning)?;
        done.await.map_err(|_| Error::Shutdown)?
    }

    async fn admin(&self, request: AdminRequest) -> Result<Option<LogId>, Error> {
        let (reply, answer) = oneshot::channel();
        self.inbox
            .send(GroupInput::Admin { request, reply })
            .await
            .map_err(|_| Error::NotRunning)?;
        answer.await.map_err(|_| Error::Shutdown)?
    }

    /// Runs a membership change; it completes with the configuration entry
    /// that finished it (the group answers every change with one).
    async fn change(&self, request: AdminRequest) -> Result<LogId, Error> {
        let done = self.admin(request).await?;
        done.ok_or_else(|| Error::Options("change completed without an entry".into()))
    }

    /// Moves the group to the simple configuration `target` (braft's
    /// `change_peers`), through a joint configuration when voters change.
    /// New voters must be caught-up learners. Resolves with the entry that
    /// completed the change (C(new)) once it is applied here.
    ///
    /// # Errors
    /// `ConfChange` (not the leader, a change in flight, a lagging
    /// learner...), `Overwritten` if a new leader dropped the change,
    /// `Shutdown` / `NotRunning`.
    pub async fn change_membership(&self, target: Membership) -> Result<LogId, Error> {
        self.change(AdminRequest::ChangeMembership(target)).await
    }

    /// Adds a learner reachable at `addr`: it receives the log but does not
    /// vote. Every member should know `addr` (see
    /// [`set_peer_address`](Self::set_peer_address)) before it may lead.
    ///
    /// # Errors
    /// As [`change_membership`](Self::change_membership).
    pub async fn add_learner(&self, id: NodeId, addr: SocketAddr) -> Result<LogId, Error> {
        self.change(AdminRequest::AddLearner(id, addr)).await
    }

    /// Promotes a caught-up learner to voter (joint consensus).
    ///
    /// # Errors
    /// As [`change_membership`](Self::change_membership); `ConfChange(LearnerLagging)`
    /// while the learner is behind by more than the catch-up margin.
    pub async fn promote_learner(&self, id: NodeId) -> Result<LogId, Error> {
        self.change(AdminRequest::PromoteLearner(id)).await
    }

    /// Adds a voter (braft's `add_peer`): as a learner first, promoted once
    /// it has caught up, retrying the promotion until `catch_up` passes.
    ///
    /// # Errors
    /// As [`add_learner`](Self::add_learner); the last `LearnerLagging` if
    /// it did not catch up in time.
    ///
    /// # Example
    /// A group of one grows to two voters, hands its leadership over, and
    /// the new leader removes the first member.
    /// ```
    /// # use std::time::Duration;
    /// # use oar::prelude::*;
    /// # struct Echo;
    /// # impl StateMachine for Echo {
    /// #     fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
    /// #         commands.iter().map(|c| c.data.clone()).collect()
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut servers = Vec::new();
    /// # for _ in 0..2 {
    /// #     let security = Security::insecure("doc");
    /// #     let addr = "127.0.0.1:0".parse()?;
    /// #     servers.push(NodeManager::bind(addr, security, TransportOptions::default()).await?);
    /// # }
    /// let peers: std::collections::BTreeMap<_, _> =
    ///     [(NodeId(1), servers[0].local_addr()), (NodeId(2), servers[1].local_addr())].into();
    /// let mut nodes = Vec::new();
    /// for (i, server) in servers.iter().enumerate() {
    ///     let id = NodeId(i as u64 + 1);
    ///     let mut options = GroupOptions::new(GroupId(7), id, peers.clone());
    ///     // Every member starts with node 1 as the only voter.
    ///     options.initial_voters = Some([NodeId(1)].into());
    /// #   options.raft.election_timeout_min = Duration::from_millis(100);
    /// #   options.raft.election_timeout_max = Duration::from_millis(200);
    /// #   options.raft.heartbeat_interval = Duration::from_millis(20);
    ///     nodes.push(server.add_group(options, MemStorage::new(), Echo)?);
    /// }
    /// nodes[0].wait_for_leader(Duration::from_secs(5)).await?;
    /// nodes[0].add_peer(NodeId(2), peers[&NodeId(2)], Duration::from_secs(5)).await?;
    /// nodes[0].transfer_leadership(NodeId(2)).await?;
    /// nodes[1].wait_for_status(Duration::from_secs(5), |s| s.leader == Some(NodeId(2))).await?;
    /// // Once an entry of its own term is applied, it may change the membership.
    /// nodes[1].apply(Bytes::from_static(b"hello")).await?;
    /// nodes[1].remove_peer(NodeId(1)).await?;
    /// let status = nodes[1].status().await?;
    /// assert_eq!(status.membership.voters, [NodeId(2)].into());
    /// # for server in &servers { server.shutdown().await; }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn add_peer(
        &self,
        id: NodeId,
        addr: SocketAddr,
        catch_up: Duration,
    ) -> Result<LogId, Error> {
        self.add_learner(id, addr).await?;
        let deadline = tokio::time::Instant::now() + catch_up;
        loop {
            match self.promote_learner(id).await {
                Err(Error::ConfChange(ConfChangeError::LearnerLagging { .. }))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                result => return result,
            }
        }
    }

    /// Removes a voter or a learner (braft's `remove_peer`). A leader that
    /// removes itself steps down once the change is committed.
    ///
    /// # Errors
    /// As [`change_membership`](Self::change_membership).
    pub async fn remove_peer(&self, id: NodeId) -> Result<LogId, Error> {
        self.change(AdminRequest::RemoveMember(id)).await
    }

    /// **Unsafe** (braft's `reset_peers`): forces `membership` on this
    /// member, without consensus, for a group that lost its majority for
    /// good. Use only on the survivors, all with the same membership.
    ///
    /// # Errors
    /// `ConfChange` for an invalid membership.
    pub async fn reset_peers(&self, membership: Membership) -> Result<(), Error> {
        self.admin(AdminRequest::ResetPeers(membership))
            .await
            .map(|_| ())
    }

    /// Hands leadership to the voter `to` (braft's `transfer_leadership_to`).
    /// Resolves once the transfer started; this member refuses proposals
    /// until `to` takes over or an election timeout passes.
    ///
    /// # Errors
    /// `Transfer` (not the leader, not a voter, a transfer or change in flight).
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<(), Error> {
        self.admin(AdminRequest::TransferLeadership(to))
            .await
            .map(|_| ())
    }

    /// Records the Raft address of member `id`, so that this member can
    /// reach it (e.g. a member added after this one started).
    ///
    /// # Errors
    /// `NotRunning` if the group stopped.
    pub async fn set_peer_address(&self, id: NodeId, addr: SocketAddr) -> Result<(), Error> {
        self.admin(AdminRequest::SetAddress(id, addr))
            .await
            .map(|_| ())
    }

    /// Stops the member: pending requests fail with `Shutdown`, queued disk
    /// writes finish, the state machine gets `on_shutdown`. Resolves once
    /// all of that is done and nothing touches the group's storage any more
    /// (also when the group stopped on its own, e.g. on a storage failure),
    /// so that the storage may be reopened at once.
    ///
    /// # Example
    /// ```
    /// # use std::time::Duration;
    /// # use oar::prelude::*;
    /// # /// Answers each command with itself.
    /// # struct Echo;
    /// # impl StateMachine for Echo {
    /// #     fn on_apply(&mut self, commands: &[Committed]) -> Vec<Bytes> {
    /// #         commands.iter().map(|c| c.data.clone()).collect()
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = NodeManager::bind(
    /// #     "127.0.0.1:0".parse()?,
    /// #     Security::insecure("doc"),
    /// #     TransportOptions::default(),
    /// # )
    /// # .await?;
    /// # let peers = [(NodeId(1), server.local_addr())].into();
    /// # let mut options = GroupOptions::new(GroupId(1), NodeId(1), peers);
    /// # options.raft.election_timeout_min = Duration::from_millis(100);
    /// # options.raft.election_timeout_max = Duration::from_millis(200);
    /// # options.raft.heartbeat_interval = Duration::from_millis(20);
    /// # let node = server.add_group(options, MemStorage::new(), Echo)?;
    /// node.shutdown().await;
    /// assert!(node.watch().borrow().stopped);
    /// assert_eq!(node.apply(Bytes::new()).await, Err(Error::NotRunning));
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        let mut stopped = self.shared.stopped.subscribe();
        // A closed inbox means the group is already stopping on its own.
        let _ = self.inbox.send(GroupInput::Shutdown).await;
        let _ = stopped.wait_for(|&stopped| stopped).await;
    }
}
