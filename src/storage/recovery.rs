//! Open-time scan of segment files (braft's `SegmentLogStorage::load_segments`).
//!
//! The rule that keeps acknowledged entries safe: only the unsynced tail of
//! the **open** segment may be cut. Every other invalid byte is reported as
//! [`StorageError::Corruption`] naming file and offset.
//!
//! In the open segment, the first invalid record is a torn tail when no
//! whole valid record of this segment (its salt, a later index) follows it:
//! a crash tears only the last batch, one write, of which a prefix survives,
//! so nothing valid can lie beyond the tear. A valid record beyond it means
//! synced records follow: corruption in the middle. The cut is made durable
//! by zeroing the torn bytes. A closed segment's name bounds its entries:
//! what follows its last record (zeros, records a truncation dropped, stale
//! records of a recycled file) is not read.

use std::path::Path;
use std::sync::Arc;

use super::error::{CorruptionKind, Result, StorageError};
use super::fs::FileSystem;
use super::record::{self, Decoded, HEADER_BYTES, PAYLOAD_BYTES_MAX};
use super::segment::Segment;
use super::segment_name::SegmentName;
use crate::core::Entry;

/// A segment read back from disk, with its entries.
pub(crate) struct LoadedSegment {
    /// The segment, ready for reads (and appends, if open).
    pub(crate) segment: Segment,
    /// Its entries, in order.
    pub(crate) entries: Vec<Entry>,
}

/// Reads and validates the segment file `name` in `dir`. `bytes_max` bounds
/// the file size a segment may have.
pub(crate) fn load_segment(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    name: SegmentName,
    bytes_max: u64,
) -> Result<LoadedSegment> {
    let path = dir.join(name.to_string());
    let mut file = fs
        .open(&path)
        .map_err(|e| StorageError::io("open", &path, e))?;
    let len = file.len().map_err(|e| StorageError::io("len", &path, e))?;
    // A segment never legitimately exceeds its bound plus one largest record.
    if len > bytes_max + PAYLOAD_BYTES_MAX + HEADER_BYTES as u64 {
        let kind = CorruptionKind::LengthOutOfBounds { len };
        return Err(StorageError::corruption(&path, 0, kind));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| StorageError::io("read", &path, e))?;

    let first = name.first();
    let promised_last = match name {
        SegmentName::Closed { last, .. } => Some(last),
        SegmentName::Open { .. } => None,
    };
    let mut entries = Vec::new();
    let mut index = Vec::new();
    let mut offset = 0usize;
    let corrupt = |offset: usize, kind| Err(StorageError::corruption(&path, offset as u64, kind));
    loop {
        let expected = first + entries.len() as u64;
        if promised_last.is_some_and(|last| expected > last) {
            break;
        }
        match record::decode(&buf, offset, first) {
            Decoded::Record { entry, len } => {
                if entry.id.index.0 != expected {
                    let found = entry.id.index.0;
                    return corrupt(offset, CorruptionKind::IndexGap { expected, found });
                }
                index.push((offset as u64, entry.id.term));
                entries.push(entry);
                offset += len;
            }
            Decoded::End if promised_last.is_none() => break,
            Decoded::End => {
                let found = expected - 1;
                let expected = promised_last.unwrap_or(found);
                return corrupt(offset, CorruptionKind::SegmentTooShort { expected, found });
            }
            Decoded::Invalid(kind) => {
                if promised_last.is_some() || valid_record_after(&buf, offset, first, expected) {
                    return corrupt(offset, kind);
                }
                cut_torn_tail(&mut *file, &path, &buf, offset)?;
                break;
            }
        }
    }

    if promised_last.is_none() {
        // Everything recovery hands back counts as durable: a process that
        // died before its sync left records the kernel still holds, which
        // must reach the disk before anyone relies on them.
        file.sync_data()
            .map_err(|e| StorageError::io("sync_data", &path, e))?;
    }
    let file = promised_last.is_none().then_some(file);
    let segment = Segment::loaded(dir, first, index, offset as u64, file);
    Ok(LoadedSegment { segment, entries })
}

/// Whether a whole valid record of this segment (`salt`) for an index after
/// `expected` starts after `bad` in `buf`. Whole records only: the bytes
/// scanned may be megabytes of a recycled file's stale data, where a 32-bit
/// header checksum alone would match by chance once in a few hundred scans.
fn valid_record_after(buf: &[u8], bad: usize, salt: u64, expected: u64) -> bool {
    // Headers are not all zero, so none starts at or after the last
    // non-zero byte's end; the preallocated zero tail is skipped at once.
    let data_end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (bad + 1..data_end).any(|o| {
        matches!(
            record::decode(buf, o, salt),
            Decoded::Record { entry, .. } if entry.id.index.0 > expected
        )
    })
}

/// Zeroes the torn bytes from `offset` on and syncs, so that the cut is
/// durable and later appends never sit in front of stale bytes.
fn cut_torn_tail(
    file: &mut dyn super::fs::File,
    path: &Path,
    buf: &[u8],
    offset: usize,
) -> Result<()> {
    let data_end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if data_end > offset {
        tracing::warn!(path = %path.display(), offset, "cutting torn tail of open segment");
        let zeros = vec![0u8; data_end - offset];
        file.write_all_at(&zeros, offset as u64)
            .map_err(|e| StorageError::io("write", path, e))?;
        file.sync_data()
            .map_err(|e| StorageError::io("sync_data", path, e))?;
    }
    Ok(())
}
