//! ReadIndex (and lease reads outside the published lease) in batches: the
//! readers that arrive while no batch of their policy is with the group
//! task share one, which costs the group task one input and the core one
//! read; the batch resolves every reader with one notification, and each
//! then waits for its own state machine's apply (`ReadLease::wait_applied`)
//! instead of a hop through the apply task.
//!
//! **Why a batched read is linearizable.** A reader joins only a batch the
//! group task has not yet taken; the group task takes it (under the same
//! lock) before it asks the core for the read. So the core fixes the read
//! index, and confirms it with a round sent, after every reader of the
//! batch arrived: what one read of the core gives a reader asking at that
//! moment, it gives each of them. The core's `ReadReady { index }` comes
//! after every entry through `index` was handed to the apply task, and a
//! reader resolves only once the apply task published `applied ≥ index`.

use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{Notify, mpsc};

use super::error::Error;
use super::group::GroupInput;
use super::read_barrier::ReadWaiter;
use crate::core::{LogIndex, ReadPolicy};

/// One core read shared by every reader that joined it.
#[derive(Debug, Default)]
pub(crate) struct ReadBatch {
    /// The read index, or why there is none (set once).
    result: OnceLock<Result<LogIndex, Error>>,
    /// Woken once `result` is set.
    done: Notify,
}

impl ReadBatch {
    /// Resolves every reader of the batch (the first call wins).
    pub(crate) fn complete(&self, result: Result<LogIndex, Error>) {
        let _ = self.result.set(result);
        self.done.notify_waiters();
    }

    fn is_done(&self) -> bool {
        self.result.get().is_some()
    }

    /// The batch's read index, once the core confirmed it.
    async fn read_index(&self) -> Result<LogIndex, Error> {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result.clone();
            }
            done.await;
        }
    }
}

/// The group task's hold on a batch: dropped unanswered (the group task
/// ended without failing its reads, e.g. a panic), it fails the batch
/// rather than leave its readers waiting forever.
#[derive(Debug)]
pub(crate) struct BatchTicket(Arc<ReadBatch>);

impl BatchTicket {
    /// Resolves the batch's readers.
    pub(crate) fn complete(self, result: Result<LogIndex, Error>) {
        self.0.complete(result);
    }

    /// The batch.
    pub(crate) fn batch(&self) -> &Arc<ReadBatch> {
        &self.0
    }
}

impl Drop for BatchTicket {
    fn drop(&mut self) {
        if !self.0.is_done() {
            self.0.complete(Err(Error::Shutdown));
        }
    }
}

/// The batch of each policy that readers may still join (one not yet
/// taken by the group task), shared by the group's handles and its task.
#[derive(Debug, Default)]
pub(crate) struct ReadBatches {
    /// Open batches: `[ReadIndex, Lease]`.
    open: Mutex<[Option<Arc<ReadBatch>>; 2]>,
}

fn slot(policy: ReadPolicy) -> usize {
    match policy {
        ReadPolicy::Lease => 1,
        ReadPolicy::ReadIndex | ReadPolicy::Log => 0,
    }
}

impl ReadBatches {
    /// A reader's read index with `policy` (`ReadIndex` or `Lease`): joins
    /// the open batch, or opens one and hands it to the group task.
    ///
    /// # Errors
    /// The core's typed read failures, fanned out to the whole batch;
    /// `NotRunning` if the group stopped.
    pub(crate) async fn read_index(
        &self,
        policy: ReadPolicy,
        inbox: &mpsc::Sender<GroupInput>,
    ) -> Result<LogIndex, Error> {
        let (batch, opened) = {
            let mut open = self.open.lock().expect("read batches lock");
            match &open[slot(policy)] {
                Some(batch) if !batch.is_done() => (Arc::clone(batch), false),
                _ => {
                    let batch = Arc::new(ReadBatch::default());
                    open[slot(policy)] = Some(Arc::clone(&batch));
                    (batch, true)
                }
            }
        };
        if opened {
            Self::hand_over(policy, &batch, inbox);
        }
        batch.read_index().await
    }

    /// Gives a new batch to the group task without awaiting (a reader
    /// dropped mid-await would strand the readers that joined it): a full
    /// inbox is waited on by a task of its own.
    fn hand_over(policy: ReadPolicy, batch: &Arc<ReadBatch>, inbox: &mpsc::Sender<GroupInput>) {
        let input = GroupInput::Read {
            policy,
            waiter: ReadWaiter::Batch(BatchTicket(Arc::clone(batch))),
        };
        match inbox.try_send(input) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(input)) => {
                let (inbox, batch) = (inbox.clone(), Arc::clone(batch));
                tokio::spawn(async move {
                    if inbox.send(input).await.is_err() {
                        batch.complete(Err(Error::NotRunning));
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => batch.complete(Err(Error::NotRunning)),
        }
    }

    /// The group task takes `batch` (before it asks the core for its read):
    /// from now on readers open a new one.
    pub(crate) fn take(&self, policy: ReadPolicy, batch: &Arc<ReadBatch>) {
        let mut open = self.open.lock().expect("read batches lock");
        let slot = &mut open[slot(policy)];
        if slot.as_ref().is_some_and(|b| Arc::ptr_eq(b, batch)) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_share_an_open_batch_until_the_group_task_takes_it() {
        let batches = Arc::new(ReadBatches::default());
        let (inbox, mut group) = mpsc::channel(8);
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (batches, inbox) = (batches.clone(), inbox.clone());
                tokio::spawn(async move { batches.read_index(ReadPolicy::ReadIndex, &inbox).await })
            })
            .collect();
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let Ok(GroupInput::Read {
            waiter: ReadWaiter::Batch(first),
            ..
        }) = group.try_recv()
        else {
            panic!("one input for the batch");
        };
        assert!(group.try_recv().is_err(), "and only one");
        batches.take(ReadPolicy::ReadIndex, first.batch());
        let late = tokio::spawn({
            let (batches, inbox) = (batches.clone(), inbox.clone());
            async move { batches.read_index(ReadPolicy::ReadIndex, &inbox).await }
        });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        first.complete(Ok(LogIndex(4)));
        for reader in readers {
            assert_eq!(reader.await.unwrap(), Ok(LogIndex(4)));
        }
        assert!(
            !late.is_finished(),
            "a reader after the take waits for a new batch"
        );
        let Ok(GroupInput::Read {
            waiter: ReadWaiter::Batch(second),
            ..
        }) = group.try_recv()
        else {
            panic!("a second batch");
        };
        drop(second);
        // A hang guard only: a broken ticket fails here instead of hanging.
        let late = tokio::time::timeout(std::time::Duration::from_secs(10), late);
        assert_eq!(
            late.await.expect("the reader is resolved").unwrap(),
            Err(Error::Shutdown),
            "a batch dropped unanswered fails its readers"
        );
    }
}
