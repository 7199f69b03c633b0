//! Record framing: one log entry on disk.
//!
//! ```text
//! offset size field
//!      0    4 payload_len  u32 LE, ≤ PAYLOAD_BYTES_MAX
//!      4    4 header_crc   CRC32C of (salt u64 LE, bytes 0..4, bytes 8..32)
//!      8    8 term         u64 LE
//!     16    8 index        u64 LE
//!     24    1 entry_type   1 = noop, 2 = command, 3 = configuration
//!     25    3 reserved     zero
//!     28    4 payload_crc  CRC32C of the payload
//!     32    … payload      payload_len bytes
//! ```
//!
//! The header has its own checksum so that its length can be trusted before
//! the payload is read; through `payload_crc` it covers the payload too. The
//! salt is the first index of the segment holding the record, so a record is
//! valid only in the segment it was written to. An all-zero header is never
//! valid (its checksum would not be zero) and marks the end of the written
//! part of a preallocated segment.

use bytes::Bytes;

use super::error::{CorruptionKind, StorageError};
use crate::core::{Entry, EntryPayload, LogId, Membership, NodeId};

/// Bytes of a record header.
pub const HEADER_BYTES: usize = 32;

/// The largest payload a record may carry; a header claiming more is corrupt.
pub const PAYLOAD_BYTES_MAX: u64 = 64 << 20;

const TYPE_NOOP: u8 = 1;
const TYPE_COMMAND: u8 = 2;
const TYPE_CONFIG: u8 = 3;

/// What [`decode`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// An all-zero header: the end of the written records.
    End,
    /// A valid record holding `entry`, `len` bytes long in all.
    Record {
        /// The decoded entry.
        entry: Entry,
        /// Header plus payload bytes.
        len: usize,
    },
    /// Invalid bytes.
    Invalid(CorruptionKind),
}

/// The record's size on disk for `entry`.
pub fn encoded_len(entry: &Entry) -> usize {
    HEADER_BYTES + payload_len(&entry.payload)
}

fn payload_len(payload: &EntryPayload) -> usize {
    match payload {
        EntryPayload::Noop => 0,
        EntryPayload::Command(data) => data.len(),
        EntryPayload::Config(m) => 12 + 8 * m.node_count(),
    }
}

/// Appends the record for `entry` to `out`, salted with `salt`.
///
/// # Errors
/// [`StorageError::EntryTooLarge`] when the payload exceeds [`PAYLOAD_BYTES_MAX`].
pub fn encode(entry: &Entry, salt: u64, out: &mut Vec<u8>) -> Result<(), StorageError> {
    let len = payload_len(&entry.payload) as u64;
    if len > PAYLOAD_BYTES_MAX {
        return Err(StorageError::EntryTooLarge {
            len,
            max: PAYLOAD_BYTES_MAX,
        });
    }
    let start = out.len();
    out.resize(start + HEADER_BYTES, 0);
    let entry_type = match &entry.payload {
        EntryPayload::Noop => TYPE_NOOP,
        EntryPayload::Command(data) => {
            out.extend_from_slice(data);
            TYPE_COMMAND
        }
        EntryPayload::Config(m) => {
            encode_membership(m, out);
            TYPE_CONFIG
        }
    };
    let payload_crc = crc32c::crc32c(&out[start + HEADER_BYTES..]);
    let h = &mut out[start..start + HEADER_BYTES];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[8..16].copy_from_slice(&entry.id.term.0.to_le_bytes());
    h[16..24].copy_from_slice(&entry.id.index.0.to_le_bytes());
    h[24] = entry_type;
    h[28..32].copy_from_slice(&payload_crc.to_le_bytes());
    let crc = header_crc(h, salt);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

pub(crate) fn header_crc(h: &[u8], salt: u64) -> u32 {
    let crc = crc32c::crc32c(&salt.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &h[0..4]);
    crc32c::crc32c_append(crc, &h[8..HEADER_BYTES])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A record header and payload at some offset, as [`check_framed`]
/// found them.
pub(crate) enum Framed<'a> {
    /// Zeros: the clean end of the written part.
    End,
    /// A header or payload that fails its checks.
    Invalid(CorruptionKind),
    /// A header whose checksum, length bound and payload checksum hold.
    Valid { header: &'a [u8], payload: &'a [u8] },
}

/// Checks the header-framed record at `offset` of `buf` (the layout every
/// log record and server-log frame shares: length, header CRC over the
/// salt and the rest of the header, payload CRC at byte 28), its payload
/// at most `payload_max`. Never reads or allocates past `buf`, whatever
/// the header claims.
pub(crate) fn check_framed(buf: &[u8], offset: usize, salt: u64, payload_max: u64) -> Framed<'_> {
    let Some(h) = buf.get(offset..offset.saturating_add(HEADER_BYTES)) else {
        // Fewer bytes than a header left: zeros are the clean end of a
        // segment trimmed mid-header, anything else is a torn header.
        return match buf[offset.min(buf.len())..].iter().all(|&b| b == 0) {
            true => Framed::End,
            false => Framed::Invalid(CorruptionKind::HeaderChecksum),
        };
    };
    if h.iter().all(|&b| b == 0) {
        return Framed::End;
    }
    if header_crc(h, salt) != u32_at(h, 4) {
        return Framed::Invalid(CorruptionKind::HeaderChecksum);
    }
    let len = u64::from(u32_at(h, 0));
    let start = offset + HEADER_BYTES;
    if len > payload_max || len > (buf.len() - start) as u64 {
        return Framed::Invalid(CorruptionKind::LengthOutOfBounds { len });
    }
    let payload = &buf[start..start + len as usize];
    if crc32c::crc32c(payload) != u32_at(h, 28) {
        return Framed::Invalid(CorruptionKind::PayloadChecksum);
    }
    Framed::Valid { header: h, payload }
}

/// Decodes the record at `offset` of `buf`, which holds the file's bytes.
/// Never reads or allocates past `buf`, whatever the header claims.
pub fn decode(buf: &[u8], offset: usize, salt: u64) -> Decoded {
    let (h, payload) = match check_framed(buf, offset, salt, PAYLOAD_BYTES_MAX) {
        Framed::End => return Decoded::End,
        Framed::Invalid(kind) => return Decoded::Invalid(kind),
        Framed::Valid { header, payload } => (header, payload),
    };
    let len = payload.len();
    let payload = match h[24] {
        TYPE_NOOP if payload.is_empty() => EntryPayload::Noop,
        TYPE_NOOP => return Decoded::Invalid(CorruptionKind::MalformedPayload),
        TYPE_COMMAND => EntryPayload::Command(Bytes::copy_from_slice(payload)),
        TYPE_CONFIG => match decode_membership(payload) {
            Some(m) => EntryPayload::Config(m.into()),
            None => return Decoded::Invalid(CorruptionKind::MalformedPayload),
        },
        other => return Decoded::Invalid(CorruptionKind::UnknownEntryType(other)),
    };
    let id = LogId::new(u64_at(h, 8), u64_at(h, 16));
    Decoded::Record {
        entry: Entry { id, payload },
        len: HEADER_BYTES + len,
    }
}

/// Configuration payload: three (count u32 LE, ids u64 LE…) lists: voters,
/// outgoing voters, learners.
pub(crate) fn encode_membership(m: &Membership, out: &mut Vec<u8>) {
    for set in [&m.voters, &m.outgoing_voters, &m.learners] {
        out.extend_from_slice(&(set.len() as u32).to_le_bytes());
        for id in set {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
    }
}

pub(crate) fn decode_membership(mut b: &[u8]) -> Option<Membership> {
    let mut sets = [const { std::collections::BTreeSet::new() }; 3];
    for set in &mut sets {
        let (n, rest) = b.split_first_chunk::<4>()?;
        b = rest;
        for _ in 0..u32::from_le_bytes(*n) {
            // Bounded by the payload: a huge count runs out of bytes first.
            let (id, rest) = b.split_first_chunk::<8>()?;
            b = rest;
            set.insert(NodeId(u64::from_le_bytes(*id)));
        }
    }
    let [voters, outgoing_voters, learners] = sets;
    b.is_empty().then_some(Membership {
        voters,
        outgoing_voters,
        learners,
    })
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
