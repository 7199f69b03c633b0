//! Lease reads without the group task: the leader's lease and commit index,
//! published by the group task in a shared cell, so that
//! `Node::read_barrier(Lease)` on the leader costs two atomic loads and a
//! clock read (and, when the apply lags, one wait on the applied index)
//! instead of a hop through the group task and the apply task.
//!
//! **Why a fast-path read is never stale.** A read served here took its
//! read index `c` from the cell, then read this node's clock and found it
//! before the published lease end, then waited until the state machine
//! applied through `c`. It must see every write acknowledged before it
//! began:
//!
//! 1. *No other leader exists while the published lease holds.* The group
//!    task publishes [`RaftNode::lease_read_until`] — the core's lease, set
//!    only while it may serve lease reads (leading with check-quorum, first
//!    commit of its term done, no transfer started, nothing forfeited) —
//!    after every input it hands the core and *before* it performs any of
//!    the actions that input caused (`GroupDriver::drain_actions`). Every
//!    event that could let another leader be elected or commit ends the
//!    core's lease first (a step-down, a vote for another candidate, which
//!    needs a step-down, a lost quorum, a transfer whose TimeoutNow is one
//!    of those actions, a configuration change), so the cell is revoked
//!    before any message that could cause it leaves this node. What remains
//!    is time: the lease ends when the local clock passes it, read here
//!    with the core's own clock (skewed in the simulator), under the clock
//!    assumption of `core::read`.
//! 2. *The read index covers every acknowledged write.* The published
//!    commit index is raised in the same publish, before the drain hands
//!    the newly committed entries to the apply task, and only an applied
//!    entry is acknowledged; writes of earlier leaders are covered since the
//!    lease needs this term's first commit. The index only grows, and the
//!    lease end is stored after it, so a reader that sees a lease sees an
//!    index at least as new as the one published with it.
//! 3. *The state read is this node's applied state*, which only grows and
//!    holds nothing uncommitted.
//!
//! Anything the fast path cannot serve (no lease, a follower, an expired
//! lease) goes through the group task as before.
//!
//! [`RaftNode::lease_read_until`]: crate::core::RaftNode::lease_read_until

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

use tokio::sync::Notify;

use super::clock::Clock;
use super::error::Error;
use crate::core::{Instant, LogIndex};

/// The leader's lease for reads and the index they read at, published by
/// the group task; the applied index and its wake-ups, published by the
/// apply task.
///
/// Invariant: `read_index` never decreases; `lease_end` is `NO_LEASE` or
/// was stored after a `read_index` the lease covers.
pub(crate) struct ReadLease {
    /// The group's clock (the core's `now`).
    clock: Arc<dyn Clock>,
    /// The lease's end on `clock` in nanoseconds (exclusive), or
    /// `NO_LEASE`.
    lease_end: AtomicU64,
    /// The commit index published with the lease.
    read_index: AtomicU64,
    /// The applied index (the apply task's, shared with `Node`).
    applied: Arc<AtomicU64>,
    /// Readers waiting for `applied` to move: the apply task notifies only
    /// when there are some.
    waiting: AtomicUsize,
    /// Woken when `applied` moves, or the group stops.
    applied_moved: Notify,
    /// The group stopped: no waiter is woken by an apply any more.
    closed: AtomicBool,
}

/// No lease (a lease ending at 0 never holds: no clock reads before 0).
const NO_LEASE: u64 = 0;

impl ReadLease {
    /// An empty cell over the group's `clock` and applied index.
    pub(crate) fn new(clock: Arc<dyn Clock>, applied: Arc<AtomicU64>) -> Self {
        ReadLease {
            clock,
            lease_end: AtomicU64::new(NO_LEASE),
            read_index: AtomicU64::new(0),
            applied,
            waiting: AtomicUsize::new(0),
            applied_moved: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// The group task: the core may serve lease reads until `end` at
    /// commit index `committed`. Stores only what changed (readers on
    /// other cores share these lines).
    pub(crate) fn grant(&self, committed: LogIndex, end: Instant) {
        if self.read_index.load(Ordering::Relaxed) < committed.0 {
            self.read_index.fetch_max(committed.0, Ordering::SeqCst);
        }
        let end = end.as_nanos();
        if self.lease_end.load(Ordering::Relaxed) != end {
            self.lease_end.store(end, Ordering::SeqCst);
        }
    }

    /// The group task: no lease reads from the cell.
    pub(crate) fn revoke(&self) {
        if self.lease_end.load(Ordering::Relaxed) != NO_LEASE {
            self.lease_end.store(NO_LEASE, Ordering::SeqCst);
        }
    }

    /// The group stopped: no lease, and waiters give up.
    pub(crate) fn close(&self) {
        self.revoke();
        self.closed.store(true, Ordering::SeqCst);
        self.applied_moved.notify_waiters();
    }

    /// The read index, if the published lease holds now. The lease is
    /// loaded before the clock is read: a lease seen after a stale clock
    /// reading could have ended in between.
    pub(crate) fn read_index_if_held(&self) -> Option<LogIndex> {
        let end = self.lease_end.load(Ordering::SeqCst);
        if end == NO_LEASE {
            return None;
        }
        let now = self.clock.local(tokio::time::Instant::now());
        (now.as_nanos() < end).then(|| LogIndex(self.read_index.load(Ordering::SeqCst)))
    }

    /// The apply task: `applied` moved; wakes the readers waiting on it.
    pub(crate) fn on_applied(&self) {
        // Pairs with the fence in `wait_applied`: either the reader sees
        // the new applied index or this sees the reader counted.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.applied_moved.notify_waiters();
        }
    }

    /// Resolves once the state machine applied through `index`, with the
    /// index applied.
    ///
    /// # Errors
    /// `Shutdown` if the group stopped first.
    pub(crate) async fn wait_applied(&self, index: LogIndex) -> Result<LogIndex, Error> {
        let reached = || {
            let applied = self.applied.load(Ordering::Acquire);
            (applied >= index.0).then_some(Ok(LogIndex(applied)))
        };
        wait_until(&self.applied_moved, &self.waiting, &self.closed, reached).await
    }
}

impl fmt::Debug for ReadLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadLease")
            .field("lease_end", &self.lease_end)
            .field("read_index", &self.read_index)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// Waits until `ready` has an answer, woken by `moved`, counted in
/// `waiting` meanwhile; `Shutdown` once `closed` (and `ready` still has
/// none). The lease's applied index and the read batches' outcomes are
/// waited for this way. Free of lost wake-ups: the notification is enabled
/// before the fenced re-check, and the publishers fence before notifying.
///
/// # Errors
/// `ready`'s error, or `Shutdown`.
pub(super) async fn wait_until<T>(
    moved: &Notify,
    waiting: &AtomicUsize,
    closed: &AtomicBool,
    ready: impl Fn() -> Option<Result<T, Error>>,
) -> Result<T, Error> {
    if let Some(answer) = ready() {
        return answer;
    }
    waiting.fetch_add(1, Ordering::SeqCst);
    let _counted = Counted(waiting);
    loop {
        let notified = moved.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        fence(Ordering::SeqCst);
        if let Some(answer) = ready() {
            return answer;
        }
        if closed.load(Ordering::SeqCst) {
            return Err(Error::Shutdown);
        }
        notified.await;
    }
}

/// Uncounts a waiter when its wait ends (or is dropped).
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock the test sets by hand.
    #[derive(Debug, Default)]
    struct HandClock(AtomicU64);

    impl Clock for HandClock {
        fn local(&self, _: tokio::time::Instant) -> Instant {
            Instant::from_nanos(self.0.load(Ordering::SeqCst))
        }
        fn runtime_instant(&self, _: Instant) -> tokio::time::Instant {
            tokio::time::Instant::now()
        }
    }

    fn cell() -> (ReadLease, Arc<AtomicU64>, Arc<HandClock>) {
        let applied = Arc::new(AtomicU64::new(0));
        let clock = Arc::new(HandClock::default());
        let lease = ReadLease::new(clock.clone(), applied.clone());
        (lease, applied, clock)
    }

    #[test]
    fn a_lease_serves_until_its_end_on_the_clock_and_not_once_revoked() {
        let (lease, _, clock) = cell();
        clock.0.store(1_000, Ordering::SeqCst);
        assert_eq!(lease.read_index_if_held(), None, "none before a grant");
        lease.grant(LogIndex(7), Instant::from_nanos(2_000));
        assert_eq!(lease.read_index_if_held(), Some(LogIndex(7)));
        clock.0.store(2_000, Ordering::SeqCst);
        assert_eq!(lease.read_index_if_held(), None, "ended on the clock");
        lease.grant(LogIndex(5), Instant::from_nanos(3_000));
        assert_eq!(
            lease.read_index_if_held(),
            Some(LogIndex(7)),
            "the read index never goes back"
        );
        lease.revoke();
        assert_eq!(lease.read_index_if_held(), None, "revoked");
    }

    #[tokio::test]
    async fn a_wait_resolves_once_applied_reaches_the_index_or_fails_on_close() {
        let (lease, applied, _) = cell();
        let lease = Arc::new(lease);
        applied.store(3, Ordering::Release);
        assert_eq!(lease.wait_applied(LogIndex(3)).await, Ok(LogIndex(3)));
        let waiter = tokio::spawn({
            let lease = lease.clone();
            async move { lease.wait_applied(LogIndex(5)).await }
        });
        tokio::task::yield_now().await;
        applied.store(4, Ordering::Release);
        lease.on_applied();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "4 is short of 5");
        applied.store(6, Ordering::Release);
        lease.on_applied();
        assert_eq!(waiter.await.unwrap(), Ok(LogIndex(6)));
        let waiter = tokio::spawn({
            let lease = lease.clone();
            async move { lease.wait_applied(LogIndex(9)).await }
        });
        tokio::task::yield_now().await;
        lease.close();
        assert_eq!(waiter.await.unwrap(), Err(Error::Shutdown));
        assert_eq!(lease.waiting.load(Ordering::SeqCst), 0, "uncounted");
    }
}
