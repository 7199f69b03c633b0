//! The copying half (braft's `RemoteFileCopier` + `SnapshotCopier`): pulls
//! a snapshot's meta, then each file in chunks, from a server's file
//! service, streaming each chunk to disk as it arrives: memory holds at most
//! two chunks here (one being written while the next arrives; the rest of
//! the window's answers wait in the socket buffers), never a file. A file's
//! fsync runs while the next file is fetched.
//!
//! Up to `window` chunk requests are in flight on one connection; the server
//! answers them in order. Every chunk carries its CRC32C and every file is
//! checked whole against the meta, so wrong bytes are never returned. A lost
//! connection or an answer that does not come within `request_timeout` (a
//! partitioned stream can hold data forever) reconnects with backoff and
//! resumes at the first byte not yet written. The backoff is jittered and
//! capped well below the election timeout, like the peer transport's, and
//! starts again from its floor once a connection is made.
//!
//! Every file call (create, each chunk's write, the fsync at each file's
//! end) runs on the blocking pool: on a slow disk an fsync of a large file
//! takes seconds, and a write can wait on the kernel's dirty-page limit;
//! inline, either would hold up the worker's other tasks (the group's
//! heartbeats among them).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use super::connection::Connection;
use super::server::SERVE_CHUNK_BYTES_MAX;
use crate::core::LogId;
use crate::runtime::auth::Dialer;
use crate::runtime::backoff::Backoff;
use crate::runtime::blocking::{run_blocking_unwinding, start_blocking_unwinding};
use crate::runtime::group_id::GroupId;
use crate::runtime::throttle::Throttle;
use crate::runtime::transport::LocalNetwork;
use crate::runtime::wire::proto;
use crate::runtime::wire::proto::get_file_response::Error as WireError;
use crate::runtime::wire::snapshot_meta::{
    log_id_from_proto, log_id_to_proto, snapshot_meta_from_proto,
};
use crate::storage::{
    DetachedFileWriter, SnapshotFile, SnapshotMeta, SnapshotWriter, StorageError, SyncedFile,
};

/// Where a snapshot is copied from.
#[derive(Clone, Debug)]
pub enum SnapshotSource {
    /// A server reached over TCP, through an authenticated connection.
    Tcp {
        /// The server's Raft address.
        addr: SocketAddr,
        /// Opens the connection (as this server).
        dialer: Dialer,
    },
    /// A `NodeManager::local` server
    /// on an in-process network (feature `testing`).
    #[cfg_attr(not(feature = "testing"), doc(hidden))]
    Local {
        /// The network the server is on.
        network: LocalNetwork,
        /// The server's address on it.
        addr: SocketAddr,
    },
}

/// Tuning of one snapshot copy.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Bytes asked for per request. Servers cap a chunk at 1 MiB; keep it
    /// well under the server's throttle rate × `request_timeout`.
    pub chunk_bytes: u64,
    /// Give up on a connection attempt, or on an answer (counted from the
    /// previous answer or the request, whichever is later), after this long.
    pub request_timeout: Duration,
    /// Failures in a row (without a byte of progress between them) after
    /// which the copy fails.
    pub retries_max: u32,
    /// First delay before reconnecting; doubles up to `backoff_max`. Each
    /// wait is drawn from `[delay / 2, delay)`, so that copies spread apart.
    pub backoff_min: Duration,
    /// Largest delay before reconnecting: well below the election timeout,
    /// so that a copy resumes soon after its source is reachable again.
    pub backoff_max: Duration,
    /// Chunk requests in flight at once (at least 1).
    pub window: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            chunk_bytes: 1 << 20,
            request_timeout: Duration::from_secs(5),
            retries_max: 10,
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            window: 4,
        }
    }
}

/// Why a snapshot copy failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// The server could not be reached or the connection kept breaking.
    /// Retry later, or from another peer.
    #[error("snapshot copy failed {attempts} times in a row: {source}")]
    Io {
        /// Failures in a row.
        attempts: u32,
        /// The last one.
        #[source]
        source: io::Error,
    },
    /// The server kept not answering within `request_timeout`.
    #[error("no answer within {timeout:?}, {attempts} times in a row")]
    Timeout {
        /// Failures in a row.
        attempts: u32,
        /// The timeout.
        timeout: Duration,
    },
    /// The bytes received do not match their checksum (again after
    /// retrying), or a whole file does not match the meta.
    #[error("snapshot file {file:?} is corrupt at offset {offset}")]
    Corrupt {
        /// The file.
        file: String,
        /// Where the bad chunk starts (0 for a whole-file mismatch).
        offset: u64,
    },
    /// The server's newest snapshot is no longer the one being copied. The
    /// install fails; the leader offers its newer snapshot.
    #[error("the snapshot was replaced (newest: {newest:?})")]
    SnapshotReplaced {
        /// The server's newest snapshot, if any.
        newest: Option<LogId>,
    },
    /// The server serves no snapshots of this group.
    #[error("{0} has no snapshots on that server")]
    UnknownGroup(GroupId),
    /// The server's snapshot lacks a file its own meta lists.
    #[error("the server's snapshot has no file {file:?}")]
    NoSuchFile {
        /// The file.
        file: String,
    },
    /// The server kept failing to read its snapshot.
    #[error("the server failed to read its snapshot: {detail}")]
    ReadFailed {
        /// The server's explanation.
        detail: String,
    },
    /// Writing the copy to this node's disk failed (or a file name in the
    /// served meta is not a plain name).
    #[error("writing the copy locally failed: {0}")]
    Local(#[source] Arc<StorageError>),
    /// The copy was cancelled.
    #[error("snapshot copy cancelled")]
    Cancelled,
    /// The server's answers break the protocol (the request was refused as
    /// invalid, or the answers are not valid responses).
    #[error("malformed snapshot copy exchange: {0}")]
    Malformed(String),
}

/// Copies snapshot `snapshot` of `group` from `source` into `into` (a
/// writer from [`SnapshotStorage::begin`](crate::runtime::SnapshotStorage::begin)),
/// streaming each file to disk; returns the served meta and the writer, whose
/// files then match the meta, for the caller to check and commit.
///
/// Every request first takes its bytes from `throttle` (the receiving
/// server's, so that its incoming copies share one limit); the serving
/// server applies its own as well. Returns when every file is complete and
/// checked against the meta, or at the first error that retrying cannot
/// fix; `cancel` turning true stops it at once.
///
/// # Errors
/// [`CopyError`].
pub async fn fetch_snapshot(
    source: SnapshotSource,
    group: GroupId,
    snapshot: LogId,
    throttle: &Throttle,
    options: &CopyOptions,
    cancel: watch::Receiver<bool>,
    into: SnapshotWriter,
) -> Result<(SnapshotMeta, SnapshotWriter), CopyError> {
    let backoff = Backoff::new(
        (source_addr(&source), group, snapshot),
        options.backoff_min,
        options.backoff_max,
    );
    let mut copier = Copier {
        source,
        group,
        snapshot,
        throttle,
        options,
        chunk_bytes: options.chunk_bytes.clamp(1, SERVE_CHUNK_BYTES_MAX),
        conn: None,
        last_answer: Instant::now(),
        failures: 0,
        backoff,
    };
    tokio::select! {
        biased;
        () = cancelled(cancel) => Err(CopyError::Cancelled),
        result = copier.run(into) => result,
    }
}

fn source_addr(source: &SnapshotSource) -> SocketAddr {
    match source {
        SnapshotSource::Tcp { addr, .. } | SnapshotSource::Local { addr, .. } => *addr,
    }
}

/// Resolves once `cancel` is true; never if its sender is gone first.
async fn cancelled(mut cancel: watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A local write's failure as the copy's error.
fn local(error: StorageError) -> CopyError {
    CopyError::Local(Arc::new(error))
}

/// A failure that a retry may fix.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// The connection failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// No connection or answer within `request_timeout`.
    #[error("timed out")]
    Timeout,
    /// A chunk failed its checksum, or a file ended before its meta says.
    #[error("bad checksum in {file:?} at {offset}")]
    Corrupt { file: String, offset: u64 },
    /// The server said it failed to read its snapshot.
    #[error("server read failed: {0}")]
    ReadFailed(String),
    /// An answer that is not a valid response to the request.
    #[error("garbled answer: {0}")]
    Garbled(String),
}

/// How a step of the copy went wrong.
enum StepError {
    /// Give up now.
    Fatal(CopyError),
    /// Reconnect and resume (while the failure budget lasts).
    Retry(Failure),
}

impl From<Failure> for StepError {
    fn from(f: Failure) -> Self {
        StepError::Retry(f)
    }
}

impl From<io::Error> for StepError {
    fn from(e: io::Error) -> Self {
        StepError::Retry(Failure::Io(e))
    }
}

/// A chunk request sent and not yet answered.
struct Inflight {
    offset: u64,
    count: u64,
    /// Sent past a short chunk: its answer is read and dropped.
    stale: bool,
    sent: Instant,
}

/// A chunk's write under way on the blocking pool; it gives the writer back.
type Writing = std::pin::Pin<
    Box<dyn std::future::Future<Output = (DetachedFileWriter, Result<(), StorageError>)> + Send>,
>;

/// A finished file's fsync under way on the blocking pool.
type Syncing =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<SyncedFile, StorageError>> + Send>>;

struct Copier<'a> {
    source: SnapshotSource,
    group: GroupId,
    snapshot: LogId,
    throttle: &'a Throttle,
    options: &'a CopyOptions,
    /// Bytes asked per request: the option, lowered to what the server
    /// sends at most once a short chunk shows it.
    chunk_bytes: u64,
    /// Open connection; `None` after a failure.
    conn: Option<Connection>,
    /// When the open connection last answered (or was opened).
    last_answer: Instant,
    /// Failures since the last progress.
    failures: u32,
    /// Waits between attempts; reset by a new connection or progress.
    backoff: Backoff,
}

impl Copier<'_> {
    async fn run(
        &mut self,
        mut into: SnapshotWriter,
    ) -> Result<(SnapshotMeta, SnapshotWriter), CopyError> {
        let meta = loop {
            match self.fetch_meta().await {
                Ok(meta) => break meta,
                Err(StepError::Fatal(e)) => return Err(e),
                Err(StepError::Retry(f)) => self.failed(f).await?,
            }
        };
        let total: u64 = meta.files.iter().map(|f| f.len).sum();
        tracing::debug!(group = %self.group, snapshot = %self.snapshot, files = meta.files.len(), total, "copying snapshot");
        // One file's fsync runs while the next file is fetched: the disk
        // writes one file back while the network fills the next.
        let mut syncing: Option<(&SnapshotFile, Syncing)> = None;
        for file in &meta.files {
            let name = file.name.clone();
            let (writer, created) = run_blocking_unwinding(move || {
                let created = into.create_detached_file(&name);
                (into, created)
            })
            .await;
            into = writer;
            let fetched = match created.map_err(local) {
                Ok(created) => self.fetch_file(file, created).await,
                Err(e) => Err(e),
            };
            let target = match fetched {
                Ok(target) => target,
                Err(e) => {
                    // The previous file's fsync ends before the error is
                    // reported: the next install's `begin` must not clear
                    // the directory under a write still running. (An
                    // aborted copy cannot wait: its fsync finishes alone,
                    // on a file the next `begin` has unlinked.)
                    if let Some((_, sync)) = syncing.take() {
                        let _ = sync.await;
                    }
                    return Err(e);
                }
            };
            if let Some((done, sync)) = syncing.take() {
                into.add_synced(sync.await.map_err(local)?);
                tracing::debug!(group = %self.group, file = %done.name, len = done.len, "snapshot file copied");
            }
            let sync = start_blocking_unwinding(move || target.sync());
            syncing = Some((file, Box::pin(sync)));
        }
        if let Some((done, sync)) = syncing {
            into.add_synced(sync.await.map_err(local)?);
            tracing::debug!(group = %self.group, file = %done.name, len = done.len, "snapshot file copied");
        }
        Ok((meta, into))
    }

    fn request(&self, name: &str, offset: u64, count: u64) -> proto::GetFileRequest {
        proto::GetFileRequest {
            group_id: self.group.0,
            snapshot: Some(log_id_to_proto(self.snapshot)),
            name: name.to_owned(),
            offset,
            count,
        }
    }

    async fn fetch_meta(&mut self) -> Result<SnapshotMeta, StepError> {
        let mut conn = self.connection().await?;
        let timeout_ = self.options.request_timeout;
        timeout(timeout_, conn.send(self.request("", 0, 0)))
            .await
            .map_err(|_| Failure::Timeout)??;
        let response = timeout(timeout_, conn.recv())
            .await
            .map_err(|_| Failure::Timeout)??;
        self.check(&response, "")?;
        let meta = response
            .meta
            .ok_or_else(|| Failure::Garbled("an answer without the meta".into()))?;
        let meta = snapshot_meta_from_proto(meta)
            .map_err(|e| StepError::Fatal(CopyError::Malformed(e.to_string())))?;
        if meta.last_included != self.snapshot {
            return Err(StepError::Fatal(CopyError::Malformed(format!(
                "asked for the meta of {}, got {}",
                self.snapshot, meta.last_included
            ))));
        }
        self.conn = Some(conn);
        self.progressed();
        Ok(meta)
    }

    /// Streams `file` into `target`, which it returns holding exactly the
    /// file's bytes (checked whole against the meta's CRC32C), not synced.
    /// A chunk is written on the blocking pool while the next one is
    /// received: memory holds the window's chunks and one being written.
    async fn fetch_file(
        &mut self,
        file: &SnapshotFile,
        target: DetachedFileWriter,
    ) -> Result<DetachedFileWriter, CopyError> {
        let mut inflight = VecDeque::new();
        // The writer when no write holds it.
        let mut target = Some(target);
        let mut writing: Option<Writing> = None;
        // Bytes handed to the writer (written once `writing` is done).
        let mut queued = 0;
        // Where the next request starts. Invariant: `queued ≤ next`, and
        // the requests in flight that are not stale cover [queued, next)
        // in order.
        let mut next = 0;
        while queued < file.len {
            let Some(mut conn) = self.conn.take() else {
                match self.connection().await {
                    Ok(conn) => self.conn = Some(conn),
                    Err(StepError::Fatal(e)) => return Err(e),
                    Err(StepError::Retry(f)) => self.failed(f).await?,
                }
                continue;
            };
            let write = writing.take();
            let (round, wrote) = tokio::join!(
                self.round(&mut conn, file, queued, &mut inflight, &mut next),
                async move {
                    match write {
                        Some(write) => Some(write.await),
                        None => None,
                    }
                }
            );
            if let Some((writer, written)) = wrote {
                target = Some(writer);
                written.map_err(local)?;
            }
            match round {
                Ok(None) => self.conn = Some(conn),
                Ok(Some((chunk, crc))) => {
                    self.conn = Some(conn);
                    queued += chunk.len() as u64;
                    let mut writer = target.take().expect("no write in progress");
                    writing = Some(Box::pin(start_blocking_unwinding(move || {
                        let written = writer.write_checked_at_end(&chunk, crc);
                        (writer, written)
                    })));
                    self.progressed();
                }
                Err(StepError::Fatal(e)) => return Err(e),
                Err(StepError::Retry(f)) => {
                    // Resume at the first byte not yet handed to the
                    // writer, on a new connection.
                    inflight.clear();
                    next = queued;
                    self.failed(f).await?;
                }
            }
        }
        if let Some(write) = writing {
            let (writer, written) = write.await;
            written.map_err(local)?;
            target = Some(writer);
        }
        if !inflight.is_empty() {
            // Stale answers still due would be misread as the next file's.
            self.conn = None;
        }
        let target = target.expect("no write in progress");
        if target.crc() != file.crc {
            return Err(CopyError::Corrupt {
                file: file.name.clone(),
                offset: 0,
            });
        }
        Ok(target)
    }

    /// Tops the window up, then takes one answer: the chunk that goes next
    /// into the file (`written` bytes long so far), checked, with its
    /// CRC32C, if it is one.
    async fn round(
        &mut self,
        conn: &mut Connection,
        file: &SnapshotFile,
        written: u64,
        inflight: &mut VecDeque<Inflight>,
        next: &mut u64,
    ) -> Result<Option<(Bytes, u32)>, StepError> {
        let options = self.options;
        while inflight.len() < options.window.max(1) && *next < file.len {
            let count = self.chunk_bytes.min(file.len - *next);
            self.throttle.acquire(count).await;
            let request = self.request(&file.name, *next, count);
            timeout(options.request_timeout, conn.send(request))
                .await
                .map_err(|_| Failure::Timeout)??;
            inflight.push_back(Inflight {
                offset: *next,
                count,
                stale: false,
                sent: Instant::now(),
            });
            *next += count;
        }
        let asked = inflight.pop_front().expect("the window holds a request");
        // madsim has no `timeout_at`.
        let deadline = asked.sent.max(self.last_answer) + options.request_timeout;
        let response = timeout(
            deadline.saturating_duration_since(Instant::now()),
            conn.recv(),
        )
        .await
        .map_err(|_| Failure::Timeout)??;
        self.last_answer = Instant::now();
        self.check(&response, &file.name)?;
        if asked.stale {
            return Ok(None);
        }
        let offset = written;
        assert_eq!(asked.offset, offset, "answers come in request order");
        let len = response.data.len() as u64;
        if len > asked.count {
            return Err(Failure::Garbled(format!("{len} bytes for {} asked", asked.count)).into());
        }
        let corrupt = Failure::Corrupt {
            file: file.name.clone(),
            offset,
        };
        // An empty chunk before the end: the file is shorter than its meta.
        if len == 0 || crc32c::crc32c(&response.data) != response.crc {
            return Err(corrupt.into());
        }
        tracing::trace!(group = %self.group, file = %file.name, offset, len, "snapshot chunk");
        if len < asked.count {
            // The server capped the chunk: what is in flight starts past
            // the gap, so drop those answers and ask again from here.
            inflight.iter_mut().for_each(|r| r.stale = true);
            *next = offset + len;
            self.chunk_bytes = len;
        }
        Ok(Some((response.data, response.crc)))
    }

    /// Maps an answer's error to a step error.
    fn check(&self, response: &proto::GetFileResponse, file: &str) -> Result<(), StepError> {
        let fatal = |e| Err(StepError::Fatal(e));
        match WireError::try_from(response.error) {
            Ok(WireError::None) if response.group_id == self.group.0 => Ok(()),
            Ok(WireError::None) => {
                Err(Failure::Garbled(format!("an answer for group {}", response.group_id)).into())
            }
            Ok(WireError::UnknownGroup) => fatal(CopyError::UnknownGroup(self.group)),
            Ok(WireError::SnapshotNotFound) => fatal(CopyError::SnapshotReplaced {
                newest: response.newest.map(log_id_from_proto),
            }),
            Ok(WireError::NoSuchFile) => fatal(CopyError::NoSuchFile { file: file.into() }),
            Ok(WireError::ReadFailed) => Err(Failure::ReadFailed(response.detail.clone()).into()),
            Ok(WireError::BadRequest) => fatal(CopyError::Malformed(response.detail.clone())),
            Err(_) => fatal(CopyError::Malformed(format!(
                "unknown error code {}",
                response.error
            ))),
        }
    }

    /// The open connection, or a new one.
    async fn connection(&mut self) -> Result<Connection, StepError> {
        if let Some(conn) = self.conn.take() {
            return Ok(conn);
        }
        let conn = timeout(self.options.request_timeout, Connection::open(&self.source))
            .await
            .map_err(|_| Failure::Timeout)??;
        self.last_answer = Instant::now();
        // The source is reachable again: the next failure (if any) waits
        // from the floor. `failures` still counts toward `retries_max`.
        self.backoff.reset();
        Ok(conn)
    }

    fn progressed(&mut self) {
        self.failures = 0;
        self.backoff.reset();
    }

    /// Drops the connection and waits before the next attempt; the error
    /// once failures in a row exceed `retries_max`.
    async fn failed(&mut self, failure: Failure) -> Result<(), CopyError> {
        self.conn = None;
        self.failures += 1;
        let attempts = self.failures;
        if attempts > self.options.retries_max {
            return Err(match failure {
                Failure::Io(source) => CopyError::Io { attempts, source },
                Failure::Timeout => CopyError::Timeout {
                    attempts,
                    timeout: self.options.request_timeout,
                },
                Failure::Corrupt { file, offset } => CopyError::Corrupt { file, offset },
                Failure::ReadFailed(detail) => CopyError::ReadFailed { detail },
                Failure::Garbled(detail) => CopyError::Malformed(detail),
            });
        }
        tracing::debug!(group = %self.group, snapshot = %self.snapshot, attempts, %failure, "snapshot copy interrupted; resuming");
        tokio::time::sleep(self.backoff.next_delay()).await;
        Ok(())
    }
}
