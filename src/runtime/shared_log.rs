//! [`SharedLog`]: one server log ([`ServerLog`]) for every group member of
//! a server, and [`SharedLogStorage`], the [`GroupStorage`] of one member
//! backed by it.
//!
//! Group commit, one flusher at a time: a member's log writer queues its
//! batch (`persist_queued`) and awaits the answer; if no flush is running,
//! one starts on the blocking pool. The flusher takes every queued batch,
//! writes them with one write and one `fdatasync`, answers each member,
//! and goes on while more is queued; batches that arrive meanwhile share
//! the next flush. A thousand members with a write in flight thus hold no
//! thread each and are each woken once, by their own answer: a blocking
//! `persist` per member (one pool thread each, all woken by one condition
//! variable at every flush) spent the server's CPU in the scheduler
//! (issue 15). A direct `persist` (tests, tools) queues the same way and
//! blocks its thread for its answer, flushing itself if no flush runs;
//! its queue is bounded (it waits for room).
//!
//! Failure is fail-stop for the server log, as for a group's own log: an
//! I/O error (or a panic) in a flush fails every batch of it and every
//! later call, since nothing can be vouched durable any more. A batch the
//! log refuses on its own (an append that does not continue the group's
//! log) fails only its member.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::blocking::{run_blocking, run_blocking_unwinding};
use super::group_id::GroupId;
use super::group_storage::{GroupStorage, PersistFuture, SNAPSHOT_DIR_NAME, StorageFailure};
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

/// One member's queued request: (group, request, where its answer goes).
type Queued = (u64, Request, Reply);

type Outcome = Result<Vec<Durable>, StorageError>;

/// Where a queued request's outcome goes.
enum Reply {
    /// A thread blocked in [`SharedLog::submit`] (a direct `persist`).
    Thread(Arc<Waiter>),
    /// A log writer task awaiting [`SharedLog::submit_queued`].
    Task(oneshot::Sender<Outcome>),
}

impl Reply {
    fn send(self, outcome: Outcome) {
        match self {
            Reply::Thread(waiter) => waiter.done(outcome),
            // A writer that stopped waiting (its group stopped) needs none.
            Reply::Task(sender) => drop(sender.send(outcome)),
        }
    }
}

/// Where a thread waits for its own request's outcome, woken once.
#[derive(Default)]
struct Waiter {
    outcome: Mutex<Option<Outcome>>,
    posted: Condvar,
}

impl Waiter {
    fn done(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        self.posted.notify_one();
    }

    fn wait(&self) -> Outcome {
        let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = outcome.take() {
                return outcome;
            }
            outcome = self.posted.wait(outcome).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// What the shared log's flushes carried so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedLogStats {
    /// Flushes run (each one write and one `fdatasync`, or none if empty).
    pub flushes: u64,
    /// Members' batches those flushes carried.
    pub batches: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Flushes and batches so far (under no lock: read for metrics).
    flushes: AtomicU64,
    batches: AtomicU64,
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
            flushes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            fs,
            dir: dir.to_path_buf(),
        };
        Ok(SharedLog {
            shared: Arc::new(shared),
        })
    }

    /// What the flushes carried so far: how well group commit batches.
    pub fn stats(&self) -> SharedLogStats {
        SharedLogStats {
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
        }
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

    /// Queues `request` for `group` and returns once a flush carried it
    /// (the calling thread flushes if no flush runs).
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
        state
            .queue
            .push((group, request, Reply::Thread(Arc::clone(&waiter))));
        match state.log.take() {
            Some(log) => {
                drop(state);
                self.flush_until_empty(log);
            }
            None => drop(state),
        }
        waiter.wait()
    }

    /// Queues `request` for `group` from a log writer task, which awaits
    /// the answer without holding a thread; if no flush runs, one starts on
    /// the blocking pool. No room is waited for: each member's writer has
    /// at most one request here, so the members bound the queue.
    fn submit_queued(&self, group: u64, request: Request) -> oneshot::Receiver<Outcome> {
        let (sender, receiver) = oneshot::channel();
        let mut state = lock(&self.shared);
        if let Some(error) = &state.failed {
            let _ = sender.send(Err(error.clone()));
            return receiver;
        }
        state.queue.push((group, request, Reply::Task(sender)));
        if let Some(log) = state.log.take() {
            drop(state);
            let this = self.clone();
            // A panic in the flush is answered by `FlushGuard`.
            tokio::spawn(run_blocking(move || this.flush_until_empty(log)));
        }
        receiver
    }

    /// The flusher's loop: flushes what is queued, again and again, until
    /// the queue is empty, and only then gives the log back (under the same
    /// lock that queues requests, so none is left without a flusher).
    fn flush_until_empty(&self, log: ServerLog) {
        let shared = &*self.shared;
        let mut log = log;
        loop {
            let mut state = lock(shared);
            if state.queue.is_empty() {
                state.log = Some(log);
                return;
            }
            let batch = std::mem::take(&mut state.queue);
            drop(state);
            shared.room.notify_all();
            let mut guard = FlushGuard {
                shared,
                log: Some(log),
                replies: Vec::with_capacity(batch.len()),
            };
            let results = guard.flush(batch);
            match guard.finish(results) {
                Some(next) => log = next,
                None => return,
            }
        }
    }
}

/// The flusher's hold on the log and on its batch's replies: answers every
/// reply and gives the log back on every path, and marks the log failed if
/// the flush panicked, so that no member waits forever.
struct FlushGuard<'a> {
    shared: &'a Shared,
    log: Option<ServerLog>,
    replies: Vec<Reply>,
}

impl FlushGuard<'_> {
    /// Submits every request of `batch`, then flushes once; the outcomes
    /// are in the order of `self.replies`.
    fn flush(&mut self, batch: Vec<Queued>) -> Vec<Outcome> {
        // Every reply first: a panic below must still answer them all.
        let mut requests = Vec::with_capacity(batch.len());
        for (group, request, reply) in batch {
            self.replies.push(reply);
            requests.push((group, request));
        }
        let shared = self.shared;
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        let carried = requests.len() as u64;
        shared.batches.fetch_add(carried, Ordering::Relaxed);
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

    /// Answers the batch's replies. Returns the log to flush on with if
    /// more is queued and the log has not failed; gives it back otherwise
    /// (failing what is queued behind a failure: it never runs).
    fn finish(mut self, results: Vec<Outcome>) -> Option<ServerLog> {
        for (reply, result) in std::mem::take(&mut self.replies).into_iter().zip(results) {
            reply.send(result);
        }
        let mut state = lock(self.shared);
        match state.failed.clone() {
            Some(error) => {
                state.log = self.log.take();
                let refused = std::mem::take(&mut state.queue);
                drop(state);
                self.shared.room.notify_all();
                for (_, _, reply) in refused {
                    reply.send(Err(error.clone()));
                }
                None
            }
            None if state.queue.is_empty() => {
                state.log = self.log.take();
                None
            }
            None => self.log.take(),
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
            let batch = self.replies.drain(..);
            for reply in batch.chain(queued.into_iter().map(|(_, _, r)| r)) {
                reply.send(Err(error()));
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

    fn persist_queued(&mut self, ops: Vec<WriteOp>) -> Result<PersistFuture, Vec<WriteOp>> {
        let answer = self.log.submit_queued(self.group, Request::Write(ops));
        Ok(Box::pin(async move {
            match answer.await {
                Ok(outcome) => Ok(outcome?),
                Err(_) => Err("the shared log's flush ended without an answer".into()),
            }
        }))
    }

    fn snapshots(&self) -> Arc<dyn SnapshotStorage> {
        self.snapshots.clone()
    }
}
