//! [`SharedLog`]: one server log ([`ServerLog`]) for every group member of
//! a server, and [`SharedLogStorage`], the [`GroupStorage`] of one member
//! backed by it.
//!
//! Group commit, one writer at a time: a member's `persist` (on the
//! blocking pool) queues its batch, then either waits for a flush to carry
//! it or, when no flush is running, becomes the flusher: it takes every
//! queued batch, writes them with one write and one `fdatasync`, and hands
//! each member its completions. Batches that arrive while a flush runs
//! share the next one. The queue is bounded: a member waits for room.
//! Each member waits on its own [`Waiter`], woken once, for its result or
//! for its turn to flush: with a thousand members in flight, one condition
//! variable woken for every flush cost a thousand wake-ups a flush (the
//! server's CPU went to the scheduler: issue 15).
//!
//! Failure is fail-stop for the server log, as for a group's own log: an
//! I/O error (or a panic) in a flush fails every batch of it and every
//! later call, since nothing can be vouched durable any more. A batch the
//! log refuses on its own (an append that does not continue the group's
//! log) fails only its member.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::blocking::run_blocking_unwinding;
use super::group_id::GroupId;
use super::group_storage::{GroupStorage, SNAPSHOT_DIR_NAME, StorageFailure};
use super::snapshot_storage::{DiskSnapshots, SnapshotStorage};
use crate::storage::{
    Durable, FileSystem, Recovered, ServerLog, ServerLogOptions, StorageError, WriteOp,
};

/// The server log's subdirectory of a server's storage directory.
pub const SHARED_LOG_DIR_NAME: &str = "log";
/// The subdirectory holding each group's snapshot directory.
pub const GROUPS_DIR_NAME: &str = "groups";
/// Batches that may wait for a flush; a member waits for room beyond.
pub const SHARED_LOG_QUEUE_MAX: usize = 4096;

/// One queued request of a member.
enum Request {
    /// A group's ops.
    Write(Vec<WriteOp>),
    /// A group gone for good.
    Remove,
}

/// What the members share, under one lock.
///
/// Invariant: `log` is `None` exactly while a flusher holds it.
struct State {
    log: Option<ServerLog>,
    /// Requests waiting for the next flush, each with its member's waiter.
    queue: Vec<Queued>,
    /// What recovery found, until each group's member takes it.
    recovered: BTreeMap<u64, Recovered>,
    /// Groups with a member attached.
    attached: BTreeSet<u64>,
    /// The error that stopped the log, if one did.
    failed: Option<StorageError>,
}

/// One member's queued request: (group, request, where its member waits).
type Queued = (u64, Request, Arc<Waiter>);

type Outcome = Result<Vec<Durable>, StorageError>;

/// Where one member waits for its request's outcome, or for its turn to
/// flush the queue (when the flush before ended with requests queued).
#[derive(Default)]
struct Waiter {
    slot: Mutex<Slot>,
    posted: Condvar,
}

#[derive(Default)]
enum Slot {
    #[default]
    Waiting,
    /// The log is free and requests are queued: take them.
    Lead,
    Done(Outcome),
}

impl Waiter {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts the request's outcome.
    fn done(&self, outcome: Outcome) {
        *self.slot() = Slot::Done(outcome);
        self.posted.notify_one();
    }

    /// Asks the member to flush, unless its outcome is already posted
    /// (then whoever flushed it passes the turn on at its own finish).
    fn lead(&self) {
        let mut slot = self.slot();
        if matches!(*slot, Slot::Waiting) {
            *slot = Slot::Lead;
            self.posted.notify_one();
        }
    }

    /// Waits for a post and takes it.
    fn wait(&self) -> Slot {
        let mut slot = self.slot();
        while matches!(*slot, Slot::Waiting) {
            slot = self.posted.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
        std::mem::take(&mut *slot)
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when queue room frees.
    room: Condvar,
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
}

/// A server's shared log: open it once, then give each group member a
/// [`SharedLogStorage`] from [`storage`](Self::storage). Cloning shares it.
#[derive(Clone)]
pub struct SharedLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLog")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // Every critical section leaves `State` whole; a panic is caught in
    // the flush (see `FlushGuard`), so a poisoned lock is still usable.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedLog {
    /// Opens (creating) a server's storage in `dir`: the server log in
    /// `dir/log` (holding its lock), each group's snapshots in
    /// `dir/groups/{group}/snapshot`; recovers every group. Runs on the
    /// blocking pool.
    ///
    /// # Errors
    /// As [`ServerLog::open`].
    pub async fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: ServerLogOptions,
    ) -> Result<SharedLog, StorageError> {
        let dir = dir.to_path_buf();
        run_blocking_unwinding(move || Self::open_blocking(fs, &dir, options)).await
    }

    /// [`open`](Self::open) on the calling thread.
    ///
    /// # Errors
    /// As [`ServerLog::open`].
    pub fn open_blocking(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: ServerLogOptions,
    ) -> Result<SharedLog, StorageError> {
        let (log, recovered) =
            ServerLog::open(Arc::clone(&fs), &dir.join(SHARED_LOG_DIR_NAME), options)?;
        let state = State {
            log: Some(log),
            queue: Vec::new(),
            recovered,
            attached: BTreeSet::new(),
            failed: None,
        };
        let shared = Shared {
            state: Mutex::new(state),
            room: Condvar::new(),
            fs,
            dir: dir.to_path_buf(),
        };
        Ok(SharedLog {
            shared: Arc::new(shared),
        })
    }

    /// The groups the log holds records of (recovered or written since).
    pub fn groups(&self) -> Vec<GroupId> {
        let state = lock(&self.shared);
        let mut ids: BTreeSet<u64> = state.recovered.keys().copied().collect();
        ids.extend(state.attached.iter().copied());
        if let Some(log) = &state.log {
            ids.extend(log.groups());
        }
        ids.into_iter().map(GroupId).collect()
    }

    /// The storage of `group`'s member on this server: what the log holds
    /// of it, and its snapshot directory. One member per group at a time.
    ///
    /// # Errors
    /// [`StorageError::Locked`] while another member of `group` holds its
    /// storage; snapshot directory errors.
    pub fn storage(&self, group: GroupId) -> Result<SharedLogStorage, StorageError> {
        let snapshot_dir = self.group_dir(group).join(SNAPSHOT_DIR_NAME);
        let snapshots = Arc::new(DiskSnapshots::open(
            Arc::clone(&self.shared.fs),
            &snapshot_dir,
        )?);
        let mut state = lock(&self.shared);
        if !state.attached.insert(group.0) {
            return Err(StorageError::Locked { path: snapshot_dir });
        }
        let recovered = state.recovered.remove(&group.0).unwrap_or_default();
        Ok(SharedLogStorage {
            log: self.clone(),
            group: group.0,
            recovered: Some(recovered),
            snapshots,
        })
    }

    fn group_dir(&self, group: GroupId) -> PathBuf {
        self.shared
            .dir
            .join(GROUPS_DIR_NAME)
            .join(group.0.to_string())
    }

    /// Forgets `group` for good (its member removed from this server and
    /// stopped): a durable tombstone releases its records, so that the
    /// segments it alone kept are reclaimed, and its snapshot directory is
    /// removed. Blocks for a flush.
    ///
    /// # Errors
    /// [`StorageError::Locked`] while a member of `group` is attached; the
    /// log's failure.
    pub fn remove_group_blocking(&self, group: GroupId) -> Result<(), StorageError> {
        {
            let mut state = lock(&self.shared);
            if state.attached.contains(&group.0) {
                let path = self.group_dir(group);
                return Err(StorageError::Locked { path });
            }
            state.recovered.remove(&group.0);
        }
        self.submit(group.0, Request::Remove)?;
        let dir = self.group_dir(group);
        match self.shared.fs.remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("remove_dir_all", dir, e)),
        }
    }

    /// [`remove_group_blocking`](Self::remove_group_blocking) on the
    /// blocking pool.
    ///
    /// # Errors
    /// As [`remove_group_blocking`](Self::remove_group_blocking).
    pub async fn remove_group(&self, group: GroupId) -> Result<(), StorageError> {
        let log = self.clone();
        run_blocking_unwinding(move || log.remove_group_blocking(group)).await
    }

    /// How many segment files the log keeps now (while no flush runs).
    pub fn segment_count(&self) -> Option<usize> {
        lock(&self.shared)
            .log
            .as_ref()
            .map(ServerLog::segment_count)
    }

    /// Queues `request` for `group` and returns once a flush carried it.
    fn submit(&self, group: u64, request: Request) -> Outcome {
        let shared = &*self.shared;
        let waiter = Arc::new(Waiter::default());
        let mut state = lock(shared);
        while state.queue.len() >= SHARED_LOG_QUEUE_MAX && state.failed.is_none() {
            state = shared.room.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(error) = &state.failed {
            return Err(error.clone());
        }
        state.queue.push((group, request, Arc::clone(&waiter)));
        loop {
            if !state.queue.is_empty()
                && let Some(log) = state.log.take()
            {
                let batch = std::mem::take(&mut state.queue);
                drop(state);
                shared.room.notify_all();
                let mut guard = FlushGuard {
                    shared,
                    log: Some(log),
                    waiters: Vec::with_capacity(batch.len()),
                };
                let results = guard.flush(batch);
                guard.finish(results);
            } else {
                drop(state);
            }
            match waiter.wait() {
                Slot::Done(outcome) => return outcome,
                Slot::Lead | Slot::Waiting => state = lock(shared),
            }
        }
    }
}

/// The flusher's hold on the log and on the waiters of its batch: gives
/// the log back and answers every waiter on every path, and marks the log
/// failed if the flush panicked, so that no member waits forever.
struct FlushGuard<'a> {
    shared: &'a Shared,
    log: Option<ServerLog>,
    waiters: Vec<Arc<Waiter>>,
}

impl<'a> FlushGuard<'a> {
    /// Submits every request of `batch`, then flushes once; the outcomes
    /// are in the order of `self.waiters`.
    fn flush(&mut self, batch: Vec<Queued>) -> Vec<Outcome> {
        // Every waiter first: a panic below must still answer them all.
        let mut requests = Vec::with_capacity(batch.len());
        for (group, request, waiter) in batch {
            self.waiters.push(waiter);
            requests.push((group, request));
        }
        let log = self.log.as_mut().expect("held until finish");
        let mut results = Vec::with_capacity(requests.len());
        let mut fatal = None;
        for (group, request) in requests {
            if fatal.is_some() {
                results.push(Ok(Vec::new()));
                continue;
            }
            let result = match request {
                Request::Write(ops) => log.submit(group, ops),
                Request::Remove => log.remove_group(group).map(|()| Vec::new()),
            };
            // An I/O error leaves the log's state unknown: fatal for all.
            if let Err(e @ (StorageError::Io { .. } | StorageError::Corruption { .. })) = &result {
                fatal = Some(e.clone());
            }
            results.push(result);
        }
        let flushed = match fatal {
            Some(error) => Err(error),
            None => log.flush(),
        };
        if let Err(error) = flushed {
            lock(self.shared).failed = Some(error.clone());
            for result in &mut results {
                *result = Err(error.clone());
            }
        }
        results
    }

    /// Gives the log back, answers the batch's waiters, and passes the
    /// turn to flush to the first member queued meanwhile.
    fn finish(mut self, results: Vec<Outcome>) {
        let waiters = std::mem::take(&mut self.waiters);
        let mut state = lock(self.shared);
        state.log = self.log.take();
        let failed = state.failed.clone();
        // Requests queued behind a failed flush never run.
        let refused = match &failed {
            Some(_) => std::mem::take(&mut state.queue),
            None => Vec::new(),
        };
        let next = state.queue.first().map(|(_, _, w)| Arc::clone(w));
        drop(state);
        for (waiter, result) in waiters.iter().zip(results) {
            waiter.done(result);
        }
        if let Some(error) = failed {
            self.shared.room.notify_all();
            for (_, _, waiter) in refused {
                waiter.done(Err(error.clone()));
            }
        }
        if let Some(next) = next {
            next.lead();
        }
    }
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            // Only a panic between take and finish gets here.
            let error = || StorageError::Panicked { during: "persist" };
            let mut state = lock(self.shared);
            state.log = Some(log);
            state.failed = Some(error());
            let queued = std::mem::take(&mut state.queue);
            drop(state);
            self.shared.room.notify_all();
            let batch = self.waiters.drain(..);
            for waiter in batch.chain(queued.into_iter().map(|(_, _, w)| w)) {
                waiter.done(Err(error()));
            }
        }
    }
}

/// One group member's storage in its server's [`SharedLog`].
pub struct SharedLogStorage {
    log: SharedLog,
    group: u64,
    recovered: Option<Recovered>,
    snapshots: Arc<DiskSnapshots>,
}

impl std::fmt::Debug for SharedLogStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLogStorage")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Drop for SharedLogStorage {
    fn drop(&mut self) {
        lock(&self.log.shared).attached.remove(&self.group);
    }
}

impl GroupStorage for SharedLogStorage {
    fn recover(&mut self) -> Result<Recovered, StorageFailure> {
        self.recovered
            .take()
            .ok_or_else(|| "storage already recovered".into())
    }

    fn persist(&mut self, ops: Vec<WriteOp>) -> Result<Vec<Durable>, StorageFailure> {
        Ok(self.log.submit(self.group, Request::Write(ops))?)
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStorage> {
        self.snapshots.clone()
    }
}
