//! A group member's status you can watch (openraft's `metrics()` channel):
//! [`Node::watch`] hands out a `tokio::sync::watch` receiver of
//! [`GroupStatus`], which the group's driver (role, term, leader, commit
//! index, membership) and apply task (applied index) update when, and only
//! when, one of those changes. An embedder awaits "a leader exists" or
//! "applied ≥ i" with [`Node::wait_for_leader`] / [`Node::wait_for_applied`]
//! instead of polling.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use super::group_id::GroupId;
use super::node::Node;
use crate::core::{LogIndex, Membership, NodeId, RaftNode, Role, Term};

/// What a member of a group knows of it, as published on [`Node::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group.
    pub group: GroupId,
    /// This member.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader of `term` it knows of, if any.
    pub leader: Option<NodeId>,
    /// That leader's Raft address, when this member knows it.
    pub leader_addr: Option<SocketAddr>,
    /// Its commit index.
    pub committed: LogIndex,
    /// The highest index its state machine has applied.
    pub applied: LogIndex,
    /// The configuration in effect.
    pub membership: Membership,
    /// Set once the member stopped (shutdown, storage failure): nothing
    /// here changes any more.
    pub stopped: bool,
}

/// Why a [`Node::wait_for_leader`] or [`Node::wait_for_applied`] gave up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The condition did not hold within the time given. Remedy: wait
    /// longer, or look at [`Node::watch`]'s status for why (no quorum?).
    #[error("not reached within {waited:?}")]
    Timeout {
        /// How long was waited.
        waited: Duration,
    },
    /// The member stopped before the condition held.
    #[error("the group member stopped")]
    Stopped,
}

/// The publishing side, shared by the group's driver and apply task.
#[derive(Debug)]
pub(crate) struct StatusPublisher {
    sender: watch::Sender<GroupStatus>,
}

impl StatusPublisher {
    /// A publisher whose first status is an unled follower at term 0.
    pub(crate) fn new(group: GroupId, id: NodeId, membership: Membership) -> Self {
        let status = GroupStatus {
            group,
            id,
            role: Role::Follower,
            term: Term(0),
            leader: None,
            leader_addr: None,
            committed: LogIndex(0),
            applied: LogIndex(0),
            membership,
            stopped: false,
        };
        StatusPublisher {
            sender: watch::Sender::new(status),
        }
    }

    /// A new receiver of the status.
    pub(crate) fn subscribe(&self) -> watch::Receiver<GroupStatus> {
        self.sender.subscribe()
    }

    /// Applies `modify`; wakes the receivers if it changed something and
    /// there are any. With none (the common case: nobody watches), the
    /// value still changes, without the wake-up's eight mutexes. A receiver
    /// subscribing meanwhile still sees the new value: it reads the value
    /// under the lock held here, after counting itself.
    fn update(&self, modify: impl FnOnce(&mut GroupStatus) -> bool) {
        self.sender
            .send_if_modified(|s| modify(s) && self.sender.receiver_count() > 0);
    }

    /// The leader last published (the driver publishes once per wake-up,
    /// right after performing the actions that changed it).
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.sender.borrow().leader
    }

    /// Records the applied index (the apply task, once per batch).
    ///
    /// An applied entry is committed, so the commit index rises with it:
    /// the driver publishes its commit index only at the end of the
    /// wake-up that handed the entries over, and a waiter woken by
    /// `applied ≥ i` must not then read `committed < i`.
    pub(crate) fn set_applied(&self, applied: LogIndex) {
        self.update(|s| {
            let newer = applied > s.applied;
            if newer {
                s.applied = applied;
                s.committed = s.committed.max(applied);
            }
            newer
        });
    }

    /// Marks the member stopped and leaderless.
    pub(crate) fn set_stopped(&self) {
        self.sender.send_modify(|s| {
            s.stopped = true;
            s.leader = None;
            s.leader_addr = None;
            s.role = Role::Follower;
        });
    }
}

/// The driver's copy of what it last published, so that an unchanged
/// status costs a few comparisons and no lock.
#[derive(Debug, Default)]
pub(crate) struct Published {
    role: Option<Role>,
    term: Term,
    leader: Option<NodeId>,
    committed: LogIndex,
    membership: Membership,
}

impl Published {
    /// Publishes the driver's part of the status if any of it changed
    /// since the last call (once per wake-up of the driver).
    pub(crate) fn maybe_publish(
        &mut self,
        raft: &RaftNode,
        addr_of: impl Fn(NodeId) -> Option<SocketAddr>,
        publisher: &StatusPublisher,
    ) -> bool {
        let (role, term, leader) = (raft.role(), raft.term(), raft.leader());
        let committed = raft.log().committed();
        let membership = raft.membership();
        if self.role == Some(role)
            && self.term == term
            && self.leader == leader
            && self.committed == committed
            && &self.membership == membership
        {
            return false;
        }
        self.role = Some(role);
        self.term = term;
        self.leader = leader;
        self.committed = committed;
        if &self.membership != membership {
            self.membership = membership.clone();
        }
        let leader_addr = leader.and_then(addr_of);
        publisher.update(|s| {
            s.role = role;
            s.term = term;
            s.leader = leader;
            s.leader_addr = leader_addr;
            // Never below what the apply task published (see `set_applied`).
            s.committed = s.committed.max(committed);
            if &s.membership != membership {
                s.membership = membership.clone();
            }
            true
        });
        true
    }
}

impl Node {
    /// A receiver of this member's [`GroupStatus`], updated whenever its
    /// role, term, leader, commit or applied index or membership changes.
    /// Await its `changed()` or `wait_for(..)`; cheap to hold many.
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
    /// let mut status = node.watch();
    /// // Wait for any condition on the status: here, that a leader exists.
    /// let led = status.wait_for(|s| s.leader.is_some()).await?.clone();
    /// assert_eq!(led.leader, Some(NodeId(1)));
    /// // The common cases have helpers.
    /// let (leader, _addr) = node.wait_for_leader(Duration::from_secs(5)).await?;
    /// let written = node.apply(Bytes::from_static(b"x")).await?;
    /// node.wait_for_applied(written.index, Duration::from_secs(5)).await?;
    /// assert_eq!(leader, NodeId(1));
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(&self) -> watch::Receiver<GroupStatus> {
        self.shared.status.subscribe()
    }

    /// Waits until this member knows a leader (itself or another), and
    /// returns it with its address when known. Use after `add_group` before
    /// the first `apply`, instead of retrying `NotLeader`.
    ///
    /// # Errors
    /// [`WaitError::Timeout`] after `timeout`; [`WaitError::Stopped`] if the
    /// member stops first.
    pub async fn wait_for_leader(
        &self,
        timeout: Duration,
    ) -> Result<(NodeId, Option<SocketAddr>), WaitError> {
        let status = self
            .wait_for_status(timeout, |s| s.leader.is_some())
            .await?;
        let leader = status.leader.ok_or(WaitError::Stopped)?;
        Ok((leader, status.leader_addr))
    }

    /// Waits until this member's state machine has applied `index` (e.g.
    /// a write's index, before reading this member's state), and returns
    /// the applied index then (≥ `index`).
    ///
    /// # Errors
    /// [`WaitError::Timeout`] after `timeout`; [`WaitError::Stopped`] if the
    /// member stops first.
    pub async fn wait_for_applied(
        &self,
        index: LogIndex,
        timeout: Duration,
    ) -> Result<LogIndex, WaitError> {
        let status = self
            .wait_for_status(timeout, |s| s.applied >= index)
            .await?;
        Ok(status.applied)
    }

    /// Waits until `done` holds for this member's status; returns that status.
    ///
    /// # Errors
    /// As [`wait_for_leader`](Self::wait_for_leader).
    pub async fn wait_for_status(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&GroupStatus) -> bool,
    ) -> Result<GroupStatus, WaitError> {
        let mut receiver = self.watch();
        let waited = tokio::time::timeout(timeout, async {
            let status = receiver.wait_for(|s| done(s) || s.stopped).await;
            status.map(|s| s.clone()).map_err(|_| WaitError::Stopped)
        })
        .await;
        match waited {
            Err(_) => Err(WaitError::Timeout { waited: timeout }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(status)) if done(&status) => Ok(status),
            Ok(Ok(_)) => Err(WaitError::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The apply task publishes `applied` before the driver publishes the
    /// commit index that covers it; a watcher must never see the applied
    /// index ahead of the commit index.
    #[test]
    fn an_applied_index_published_first_raises_the_commit_index() {
        let publisher = StatusPublisher::new(GroupId(1), NodeId(1), Membership::default());
        let watcher = publisher.subscribe();
        publisher.set_applied(LogIndex(7));
        let status = watcher.borrow().clone();
        assert_eq!(status.applied, LogIndex(7));
        assert_eq!(status.committed, LogIndex(7));
    }
}
