//! How a group reaches its durable storage (braft's `LogManager` disk
//! thread): the core's writes execute in order, everything queued batched
//! into one storage call (one sync), and completions go back to the group.
//!
//! Storage that may block (a disk) gets its own log writer task, and each
//! batch's call runs through [`run_blocking`], so a slow sync stalls only
//! this group. Storage that never blocks (memory) is called by the group
//! task itself, in the wake-up that produced the batch: no hand-off to a
//! writer task and back, so a memory group's write crosses no thread.
//!
//! Reads of evicted entries (`Action::LoadEntries`) take the same path, in
//! order after the writes queued before them: the storage is owned by one
//! task, and a read never sees a half-applied batch.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::blocking::run_blocking;
use super::group_storage::GroupStorage;
use super::metrics::GroupMetrics;
use crate::core::{EntriesLoad, Entry};
use crate::storage::{Durable, StorageError, WriteOp};

/// A batch's outcome: completions in order, or the failure that stops the group.
pub(crate) type WriteResult = Result<Vec<Durable>, StorageError>;

/// A load's outcome: the entries read back, or why not (the group goes on).
pub(crate) type LoadResult = Result<Vec<Entry>, StorageError>;

/// What the group asks of its writer task.
pub(crate) enum StorageRequest {
    /// Writes to persist, in order.
    Write(Vec<WriteOp>),
    /// Entries to read back.
    Load(EntriesLoad),
}

/// What the writer task answers.
pub(crate) enum StorageDone {
    /// A batch's completions (or the failure that stops the group).
    Written(WriteResult),
    /// A load's entries.
    Loaded(EntriesLoad, LoadResult),
}

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
        writes: mpsc::UnboundedSender<StorageRequest>,
        results: mpsc::UnboundedReceiver<StorageDone>,
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
            WritePath::Task { writes, results } => {
                match writes.send(StorageRequest::Write(batch)) {
                    Ok(()) => None,
                    // The writer ended (only a failed or panicking call
                    // ends it early); its failure is still queued, behind
                    // answers the group has not taken yet (loads, earlier
                    // batches: moot, the group stops).
                    Err(_) => Some(loop {
                        match results.try_recv() {
                            Ok(StorageDone::Written(Err(e))) => break Err(e),
                            Ok(_) => {}
                            Err(_) => break Err(PANICKED),
                        }
                    }),
                }
            }
        }
    }

    /// Hands `load` to storage: `Some` with its outcome when read at once
    /// (inline), `None` when it will come through [`WritePath::completed`]
    /// (or never, if the writer task ended: the group stops then anyway).
    pub(crate) fn load(&mut self, load: EntriesLoad) -> Option<LoadResult> {
        match self {
            WritePath::Inline { storage, .. } => {
                let call = std::panic::AssertUnwindSafe(|| storage.read_entries(&load));
                Some(match std::panic::catch_unwind(call) {
                    Ok(result) => result.map_err(StorageError::from_failure),
                    Err(_) => Err(LOAD_PANICKED),
                })
            }
            WritePath::Task { writes, .. } => {
                let _ = writes.send(StorageRequest::Load(load));
                None
            }
        }
    }

    /// The writer task's next answer; `None` once it ended. Only for
    /// [`WritePath::Task`] (pending forever otherwise).
    pub(crate) async fn completed(&mut self) -> Option<StorageDone> {
        match self {
            WritePath::Task { results, .. } => results.recv().await,
            WritePath::Inline { .. } => std::future::pending().await,
        }
    }
}

/// Runs until the group closes the queue or storage fails.
async fn run_write_task(
    mut storage: Box<dyn GroupStorage>,
    mut writes: mpsc::UnboundedReceiver<StorageRequest>,
    done: mpsc::UnboundedSender<StorageDone>,
    metrics: Arc<GroupMetrics>,
) {
    // Loads that arrived behind writes of a batch: read after it, so each
    // read sees every write queued before it. At most one per peer.
    let mut loads = Vec::new();
    loop {
        for load in loads.drain(..) {
            let (returned, result) = read(storage, load).await;
            if done.send(result).is_err() {
                return;
            }
            let Some(returned) = returned else { return };
            storage = returned;
        }
        let Some(request) = writes.recv().await else {
            return;
        };
        let mut batch = match request {
            StorageRequest::Write(batch) => batch,
            StorageRequest::Load(load) => {
                loads.push(load);
                continue;
            }
        };
        take_queued(&mut writes, &mut batch, &mut loads);
        // Only a simulated device has a latency of its own.
        #[cfg(feature = "testing")]
        let latency = storage.device_latency();
        #[cfg(not(feature = "testing"))]
        let latency = std::time::Duration::ZERO;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
            // What queued meanwhile joins this batch, as on a real device.
            take_queued(&mut writes, &mut batch, &mut loads);
        }
        let entries = metrics.enabled.then(|| entries_in(&batch));
        let start = entries.map(|_| tokio::time::Instant::now());
        let (returned, result) = match storage.persist_queued(batch) {
            Ok(completions) => {
                let result = completions.await.map_err(StorageError::from_failure);
                (Some(storage), result)
            }
            Err(batch) => persist(storage, batch).await,
        };
        if let (Some(entries), Some(start)) = (entries, start) {
            metrics.observe_persist(start.elapsed().as_nanos() as u64, entries);
        }
        let failed = result.is_err();
        if done.send(StorageDone::Written(result)).is_err() || failed {
            break;
        }
        let Some(returned) = returned else { break };
        storage = returned;
        // Let the group run between batches so completions flow back.
        tokio::task::yield_now().await;
    }
}

/// Moves the queued writes into `batch` and the queued loads into `loads`.
fn take_queued(
    queue: &mut mpsc::UnboundedReceiver<StorageRequest>,
    batch: &mut Vec<WriteOp>,
    loads: &mut Vec<EntriesLoad>,
) {
    while let Ok(request) = queue.try_recv() {
        match request {
            StorageRequest::Write(more) => batch.extend(more),
            StorageRequest::Load(load) => loads.push(load),
        }
    }
}

/// One load's storage call, off the runtime's workers. Gives the storage
/// back unless the call panicked.
async fn read(
    mut storage: Box<dyn GroupStorage>,
    load: EntriesLoad,
) -> (Option<Box<dyn GroupStorage>>, StorageDone) {
    let job = run_blocking(move || {
        let result = storage
            .read_entries(&load)
            .map_err(StorageError::from_failure);
        (storage, load, result)
    });
    match job.await {
        Ok((storage, load, result)) => (Some(storage), StorageDone::Loaded(load, result)),
        // The load is gone with the panic; the group stops on the
        // writer's end (its next submit finds the queue closed).
        Err(_) => (None, StorageDone::Written(Err(LOAD_PANICKED))),
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

/// A `read_entries` that panicked.
const LOAD_PANICKED: StorageError = StorageError::Panicked {
    during: "read_entries",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{LogIndex, NodeId};
    use crate::runtime::{MemStorage, SnapshotStorage, StorageFailure};
    use crate::storage::Recovered;

    /// Memory storage whose writes fail and whose reads find nothing.
    struct FailingWrites(MemStorage);

    impl GroupStorage for FailingWrites {
        fn recover(&mut self) -> Result<Recovered, StorageFailure> {
            self.0.recover()
        }
        fn persist(&mut self, _: Vec<WriteOp>) -> Result<Vec<Durable>, StorageFailure> {
            Err(Box::new(std::io::Error::other("the disk is gone")))
        }
        fn snapshots(&self) -> Arc<dyn SnapshotStorage> {
            self.0.snapshots()
        }
        fn persist_may_block(&self) -> bool {
            true
        }
        fn reads_entries(&self) -> bool {
            true
        }
        fn read_entries(&mut self, _: &EntriesLoad) -> Result<Vec<Entry>, StorageFailure> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_submit_after_the_writer_failed_reports_its_failure_behind_a_load() {
        let storage = Box::new(FailingWrites(MemStorage::new()));
        let (mut path, task) = WritePath::start(storage, Arc::new(GroupMetrics::new(false)));
        let load = EntriesLoad {
            id: 1,
            peer: NodeId(2),
            lo: LogIndex(1),
            hi: LogIndex(2),
            count_max: 1,
            bytes_max: 0,
        };
        assert!(path.load(load).is_none());
        assert!(
            path.submit(vec![WriteOp::Compact(Default::default())])
                .is_none()
        );
        // The writer answers the load, fails the write and ends; the
        // group has taken neither answer yet.
        task.expect("a writer task").await.expect("the writer ends");
        let result = path.submit(vec![WriteOp::Compact(Default::default())]);
        assert!(
            matches!(&result, Some(Err(StorageError::Other(e))) if e.to_string() == "the disk is gone"),
            "{result:?}"
        );
    }
}
