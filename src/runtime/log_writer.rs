//! The log writer task (braft's `LogManager` disk thread): executes the
//! core's writes in order, batching everything queued into one storage call
//! (one sync), and reports completions to the group.
//!
//! An async task calling synchronous storage, not an OS thread: madsim
//! refuses threads, and the same code must run in the simulator.

use tokio::sync::mpsc;

use super::group_storage::GroupStorage;
use crate::storage::{Durable, WriteOp};

/// A batch's outcome: completions in order, or the failure that stops the group.
pub(crate) type WriteResult = Result<Vec<Durable>, String>;

/// Runs until the group closes the queue; returns the storage.
pub(crate) async fn run_log_writer(
    mut storage: Box<dyn GroupStorage>,
    mut writes: mpsc::UnboundedReceiver<Vec<WriteOp>>,
    done: mpsc::UnboundedSender<WriteResult>,
) -> Box<dyn GroupStorage> {
    while let Some(mut batch) = writes.recv().await {
        while let Ok(more) = writes.try_recv() {
            batch.extend(more);
        }
        let latency = storage.device_latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
            // What queued meanwhile joins this batch, as on a real device.
            while let Ok(more) = writes.try_recv() {
                batch.extend(more);
            }
        }
        let result = storage.persist(batch).map_err(|e| e.to_string());
        let failed = result.is_err();
        if done.send(result).is_err() || failed {
            break;
        }
        // Let the group run between batches so completions flow back.
        tokio::task::yield_now().await;
    }
    storage
}
