//! Frame of the server log: one record tagged with the group it belongs to.
//!
//! The header has the layout of the per-group log's entry record
//! ([`super::super::record`]), its fields read differently:
//! ```text
//! offset size field
//!      0    4 payload_len  u32 LE, ≤ FRAME_PAYLOAD_BYTES_MAX
//!      4    4 header_crc   CRC32C of (salt u64 LE, bytes 0..4, bytes 8..32)
//!      8    8 group        u64 LE, the group id
//!     16    8 lsn          u64 LE, the log sequence number (one per frame)
//!     24    1 kind         1 entries, 2 hard state, 3 compact, 4 reset,
//!                          5 remove group, 6 restate
//!     25    3 reserved     zero
//!     28    4 payload_crc  CRC32C of the payload
//!     32    … payload
//! ```
//! The salt is the first LSN of the segment holding the frame, as the
//! per-group log salts with the segment's first index. An `entries` payload
//! is a run of the per-group log's entry records (salted with the group id),
//! so entries are framed exactly as there; `hard state` is `term u64,
//! voted_for u64` (0 = none), `compact` and `reset` a `LogId` (`term u64,
//! index u64`), `remove group` empty, `restate` (a rewrite's whole group in
//! one frame) a `LogId` (log start), the hard state, then entry records.

use super::super::error::{CorruptionKind, StorageError};
use super::super::record::{
    self, Decoded, Framed, HEADER_BYTES, PAYLOAD_BYTES_MAX, header_crc, u64_at,
};
use super::super::segment_log::{decode_log_id, encode_log_id};
use crate::core::{Entry, HardState, LogId, NodeId, Term};

/// The largest frame payload: one largest entry record, so that any entry
/// the per-group log accepts fits in a frame of its own.
pub(crate) const FRAME_PAYLOAD_BYTES_MAX: u64 = PAYLOAD_BYTES_MAX + HEADER_BYTES as u64;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_COMPACT: u8 = 3;
const KIND_RESET: u8 = 4;
const KIND_REMOVE: u8 = 5;
const KIND_RESTATE: u8 = 6;

/// What a frame records about its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FrameBody {
    /// Entries, contiguous and ascending: the group's log drops its suffix
    /// from the first one's index, then appends them (a conflict overwrite
    /// is this, nothing more).
    Entries(Vec<Entry>),
    /// The group's term and vote.
    HardState(HardState),
    /// The group's entries through this one are dropped (a snapshot covers
    /// them); its log starts after it.
    Compact(LogId),
    /// Every entry of the group is dropped; its log continues after this one.
    Reset(LogId),
    /// The group is gone: every earlier frame of it is void.
    RemoveGroup,
    /// The group's whole state, replacing whatever earlier frames left: a
    /// rewrite moves a group forward in one frame, so that a crash tearing
    /// it leaves the old frames in force.
    Restate {
        /// The last entry dropped: the log starts after it.
        last_purged: LogId,
        /// The term and vote.
        hard_state: HardState,
        /// Every live entry, contiguous from `last_purged.index + 1`.
        entries: Vec<Entry>,
    },
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The group the frame belongs to.
    pub(crate) group: u64,
    /// Its log sequence number.
    pub(crate) lsn: u64,
    /// What it records.
    pub(crate) body: FrameBody,
}

/// What [`decode`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodedFrame {
    /// An all-zero header: the end of the written frames.
    End,
    /// A valid frame, `len` bytes long in all.
    Frame {
        /// The frame.
        frame: Frame,
        /// Header plus payload bytes.
        len: usize,
    },
    /// Invalid bytes.
    Invalid(CorruptionKind),
}

/// Appends the frame for `body` to `out`.
///
/// # Errors
/// [`StorageError::EntryTooLarge`] when the payload exceeds
/// [`FRAME_PAYLOAD_BYTES_MAX`] (split entries over several frames first).
pub(crate) fn encode(
    group: u64,
    lsn: u64,
    body: &FrameBody,
    salt: u64,
    out: &mut Vec<u8>,
) -> Result<(), StorageError> {
    let start = out.len();
    out.resize(start + HEADER_BYTES, 0);
    let kind = match body {
        FrameBody::Entries(entries) => {
            for entry in entries {
                record::encode(entry, group, out)?;
            }
            KIND_ENTRIES
        }
        FrameBody::HardState(hs) => {
            encode_hard_state(hs, out);
            KIND_HARD_STATE
        }
        FrameBody::Restate {
            last_purged,
            hard_state,
            entries,
        } => {
            out.extend_from_slice(&encode_log_id(*last_purged));
            encode_hard_state(hard_state, out);
            for entry in entries {
                record::encode(entry, group, out)?;
            }
            KIND_RESTATE
        }
        FrameBody::Compact(id) => {
            out.extend_from_slice(&encode_log_id(*id));
            KIND_COMPACT
        }
        FrameBody::Reset(id) => {
            out.extend_from_slice(&encode_log_id(*id));
            KIND_RESET
        }
        FrameBody::RemoveGroup => KIND_REMOVE,
    };
    let len = (out.len() - start - HEADER_BYTES) as u64;
    if len > FRAME_PAYLOAD_BYTES_MAX {
        out.truncate(start);
        let max = FRAME_PAYLOAD_BYTES_MAX;
        return Err(StorageError::EntryTooLarge { len, max });
    }
    let payload_crc = crc32c::crc32c(&out[start + HEADER_BYTES..]);
    let h = &mut out[start..start + HEADER_BYTES];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[8..16].copy_from_slice(&group.to_le_bytes());
    h[16..24].copy_from_slice(&lsn.to_le_bytes());
    h[24] = kind;
    h[28..32].copy_from_slice(&payload_crc.to_le_bytes());
    let crc = header_crc(h, salt);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The bytes [`encode`] writes for an `entries` frame of `entries`.
pub(crate) fn entries_len(entries: &[Entry]) -> u64 {
    let payload: usize = entries.iter().map(record::encoded_len).sum();
    (HEADER_BYTES + payload) as u64
}

fn encode_hard_state(hs: &HardState, out: &mut Vec<u8>) {
    out.extend_from_slice(&hs.term.0.to_le_bytes());
    out.extend_from_slice(&hs.voted_for.map_or(0, |n| n.0).to_le_bytes());
}

fn decode_hard_state(b: &[u8]) -> Option<HardState> {
    let b: &[u8; 16] = b.try_into().ok()?;
    let vote = u64_at(b, 8);
    Some(HardState {
        term: Term(u64_at(b, 0)),
        voted_for: (vote != 0).then_some(NodeId(vote)),
    })
}

/// Decodes the frame at `offset` of `buf`. Never reads or allocates past
/// `buf`, whatever the header claims.
pub(crate) fn decode(buf: &[u8], offset: usize, salt: u64) -> DecodedFrame {
    let (h, payload) = match record::check_framed(buf, offset, salt, FRAME_PAYLOAD_BYTES_MAX) {
        Framed::End => return DecodedFrame::End,
        Framed::Invalid(kind) => return DecodedFrame::Invalid(kind),
        Framed::Valid { header, payload } => (header, payload),
    };
    let len = payload.len();
    let group = u64_at(h, 8);
    let body = match decode_body(h[24], group, payload) {
        Ok(body) => body,
        Err(kind) => return DecodedFrame::Invalid(kind),
    };
    let frame = Frame {
        group,
        lsn: u64_at(h, 16),
        body,
    };
    DecodedFrame::Frame {
        frame,
        len: HEADER_BYTES + len,
    }
}

fn decode_body(kind: u8, group: u64, payload: &[u8]) -> Result<FrameBody, CorruptionKind> {
    const MALFORMED: CorruptionKind = CorruptionKind::MalformedPayload;
    match kind {
        KIND_ENTRIES => decode_entries(group, payload).map(FrameBody::Entries),
        KIND_HARD_STATE => decode_hard_state(payload)
            .map(FrameBody::HardState)
            .ok_or(MALFORMED),
        KIND_RESTATE if payload.len() >= 32 => {
            let last_purged = decode_log_id(&payload[..16]).ok_or(MALFORMED)?;
            let hard_state = decode_hard_state(&payload[16..32]).ok_or(MALFORMED)?;
            let entries = match payload.len() {
                32 => Vec::new(),
                _ => decode_entries(group, &payload[32..])?,
            };
            if entries
                .first()
                .is_some_and(|e| e.id.index != last_purged.index.next())
            {
                return Err(MALFORMED);
            }
            Ok(FrameBody::Restate {
                last_purged,
                hard_state,
                entries,
            })
        }
        KIND_COMPACT => decode_log_id(payload)
            .map(FrameBody::Compact)
            .ok_or(MALFORMED),
        KIND_RESET => decode_log_id(payload)
            .map(FrameBody::Reset)
            .ok_or(MALFORMED),
        KIND_REMOVE if payload.is_empty() => Ok(FrameBody::RemoveGroup),
        KIND_REMOVE => Err(MALFORMED),
        other => Err(CorruptionKind::UnknownEntryType(other)),
    }
}

/// The entry records of an `entries` payload: at least one, every byte
/// used, indexes consecutive.
fn decode_entries(group: u64, payload: &[u8]) -> Result<Vec<Entry>, CorruptionKind> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        match record::decode(payload, at, group) {
            Decoded::Record { entry, len } => {
                if let Some(prev) = entries.last()
                    && entry.id.index.0 != prev.id.index.0 + 1
                {
                    let expected = prev.id.index.0 + 1;
                    let found = entry.id.index.0;
                    return Err(CorruptionKind::IndexGap { expected, found });
                }
                entries.push(entry);
                at += len;
            }
            Decoded::Invalid(kind) => return Err(kind),
            Decoded::End => return Err(CorruptionKind::MalformedPayload),
        }
    }
    match entries.is_empty() {
        true => Err(CorruptionKind::MalformedPayload),
        false => Ok(entries),
    }
}
