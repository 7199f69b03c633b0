//! Typed storage errors.
//!
//! Storage failure is fail-stop: the runtime marks the group failed and stops
//! it (braft's `NodeImpl::on_error`). Every variant names what went wrong in
//! structured fields so that callers never match on message strings.
//! Errors are `Clone` (an I/O error is shared behind an `Arc`), so that the
//! runtime hands the same typed error to every request a failure ends.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::core::LogIndex;

/// An error of the durable storage layer.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file-system call failed. Remedy: check the disk and permissions;
    /// the data already on disk is untouched by the failed call.
    #[error("i/o error during {op} on {path}: {source}")]
    Io {
        /// The operation that failed, e.g. `"sync_data"` or `"rename"`.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The underlying error (shared, so that the error is `Clone`).
        #[source]
        source: Arc<io::Error>,
    },
    /// Another instance (this process or another) has the storage directory
    /// open. Remedy: stop it first; two writers would corrupt the log.
    #[error("storage directory {path} is in use by another instance")]
    Locked {
        /// The locked directory.
        path: PathBuf,
    },
    /// Stored bytes failed validation. The data may have been acknowledged, so
    /// it is never skipped silently. Remedy: restore this node from its peers.
    #[error("corrupt storage in {path} at offset {offset}: {kind}")]
    Corruption {
        /// The file (or directory) holding the bad bytes.
        path: PathBuf,
        /// The byte offset of the bad record within `path` (0 for whole-file problems).
        offset: u64,
        /// What was wrong.
        kind: CorruptionKind,
    },
    /// The entry asked for was removed by a prefix truncation (compaction).
    /// Remedy: send a snapshot instead.
    #[error("log entries before {first_index} were compacted")]
    Compacted {
        /// The first index still in the log.
        first_index: LogIndex,
    },
    /// The entry asked for is beyond the end of the log.
    #[error("log entry {index} is not in the log")]
    Unavailable {
        /// The index asked for.
        index: LogIndex,
    },
    /// An append did not continue the log: entries must be contiguous and
    /// start at most one past the last index, and after the compacted prefix.
    #[error("append at {found} does not continue the log (expected at most {expected})")]
    NotContiguous {
        /// The highest index the next entry may have.
        expected: LogIndex,
        /// The index it had.
        found: LogIndex,
    },
    /// A single entry exceeds the record size bound.
    #[error("entry payload of {len} bytes exceeds the bound of {max} bytes")]
    EntryTooLarge {
        /// The payload length.
        len: u64,
        /// The bound ([`crate::storage::record::PAYLOAD_BYTES_MAX`]).
        max: u64,
    },
    /// A snapshot file name was not a plain file name (it had a separator,
    /// was empty, or was reserved).
    #[error("invalid snapshot file name {name:?}")]
    InvalidFileName {
        /// The name given.
        name: String,
    },
    /// A snapshot file was asked for that the snapshot does not list.
    #[error("snapshot has no file named {name:?}")]
    NoSuchFile {
        /// The name asked for.
        name: String,
    },
    /// A failure of a storage outside this crate's (an embedder's own
    /// [`GroupStorage`](crate::runtime::GroupStorage) or
    /// [`SnapshotStorage`](crate::runtime::SnapshotStorage)), kept as it
    /// was raised: downcast it to the implementation's error type.
    #[error(transparent)]
    Other(Arc<dyn std::error::Error + Send + Sync>),
    /// A storage call panicked; what it did to the storage is unknown.
    /// Remedy: as for an I/O error, check the disk and restart the node.
    #[error("a storage call panicked during {during}")]
    Panicked {
        /// The call, e.g. `"persist"`.
        during: &'static str,
    },
}

/// What made stored bytes invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// A record header's checksum did not match.
    #[error("record header checksum mismatch")]
    HeaderChecksum,
    /// A record payload's checksum did not match.
    #[error("record payload checksum mismatch")]
    PayloadChecksum,
    /// A record claimed a length beyond the bound or beyond the file's end.
    #[error("record length {len} out of bounds")]
    LengthOutOfBounds {
        /// The claimed payload length.
        len: u64,
    },
    /// A record had an entry type this version does not know.
    #[error("unknown entry type {0}")]
    UnknownEntryType(u8),
    /// A record's payload did not decode (e.g. a malformed configuration).
    #[error("malformed payload")]
    MalformedPayload,
    /// A record's index did not follow its predecessor's.
    #[error("expected index {expected}, found {found}")]
    IndexGap {
        /// The index the record should have had.
        expected: u64,
        /// The index it had.
        found: u64,
    },
    /// A closed segment ended before the last index its name promises, or
    /// was empty.
    #[error("segment ends at index {found}, its name promises {expected}")]
    SegmentTooShort {
        /// The last index the name promises.
        expected: u64,
        /// The last index found (first - 1 when empty).
        found: u64,
    },
    /// Segments did not follow each other without a gap, or the first one
    /// started after the compacted prefix.
    #[error("missing log entries: expected a segment starting at {expected}")]
    MissingSegment {
        /// The first index that no segment holds.
        expected: u64,
    },
    /// More than one open (`log_inprogress_`) segment, or one that is not last.
    #[error("an open segment that is not the last one")]
    MisplacedOpenSegment,
    /// A file in a storage directory whose name this version does not know.
    #[error("unexpected file name")]
    UnexpectedFileName,
    /// A file did not start with the expected magic bytes or version.
    #[error("bad magic or version")]
    BadMagic,
    /// A checksummed file (meta, log meta, snapshot meta) failed its checksum.
    #[error("file checksum mismatch")]
    FileChecksum,
    /// A checksummed file was shorter or longer than its header says (torn).
    #[error("file length does not match its header")]
    FileLength,
    /// A snapshot data file's length or checksum differed from its meta.
    #[error("snapshot file does not match its meta")]
    SnapshotFileMismatch,
}

impl StorageError {
    /// Wraps an `io::Error` with the operation and path it came from.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// The typed error inside a [`StorageFailure`](crate::runtime::StorageFailure)
    /// (what a `GroupStorage` or `SnapshotStorage` call returns): this
    /// crate's own storage errors come back as they were, any other as
    /// [`StorageError::Other`].
    pub fn from_failure(failure: Box<dyn std::error::Error + Send + Sync>) -> Self {
        match failure.downcast::<StorageError>() {
            Ok(error) => *error,
            Err(other) => StorageError::Other(Arc::from(other)),
        }
    }

    /// A corruption error at `offset` of `path`.
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, kind: CorruptionKind) -> Self {
        StorageError::Corruption {
            path: path.into(),
            offset,
            kind,
        }
    }
}

/// Equal when of the same variant with equal fields; I/O errors compare by
/// kind and message (`io::Error` is not `PartialEq`), foreign ones by
/// message.
impl PartialEq for StorageError {
    fn eq(&self, other: &Self) -> bool {
        use StorageError as E;
        match (self, other) {
            (
                E::Io { op, path, source },
                E::Io {
                    op: op2,
                    path: path2,
                    source: source2,
                },
            ) => {
                op == op2
                    && path == path2
                    && source.kind() == source2.kind()
                    && source.to_string() == source2.to_string()
            }
            (E::Locked { path }, E::Locked { path: path2 }) => path == path2,
            (
                E::Corruption { path, offset, kind },
                E::Corruption {
                    path: path2,
                    offset: offset2,
                    kind: kind2,
                },
            ) => path == path2 && offset == offset2 && kind == kind2,
            (E::Compacted { first_index: a }, E::Compacted { first_index: b }) => a == b,
            (E::Unavailable { index: a }, E::Unavailable { index: b }) => a == b,
            (
                E::NotContiguous { expected, found },
                E::NotContiguous {
                    expected: expected2,
                    found: found2,
                },
            ) => expected == expected2 && found == found2,
            (
                E::EntryTooLarge { len, max },
                E::EntryTooLarge {
                    len: len2,
                    max: max2,
                },
            ) => len == len2 && max == max2,
            (E::InvalidFileName { name: a }, E::InvalidFileName { name: b })
            | (E::NoSuchFile { name: a }, E::NoSuchFile { name: b }) => a == b,
            (E::Other(a), E::Other(b)) => Arc::ptr_eq(a, b) || a.to_string() == b.to_string(),
            (E::Panicked { during: a }, E::Panicked { during: b }) => a == b,
            _ => false,
        }
    }
}

impl Eq for StorageError {}

/// Shorthand for results of this module.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
