//! Open-time scan of the server log's directory and of each segment, by the per-group log's rule
//! (`recovery.rs`): only the unsynced tail of the **open** segment may be
//! cut, when no whole valid frame of this segment (its salt, a later LSN)
//! follows the first invalid one; every other invalid byte is
//! [`StorageError::Corruption`] naming file and offset. A closed segment's
//! name bounds its frames; nothing after its last is read.

use std::path::Path;
use std::sync::Arc;

use std::collections::BTreeMap;

use super::super::atomic_file;
use super::super::error::{CorruptionKind, Result, StorageError};
use super::super::fs::DIR_LOCK_NAME;
use super::super::fs::{File, FileSystem};
use super::super::record::HEADER_BYTES;
use super::super::segment_log::only_the_last_is_open;
use super::super::segment_name::SegmentName;
use super::frame::{self, DecodedFrame, FRAME_PAYLOAD_BYTES_MAX, Frame};
use super::log::{META_MAGIC, SERVER_LOG_META_NAME};
use super::open_segment::io;

/// A segment read back, its frames validated.
pub(crate) struct ScannedSegment {
    /// Each frame with its byte offset, in LSN order.
    pub(crate) frames: Vec<(u64, Frame)>,
    /// Bytes of valid frames (where the next frame goes, if open).
    pub(crate) written: u64,
    /// The file, for the open segment.
    pub(crate) file: Option<Box<dyn File>>,
}

/// Reads and validates segment `name` in `dir`; `bytes_max` bounds the
/// file size a segment may have.
pub(crate) fn scan_segment(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    name: SegmentName,
    bytes_max: u64,
) -> Result<ScannedSegment> {
    let path = dir.join(name.to_string());
    let mut file = fs.open(&path).map_err(io("open", &path))?;
    let len = file.len().map_err(io("len", &path))?;
    // A segment never exceeds its bound plus one largest frame and its end mark.
    if len > bytes_max + 2 * HEADER_BYTES as u64 + FRAME_PAYLOAD_BYTES_MAX {
        let kind = CorruptionKind::LengthOutOfBounds { len };
        return Err(StorageError::corruption(&path, 0, kind));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).map_err(io("read", &path))?;
    let first = name.first();
    let promised_last = match name {
        SegmentName::Closed { last, .. } => Some(last),
        SegmentName::Open { .. } => None,
    };
    let mut frames = Vec::new();
    let mut offset = 0usize;
    let corrupt = |offset: usize, kind| Err(StorageError::corruption(&path, offset as u64, kind));
    loop {
        let expected = first + frames.len() as u64;
        if promised_last.is_some_and(|last| expected > last) {
            break;
        }
        match frame::decode(&buf, offset, first) {
            DecodedFrame::Frame { frame, len } => {
                if frame.lsn != expected {
                    let found = frame.lsn;
                    return corrupt(offset, CorruptionKind::IndexGap { expected, found });
                }
                frames.push((offset as u64, frame));
                offset += len;
            }
            DecodedFrame::End if promised_last.is_none() => break,
            DecodedFrame::End => {
                let found = expected - 1;
                let expected = promised_last.unwrap_or(found);
                return corrupt(offset, CorruptionKind::SegmentTooShort { expected, found });
            }
            DecodedFrame::Invalid(kind) => {
                if promised_last.is_some() || valid_frame_after(&buf, offset, first, expected) {
                    return corrupt(offset, kind);
                }
                cut_torn_tail(&mut *file, &path, &buf, offset)?;
                break;
            }
        }
    }
    if promised_last.is_none() {
        // What recovery hands back counts as durable (see `recovery.rs`).
        file.sync_data().map_err(io("sync_data", &path))?;
    }
    Ok(ScannedSegment {
        frames,
        written: offset as u64,
        file: promised_last.is_none().then_some(file),
    })
}

/// Whether a whole valid frame of this segment (`salt`) with an LSN after
/// `expected` starts after `bad`.
fn valid_frame_after(buf: &[u8], bad: usize, salt: u64, expected: u64) -> bool {
    let data_end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (bad + 1..data_end).any(|o| {
        matches!(
            frame::decode(buf, o, salt),
            DecodedFrame::Frame { frame, .. } if frame.lsn > expected
        )
    })
}

/// Zeroes the torn bytes from `offset` on and syncs: the cut is durable
/// and later frames never sit in front of stale bytes.
fn cut_torn_tail(file: &mut dyn File, path: &Path, buf: &[u8], offset: usize) -> Result<()> {
    let data_end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if data_end > offset {
        tracing::warn!(path = %path.display(), offset, "cutting torn tail of the server log");
        let zeros = vec![0u8; data_end - offset];
        file.write_all_at(&zeros, offset as u64)
            .map_err(io("write", path))?;
        file.sync_data().map_err(io("sync_data", path))?;
    }
    Ok(())
}

/// The segment names in `dir`, ascending by first LSN; only the last may
/// be open.
pub(crate) fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<SegmentName>> {
    let mut names = BTreeMap::new();
    for file_name in fs.list_dir(dir).map_err(io("list_dir", dir))? {
        if file_name == SERVER_LOG_META_NAME || file_name == DIR_LOCK_NAME {
            continue;
        }
        let path = dir.join(&file_name);
        let corrupt = |kind| StorageError::corruption(&path, 0, kind);
        let name =
            SegmentName::parse(&file_name).ok_or(corrupt(CorruptionKind::UnexpectedFileName))?;
        if names.insert(name.first(), name).is_some() {
            return Err(corrupt(CorruptionKind::MisplacedOpenSegment));
        }
    }
    only_the_last_is_open(dir, &names)?;
    Ok(names.into_values().collect())
}

/// The first live LSN (1 for a new log).
pub(crate) fn read_meta(fs: &dyn FileSystem, dir: &Path) -> Result<u64> {
    let Some(payload) = atomic_file::read(fs, dir, SERVER_LOG_META_NAME, META_MAGIC, 8)? else {
        return Ok(1);
    };
    let bytes: [u8; 8] = payload.as_slice().try_into().map_err(|_| {
        StorageError::corruption(
            dir.join(SERVER_LOG_META_NAME),
            0,
            CorruptionKind::FileLength,
        )
    })?;
    Ok(u64::from_le_bytes(bytes).max(1))
}
