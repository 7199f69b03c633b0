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
    /// Requests waiting for the next flush: (ticket, group, request).
    queue: Vec<(u64, u64, Request)>,
    /// Results of flushed requests, by ticket, until their member takes them.
    done: BTreeMap<u64, Result<Vec<Durable>, StorageError>>,
    next_ticket: u64,
    /// What recovery found, until each group's member takes it.
    recovered: BTreeMap<u64, Recovered>,
    /// Groups with a member attached.
    attached: BTreeSet<u64>,
    /// The error that stopped the log, if one did.
    failed: Option<StorageError>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a flush ends and when queue room frees.
    wake: Condvar,
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
            done: BTreeMap::new(),
            next_ticket: 0,
            recovered,
            attached: BTreeSet::new(),
            failed: None,
        };
        let shared = Shared {
            state: Mutex::new(state),
            wake: Condvar::new(),
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
    fn submit(&self, group: u64, request: Request) -> Result<Vec<Durable>, StorageError> {
        let shared = &*self.shared;
        let mut state = lock(shared);
        while state.queue.len() >= SHARED_LOG_QUEUE_MAX && state.failed.is_none() {
            state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(error) = &state.failed {
            return Err(error.clone());
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, group, request));
        loop {
            if let Some(result) = state.done.remove(&ticket) {
                return result;
            }
            if let Some(log) = state.log.take() {
                let batch = std::mem::take(&mut state.queue);
                drop(state);
                shared.wake.notify_all();
                let mut guard = FlushGuard {
                    shared,
                    log: Some(log),
                };
                let results = guard.flush(batch);
                state = guard.finish(results);
                continue;
            }
            if let Some(error) = &state.failed {
                return Err(error.clone());
            }
            state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The flusher's hold on the log: gives it back on every path, and marks
/// the log failed if the flush panicked, so that no member waits forever.
struct FlushGuard<'a> {
    shared: &'a Shared,
    log: Option<ServerLog>,
}

type Results = Vec<(u64, Result<Vec<Durable>, StorageError>)>;

impl<'a> FlushGuard<'a> {
    /// Submits every request of `batch`, then flushes once.
    fn flush(&mut self, batch: Vec<(u64, u64, Request)>) -> Results {
        let log = self.log.as_mut().expect("held until finish");
        let mut results = Vec::with_capacity(batch.len());
        let mut fatal = None;
        for (ticket, group, request) in batch {
            if fatal.is_some() {
                results.push((ticket, Ok(Vec::new())));
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
            results.push((ticket, result));
        }
        let flushed = match fatal {
            Some(error) => Err(error),
            None => log.flush(),
        };
        if let Err(error) = flushed {
            let mut state = lock(self.shared);
            state.failed = Some(error.clone());
            drop(state);
            for (_, result) in &mut results {
                *result = Err(error.clone());
            }
        }
        results
    }

    /// Gives the log back and publishes `results`.
    fn finish(mut self, results: Results) -> MutexGuard<'a, State> {
        let shared = self.shared;
        let mut state = lock(shared);
        state.log = self.log.take();
        state.done.extend(results);
        if let Some(error) = state.failed.clone() {
            // Requests queued behind a failed flush never run.
            for (ticket, _, _) in std::mem::take(&mut state.queue) {
                state.done.insert(ticket, Err(error.clone()));
            }
        }
        shared.wake.notify_all();
        state
    }
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            // Only a panic between take and finish gets here.
            let mut state = lock(self.shared);
            state.log = Some(log);
            state.failed = Some(StorageError::Panicked { during: "persist" });
            for (ticket, _, _) in std::mem::take(&mut state.queue) {
                let error = StorageError::Panicked { during: "persist" };
                state.done.insert(ticket, Err(error));
            }
            drop(state);
            self.shared.wake.notify_all();
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
