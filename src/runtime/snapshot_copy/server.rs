//! The serving half (braft's `FileService`): answers `GetFileRequest`s for
//! the groups registered on a server, from their [`SnapshotStorage`], paced
//! by the server's [`Throttle`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::runtime::blocking::run_blocking;
use crate::runtime::group_id::GroupId;
use crate::runtime::snapshot_storage::{SnapshotReadError, SnapshotStorage};
use crate::runtime::throttle::Throttle;
use crate::runtime::wire::proto;
use crate::runtime::wire::proto::get_file_response::Error as WireError;
use crate::runtime::wire::snapshot_meta::{
    log_id_from_proto, log_id_to_proto, snapshot_meta_to_proto,
};
use crate::storage::SnapshotMeta;
use crate::storage::StorageError;

/// The largest chunk one response carries: larger requests get a short
/// chunk, and the reader asks again from where it ended.
pub const SERVE_CHUNK_BYTES_MAX: u64 = 1 << 20;

/// Room left in a frame for everything in a response but the data.
const RESPONSE_OVERHEAD_BYTES: u64 = 4 << 10;

/// An in-process server's file service, as a [`LocalNetwork`] holds it:
/// `None` once the server is gone.
///
/// [`LocalNetwork`]: crate::runtime::LocalNetwork
pub(crate) type FileHandler = Arc<
    dyn Fn(
            proto::GetFileRequest,
        ) -> Pin<Box<dyn Future<Output = Option<proto::GetFileResponse>> + Send>>
        + Send
        + Sync,
>;

/// The snapshot storages a server serves, by group, and its throttle.
pub(crate) struct FileService {
    groups: Mutex<BTreeMap<GroupId, Arc<dyn SnapshotStorage>>>,
    /// The meta of the snapshot each group's copiers asked for last: a
    /// chunk request is checked against it before it may draw on the
    /// throttle, without a disk read per chunk.
    metas: Mutex<BTreeMap<GroupId, SnapshotMeta>>,
    throttle: Throttle,
    /// Invariant: ≤ `SERVE_CHUNK_BYTES_MAX`, and a response of this many
    /// data bytes fits the server's frame limit.
    chunk_bytes_max: u64,
}

impl FileService {
    /// A service with no groups, whose chunks fit frames of `frame_bytes_max`.
    pub(crate) fn new(throttle: Throttle, frame_bytes_max: u32) -> FileService {
        let fit = u64::from(frame_bytes_max).saturating_sub(RESPONSE_OVERHEAD_BYTES);
        FileService {
            groups: Mutex::default(),
            metas: Mutex::default(),
            throttle,
            chunk_bytes_max: fit.clamp(1, SERVE_CHUNK_BYTES_MAX),
        }
    }

    /// The server-wide throttle.
    pub(crate) fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Serves `group`'s snapshots from `storage` (replacing any earlier one).
    pub(crate) fn serve(&self, group: GroupId, storage: Arc<dyn SnapshotStorage>) {
        self.groups
            .lock()
            .expect("file service lock")
            .insert(group, storage);
    }

    /// Stops serving `group`'s snapshots.
    pub(crate) fn stop(&self, group: GroupId) {
        self.groups
            .lock()
            .expect("file service lock")
            .remove(&group);
        self.metas.lock().expect("file service lock").remove(&group);
    }

    /// Answers one request, adding the data bytes sent to `served`.
    pub(crate) async fn handle(
        &self,
        request: proto::GetFileRequest,
        served: &AtomicU64,
    ) -> proto::GetFileResponse {
        let group = GroupId(request.group_id);
        let storage = self
            .groups
            .lock()
            .expect("file service lock")
            .get(&group)
            .cloned();
        let Some(storage) = storage else {
            return refusal(
                group,
                WireError::UnknownGroup,
                format!("{group} has no snapshots served here"),
            );
        };
        let Some(snapshot) = request.snapshot.map(log_id_from_proto) else {
            return refusal(group, WireError::BadRequest, "no snapshot id".into());
        };
        if request.name.is_empty() {
            return match self.meta(group, &storage, snapshot).await {
                Ok(meta) => proto::GetFileResponse {
                    group_id: group.0,
                    meta: Some(snapshot_meta_to_proto(&meta)),
                    ..proto::GetFileResponse::default()
                },
                Err(refused) => refused,
            };
        }
        // Check the request before it may draw on the throttle, which every
        // copy shares: a request for nothing must not delay real ones.
        let meta = match self.meta(group, &storage, snapshot).await {
            Ok(meta) => meta,
            Err(refused) => return refused,
        };
        let Some(file) = meta.files.iter().find(|f| f.name == request.name) else {
            return refusal(
                group,
                WireError::NoSuchFile,
                format!("snapshot {snapshot} has no file {:?}", request.name),
            );
        };
        if request.offset > file.len {
            return refusal(
                group,
                WireError::BadRequest,
                "offset past the end of the file".into(),
            );
        }
        let count = request.count.min(self.chunk_bytes_max);
        // Pace before reading: the throttle guards the disk as well as the
        // link (braft's SnapshotThrottle sits on the reader too). What is
        // drawn is what will be sent, at most the rest of the file.
        self.throttle
            .acquire(count.min(file.len - request.offset))
            .await;
        let (name, offset) = (request.name.clone(), request.offset);
        let read = run_blocking(move || storage.read_chunk(snapshot, &name, offset, count))
            .await
            .unwrap_or(Err(SnapshotReadError::Storage(StorageError::Panicked {
                during: "reading a snapshot chunk",
            })));
        match read {
            Ok(data) => {
                served.fetch_add(data.len() as u64, Ordering::Relaxed);
                chunk(group, data, count)
            }
            Err(SnapshotReadError::NotFound { newest, .. }) => not_found(group, snapshot, newest),
            Err(SnapshotReadError::NoSuchFile(name)) => refusal(
                group,
                WireError::NoSuchFile,
                format!("snapshot {snapshot} has no file {name:?}"),
            ),
            Err(e) => refusal(group, WireError::ReadFailed, e.to_string()),
        }
    }
}

impl FileService {
    /// The meta of `snapshot` of `group`, from the cache or the storage;
    /// a refusal if it is not the newest there.
    async fn meta(
        &self,
        group: GroupId,
        storage: &Arc<dyn SnapshotStorage>,
        snapshot: crate::core::LogId,
    ) -> Result<SnapshotMeta, proto::GetFileResponse> {
        let cached = self
            .metas
            .lock()
            .expect("file service lock")
            .get(&group)
            .cloned();
        if let Some(meta) = cached.filter(|m| m.last_included == snapshot) {
            return Ok(meta);
        }
        let storage = Arc::clone(storage);
        // Off the workers: a save under way holds the storage's lock.
        let latest = run_blocking(move || storage.latest().map_err(|e| e.to_string()))
            .await
            .and_then(|latest| latest);
        match latest {
            Ok(Some(meta)) if meta.last_included == snapshot => {
                let mut metas = self.metas.lock().expect("file service lock");
                metas.insert(group, meta.clone());
                Ok(meta)
            }
            Ok(newest) => Err(not_found(group, snapshot, newest.map(|m| m.last_included))),
            Err(e) => Err(refusal(group, WireError::ReadFailed, e)),
        }
    }
}

impl std::fmt::Debug for FileService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileService")
            .field("throttle", &self.throttle)
            .field("chunk_bytes_max", &self.chunk_bytes_max)
            .finish_non_exhaustive()
    }
}

fn chunk(group: GroupId, data: Bytes, count: u64) -> proto::GetFileResponse {
    proto::GetFileResponse {
        group_id: group.0,
        crc: crc32c::crc32c(&data),
        // Short of what was asked (after the cap): the file ended.
        eof: (data.len() as u64) < count,
        data,
        ..proto::GetFileResponse::default()
    }
}

fn not_found(
    group: GroupId,
    asked: crate::core::LogId,
    newest: Option<crate::core::LogId>,
) -> proto::GetFileResponse {
    proto::GetFileResponse {
        newest: newest.map(log_id_to_proto),
        ..refusal(
            group,
            WireError::SnapshotNotFound,
            format!("snapshot {asked} is not the newest here (newest: {newest:?})"),
        )
    }
}

fn refusal(group: GroupId, error: WireError, detail: String) -> proto::GetFileResponse {
    proto::GetFileResponse {
        group_id: group.0,
        error: error as i32,
        detail,
        ..proto::GetFileResponse::default()
    }
}
