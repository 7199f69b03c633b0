//! How a group reaches its durable storage (braft's `LogManager` disk
//! thread): the core's writes execute in order, everything queued batched
//! into one storage call (one sync), and completions go back to the group.
//!
//! Storage that may block (a disk) gets its own log writer task, and each
//! batch's call runs through [`run_blocking`], so a slow sync stalls only
//! this group. Storage that never blocks (memory) is called by the group
//! task itself, in the wake-up that produced the batch: no hand-off to a
//! writer task and back, so a memory group's write crosses no thread.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::blocking::run_blocking;
use super::group_storage::GroupStorage;
use super::metrics::GroupMetrics;
use crate::storage::{Durable, StorageError, WriteOp};

/// A batch's outcome: completions in order, or the failure that stops the group.
pub(crate) type WriteResult = Result<Vec<Durable>, StorageError>;

/// The group task's path to its storage: called inline when the storage
/// never blocks, else through the writer task below.
pub(crate) enum WritePath {
    /// Storage that never blocks, called in the group task.
    Inline {
        storage: Box<dyn GroupStorage>,
        metrics: Arc<GroupMetrics>,
    },
    /// A log writer task: batches in, completions out.
    Task {
        writes: mpsc::UnboundedSender<Vec<WriteOp>>,
        results: mpsc::UnboundedReceiver<WriteResult>,
    },
}

impl WritePath {
    /// The group's end of `storage`, and the writer task if one was
    /// spawned (to be joined before the storage counts as quiet).
    pub(crate) fn start(
        storage: Box<dyn GroupStorage>,
        metrics: Arc<GroupMetrics>,
    ) -> (Self, Option<JoinHandle<()>>) {
        if !storage.persist_may_block() {
            return (WritePath::Inline { storage, metrics }, None);
        }
        let (writes, queue) = mpsc::unbounded_channel();
        let (done, results) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_write_task(storage, queue, done, metrics));
        (WritePath::Task { writes, results }, Some(task))
    }

    /// Whether completions arrive through [`WritePath::completed`].
    pub(crate) fn is_task(&self) -> bool {
        matches!(self, WritePath::Task { .. })
    }

    /// Hands `batch` to storage: `Some` with its outcome when it was
    /// persisted at once (inline), `None` when its completions will come
    /// through [`WritePath::completed`].
    pub(crate) fn submit(&mut self, batch: Vec<WriteOp>) -> Option<WriteResult> {
        match self {
            WritePath::Inline { storage, metrics } => {
                let entries = metrics.enabled.then(|| entries_in(&batch));
                let start = entries.map(|_| tokio::time::Instant::now());
                // As the blocking pool would, a panic fails the batch (and
                // the group) instead of ending the group task unannounced.
                let call = std::panic::AssertUnwindSafe(|| storage.persist(batch));
                let result = match std::panic::catch_unwind(call) {
                    Ok(result) => result.map_err(StorageError::from_failure),
                    Err(_) => Err(PANICKED),
                };
                if let (Some(entries), Some(start)) = (entries, start) {
                    metrics.observe_persist(start.elapsed().as_nanos() as u64, entries);
                }
                Some(result)
            }
            WritePath::Task { writes, results } => match writes.send(batch) {
                Ok(()) => None,
                // The writer ended (only a panicking call ends it early);
                // its failure, if any, is still queued.
                Err(_) => Some(results.try_recv().unwrap_or(Err(PANICKED))),
            },
        }
    }

    /// The writer task's next completion; `None` once it ended. Only for
    /// [`WritePath::Task`] (pending forever otherwise).
    pub(crate) async fn completed(&mut self) -> Option<WriteResult> {
        match self {
            WritePath::Task { results, .. } => results.recv().await,
            WritePath::Inline { .. } => std::future::pending().await,
        }
    }
}

/// Runs until the group closes the queue or storage fails.
async fn run_write_task(
    mut storage: Box<dyn GroupStorage>,
    mut writes: mpsc::UnboundedReceiver<Vec<WriteOp>>,
    done: mpsc::UnboundedSender<WriteResult>,
    metrics: Arc<GroupMetrics>,
) {
    while let Some(mut batch) = writes.recv().await {
        while let Ok(more) = writes.try_recv() {
            batch.extend(more);
        }
        // Only a simulated device has a latency of its own.
        #[cfg(feature = "testing")]
        let latency = storage.device_latency();
        #[cfg(not(feature = "testing"))]
        let latency = std::time::Duration::ZERO;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
            // What queued meanwhile joins this batch, as on a real device.
            while let Ok(more) = writes.try_recv() {
                batch.extend(more);
            }
        }
        let entries = metrics.enabled.then(|| entries_in(&batch));
        let start = entries.map(|_| tokio::time::Instant::now());
        let (returned, result) = persist(storage, batch).await;
        if let (Some(entries), Some(start)) = (entries, start) {
            metrics.observe_persist(start.elapsed().as_nanos() as u64, entries);
        }
        let failed = result.is_err();
        if done.send(result).is_err() || failed {
            break;
        }
        let Some(returned) = returned else { break };
        storage = returned;
        // Let the group run between batches so completions flow back.
        tokio::task::yield_now().await;
    }
}

/// The entries a batch appends.
fn entries_in(batch: &[WriteOp]) -> u64 {
    batch
        .iter()
        .map(|op| match op {
            WriteOp::Entries(entries) => entries.len() as u64,
            _ => 0,
        })
        .sum()
}

/// One batch's storage call, off the runtime's workers. Gives the storage
/// back unless the call panicked.
async fn persist(
    mut storage: Box<dyn GroupStorage>,
    batch: Vec<WriteOp>,
) -> (Option<Box<dyn GroupStorage>>, WriteResult) {
    let job = run_blocking(move || {
        let result = storage.persist(batch).map_err(StorageError::from_failure);
        (storage, result)
    });
    match job.await {
        Ok((storage, result)) => (Some(storage), result),
        Err(_) => (None, Err(PANICKED)),
    }
}

/// A `persist` that panicked (inline or on the blocking pool).
const PANICKED: StorageError = StorageError::Panicked { during: "persist" };
