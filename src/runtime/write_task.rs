//! The log writer task (braft's `LogManager` disk thread): executes the
//! core's writes in order, batching everything queued into one storage call
//! (one sync), and reports completions to the group.
//!
//! An async task; each batch's storage call runs through [`run_blocking`]
//! (unless the storage never blocks), so a slow sync stalls only this group.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::blocking::run_blocking;
use super::group_storage::GroupStorage;
use super::metrics::GroupMetrics;
use crate::storage::{Durable, StorageError, WriteOp};

/// A batch's outcome: completions in order, or the failure that stops the group.
pub(crate) type WriteResult = Result<Vec<Durable>, StorageError>;

/// Runs until the group closes the queue or storage fails.
pub(crate) async fn run_write_task(
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

/// One batch's storage call: off the runtime's workers if it may block,
/// inline otherwise. Gives the storage back unless the call panicked.
async fn persist(
    mut storage: Box<dyn GroupStorage>,
    batch: Vec<WriteOp>,
) -> (Option<Box<dyn GroupStorage>>, WriteResult) {
    if !storage.persist_may_block() {
        // As the blocking pool would, a panic fails the batch (and the
        // group) instead of ending this task unannounced.
        let call = std::panic::AssertUnwindSafe(|| storage.persist(batch));
        return match std::panic::catch_unwind(call) {
            Ok(result) => (Some(storage), result.map_err(StorageError::from_failure)),
            Err(_) => (None, Err(PANICKED)),
        };
    }
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
