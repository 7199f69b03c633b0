//! ReadIndex reads in batches: one core read per round of readers, not one
//! per reader, on the leader and on followers alike.
//!
//! A `ReadIndex` barrier (and a `Lease` barrier the published lease cannot
//! serve) does not hop through the group task. The reader
//!
//! 1. loads `started`, the number `s` of batches the group task has started;
//! 2. raises `wanted` and, only if it flipped it, wakes the group task
//!    (one message a batch, not a reader);
//! 3. waits until a batch numbered above `s` finished, and takes the newest
//!    outcome: a read index the state machine has applied, or the batch's
//!    typed, retryable error.
//!
//! The group task keeps one batch in its core at a time (on a follower:
//! one request to the leader). When none is in flight and `wanted` is up,
//! it lowers `wanted`, raises `started` to `n` and only then asks its core
//! for one `ReadIndex` read: batch `n`. The core does
//! what it does for any read (the leader fixes the commit index as the read
//! index once this term's first entry committed and confirms it with a
//! heartbeat round sent after; a follower asks its leader for one index and
//! a leader change fails it). The outcome goes to the apply task, queued
//! behind every entry the core handed out before it, and the apply task
//! publishes it once applied has reached the index, then wakes the readers
//! (the group task wakes nobody: a round's readers waking from it would
//! delay its next round, which is what sank the earlier batching try).
//!
//! **Why a batched read is never stale.** A reader must see every write
//! acknowledged before it began. Let `w` be such a write: the group task
//! committed it, and the apply task applied it, before the reader loaded
//! `started`. Batch `n > s` was counted in `started` after that load
//! (`started` only grows, and the reader saw `s < n`), and the group task
//! asked its core for the batch's read after counting it. Had the group
//! task asked before committing `w`, the count would have happened before
//! `w`'s commit, hence before its acknowledgement and the reader's load,
//! which would then have seen `n`. So the core's read was asked after `w`
//! committed, and the core's rules (`core::read`) make its index cover
//! every write committed before it was asked — `w` included — and refuse it
//! (`LeadershipLost`, `NotLeader`, `Timeout`) when leadership cannot be
//! confirmed after that point. Any batch above `s` qualifies, so a reader
//! that wakes late may take a newer outcome; an outcome older than the
//! newest published one is dropped (it would not serve the newer batch's
//! readers). The apply task publishes an
//! index only once it applied through it, and the state only grows.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

use tokio::sync::Notify;

use super::error::Error;
use super::read_lease::wait_until;
use crate::core::LogIndex;

/// The published outcome of a batch that failed (the error is in
/// `failure`).
const FAILED: u64 = u64::MAX;

/// The batches a group's readers share: what they ask for, and what the
/// group and apply tasks publish.
///
/// Invariant: `finished <= started`; `outcome` is the outcome of a batch
/// numbered at least `finished` (stored before `finished` is raised).
pub(crate) struct ReadBatches {
    /// Batches started: raised by the group task before it asks its core
    /// for the batch's read.
    started: AtomicU64,
    /// A reader waits for a batch not started yet.
    wanted: AtomicBool,
    /// The newest batch whose outcome is published.
    finished: AtomicU64,
    /// The newest outcome: a read index already applied, or `FAILED`.
    outcome: AtomicU64,
    /// The newest failure, for an outcome of `FAILED`.
    failure: Mutex<Error>,
    /// Readers waiting for a batch: the apply task wakes only when some do.
    waiting: AtomicUsize,
    /// Woken when a batch finishes, or the group stops.
    finished_moved: Notify,
    /// The group stopped: no batch will finish.
    closed: AtomicBool,
}

impl ReadBatches {
    /// No batch started.
    pub(crate) fn new() -> Self {
        ReadBatches {
            started: AtomicU64::new(0),
            wanted: AtomicBool::new(false),
            finished: AtomicU64::new(0),
            outcome: AtomicU64::new(0),
            failure: Mutex::new(Error::Shutdown),
            waiting: AtomicUsize::new(0),
            finished_moved: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// A reader: the batch it must wait for (any batch numbered at least
    /// this), and whether it must wake the group task (it raised `wanted`).
    pub(crate) fn join(&self) -> (u64, bool) {
        let first_usable = self.started.load(Ordering::SeqCst) + 1;
        let wake = !self.wanted.load(Ordering::SeqCst) && !self.wanted.swap(true, Ordering::SeqCst);
        (first_usable, wake)
    }

    /// The group task, with no batch in flight: the number of the batch to
    /// ask the core for now, if a reader wants one. Counted before the
    /// core is asked (see the module doc).
    pub(crate) fn start_if_wanted(&self) -> Option<u64> {
        if !self.wanted.load(Ordering::SeqCst) || !self.wanted.swap(false, Ordering::SeqCst) {
            return None;
        }
        Some(self.started.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// The apply task: batch `batch` finished with `outcome` (an index
    /// already applied, or a failure); wakes its readers.
    pub(crate) fn finish(&self, batch: u64, outcome: Result<LogIndex, Error>) {
        // A newer batch's outcome is out (an older one resolved late): it
        // serves the older batch's readers, the older one's not the newer's.
        if batch <= self.finished.load(Ordering::SeqCst) {
            return;
        }
        match outcome {
            Ok(index) => self.outcome.store(index.0, Ordering::SeqCst),
            Err(error) => {
                *self.failure.lock().expect("read batch failure lock") = error;
                self.outcome.store(FAILED, Ordering::SeqCst);
            }
        }
        self.finished.store(batch, Ordering::SeqCst);
        // Pairs with the fence in `wait`: either the reader sees the batch
        // finished or this sees the reader counted.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.finished_moved.notify_waiters();
        }
    }

    /// The group stopped: waiting readers give up.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.finished_moved.notify_waiters();
    }

    /// Resolves with the outcome of the newest finished batch once one
    /// numbered at least `batch` finished.
    ///
    /// # Errors
    /// The batch's failure, or `Shutdown` if the group stopped first.
    pub(crate) async fn wait(&self, batch: u64) -> Result<LogIndex, Error> {
        let finished = || self.outcome_if_finished(batch);
        wait_until(&self.finished_moved, &self.waiting, &self.closed, finished).await
    }

    fn outcome_if_finished(&self, batch: u64) -> Option<Result<LogIndex, Error>> {
        if self.finished.load(Ordering::SeqCst) < batch {
            return None;
        }
        // Stored before `finished`: this batch's outcome or a newer one's,
        // and a newer batch serves this reader as well.
        Some(match self.outcome.load(Ordering::SeqCst) {
            FAILED => Err(self
                .failure
                .lock()
                .expect("read batch failure lock")
                .clone()),
            index => Ok(LogIndex(index)),
        })
    }
}

impl Default for ReadBatches {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ReadBatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBatches")
            .field("started", &self.started)
            .field("finished", &self.finished)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn reader(
        batches: &Arc<ReadBatches>,
        batch: u64,
    ) -> tokio::task::JoinHandle<Result<LogIndex, Error>> {
        let batches = batches.clone();
        tokio::spawn(async move { batches.wait(batch).await })
    }

    #[tokio::test]
    async fn a_reader_waits_for_a_batch_started_after_it_joined() {
        let batches = Arc::new(ReadBatches::new());
        assert_eq!(
            batches.join(),
            (1, true),
            "the first reader wakes the group"
        );
        assert_eq!(batches.join(), (1, false), "the next one joins quietly");
        let early = reader(&batches, 1);
        assert_eq!(batches.start_if_wanted(), Some(1));
        assert_eq!(batches.start_if_wanted(), None, "nobody asked since");
        // Batch 1's read index may predate this reader: it needs batch 2.
        let (batch, wake) = batches.join();
        assert_eq!((batch, wake), (2, true));
        let late = reader(&batches, batch);
        tokio::task::yield_now().await;
        batches.finish(1, Ok(LogIndex(5)));
        assert_eq!(early.await.unwrap(), Ok(LogIndex(5)));
        tokio::task::yield_now().await;
        assert!(!late.is_finished(), "batch 1 does not serve a later reader");
        assert_eq!(batches.start_if_wanted(), Some(2));
        batches.finish(2, Ok(LogIndex(6)));
        assert_eq!(late.await.unwrap(), Ok(LogIndex(6)));
    }

    #[tokio::test]
    async fn an_older_batch_finishing_late_serves_no_reader_of_a_newer_one() {
        let batches = Arc::new(ReadBatches::new());
        batches.join();
        assert_eq!(batches.start_if_wanted(), Some(1));
        let (batch, _) = batches.join();
        assert_eq!(batches.start_if_wanted(), Some(2));
        let lost = Error::LeadershipLost { leader: None };
        batches.finish(batch, Err(lost.clone()));
        batches.finish(1, Ok(LogIndex(5)));
        assert_eq!(reader(&batches, batch).await.unwrap(), Err(lost.clone()));
        assert_eq!(
            reader(&batches, 1).await.unwrap(),
            Err(lost),
            "batch 2 serves batch 1's readers too"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_its_readers_and_a_close_fails_the_rest() {
        let batches = Arc::new(ReadBatches::new());
        let (batch, _) = batches.join();
        let failing = reader(&batches, batch);
        assert_eq!(batches.start_if_wanted(), Some(1));
        let lost = Error::LeadershipLost { leader: None };
        batches.finish(1, Err(lost.clone()));
        assert_eq!(failing.await.unwrap(), Err(lost));
        let (batch, _) = batches.join();
        let stranded = reader(&batches, batch);
        tokio::task::yield_now().await;
        batches.close();
        assert_eq!(stranded.await.unwrap(), Err(Error::Shutdown));
        assert_eq!(batches.waiting.load(Ordering::SeqCst), 0, "uncounted");
    }
}
