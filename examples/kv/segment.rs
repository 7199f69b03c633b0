//! The disk store's data segments: append-only files of checksummed
//! records (format in `docs/on_disk_format.md`, "kv disk store").
//!
//! ```text
//!   segment = magic "OARKVSG1" · record*
//!   record  = crc32c(len ‖ body): u32 LE · len: u32 LE · body
//!   body    = 1 · key_len: u32 LE · key · value      (put)
//!           | 2 · key                                (delete)
//!           | 3 · term: u64 LE · index: u64 LE       (applied through)
//! ```

use std::io;

use oar::core::LogId;

/// The first bytes of every segment (format version 1).
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"OARKVSG1";

/// A record's header: checksum and body length.
pub(crate) const RECORD_HEADER_BYTES: u64 = 8;

/// The largest record body accepted; a longer length is corruption.
///
/// Why: a command is at most a few MiB (a frame), so a key and value
/// together are too; a torn length must not allocate gigabytes.
pub(crate) const RECORD_BODY_BYTES_MAX: u32 = 64 << 20;

const PUT: u8 = 1;
const DELETE: u8 = 2;
const APPLIED: u8 = 3;

/// The file name of segment `number`.
pub(crate) fn segment_name(number: u64) -> String {
    format!("seg-{number:020}.kvd")
}

/// The segment number a file name stands for, if it names a segment.
pub(crate) fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".kvd")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One decoded record, borrowing from the segment's bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// `key` now holds the value at `value_at` (offset in the segment),
    /// `value_len` bytes.
    Put {
        key: &'a [u8],
        value_at: u64,
        value_len: u32,
    },
    /// `key` is gone.
    Delete { key: &'a [u8] },
    /// Every record before this one applies the log through `last`.
    Applied { last: LogId },
}

/// Appends a put record to `out`; returns the value's offset within `out`.
pub(crate) fn encode_put(out: &mut Vec<u8>, key: &[u8], value: &[u8]) -> usize {
    let key_len = u32::try_from(key.len()).expect("a key fits a command");
    let mut body = Vec::with_capacity(5 + key.len() + value.len());
    body.push(PUT);
    body.extend_from_slice(&key_len.to_le_bytes());
    body.extend_from_slice(key);
    body.extend_from_slice(value);
    let start = out.len();
    frame(out, &body);
    start + RECORD_HEADER_BYTES as usize + 5 + key.len()
}

/// Appends a delete record to `out`.
pub(crate) fn encode_delete(out: &mut Vec<u8>, key: &[u8]) {
    let mut body = Vec::with_capacity(1 + key.len());
    body.push(DELETE);
    body.extend_from_slice(key);
    frame(out, &body);
}

/// Appends an applied-through record to `out`.
pub(crate) fn encode_applied(out: &mut Vec<u8>, last: LogId) {
    let mut body = Vec::with_capacity(17);
    body.push(APPLIED);
    body.extend_from_slice(&last.term.0.to_le_bytes());
    body.extend_from_slice(&last.index.0.to_le_bytes());
    frame(out, &body);
}

fn frame(out: &mut Vec<u8>, body: &[u8]) {
    let len = u32::try_from(body.len()).expect("a record fits a command");
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
}

/// Why a segment's bytes stop being records at some offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The file ends inside a record (a torn write).
    Torn,
    /// A record fails its checksum, is of an unknown kind, or is malformed.
    Corrupt,
}

/// Decodes the record at `at` in `bytes` (a whole segment); returns it and
/// the offset after it, `Ok(None)` at the end, or where it is damaged.
pub(crate) fn decode_at(bytes: &[u8], at: usize) -> Result<Option<(Record<'_>, usize)>, Damage> {
    let rest = &bytes[at..];
    if rest.is_empty() {
        return Ok(None);
    }
    let Some(header) = rest.get(..RECORD_HEADER_BYTES as usize) else {
        return Err(Damage::Torn);
    };
    let crc = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len == 0 || len > RECORD_BODY_BYTES_MAX {
        return Err(Damage::Corrupt);
    }
    let body_at = RECORD_HEADER_BYTES as usize;
    let Some(body) = rest.get(body_at..body_at + len as usize) else {
        return Err(Damage::Torn);
    };
    if crc32c::crc32c_append(crc32c::crc32c(&header[4..]), body) != crc {
        return Err(Damage::Corrupt);
    }
    let next = at + body_at + body.len();
    let record = match (body[0], &body[1..]) {
        (PUT, fields) if fields.len() >= 4 => {
            let key_len = u32::from_le_bytes(fields[..4].try_into().expect("4 bytes")) as usize;
            let key = fields.get(4..4 + key_len).ok_or(Damage::Corrupt)?;
            let value_len = (fields.len() - 4 - key_len) as u32;
            Record::Put {
                key,
                value_at: (at + body_at + 5 + key_len) as u64,
                value_len,
            }
        }
        (DELETE, key) => Record::Delete { key },
        (APPLIED, fields) if fields.len() == 16 => Record::Applied {
            last: LogId::new(
                u64::from_le_bytes(fields[..8].try_into().expect("8 bytes")),
                u64::from_le_bytes(fields[8..].try_into().expect("8 bytes")),
            ),
        },
        _ => return Err(Damage::Corrupt),
    };
    Ok(Some((record, next)))
}

/// The error for a damaged segment that may not be cut (a sealed one).
pub(crate) fn damaged(name: &str, at: usize, damage: Damage) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("kv store segment {name}: {damage:?} record at offset {at}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_told_apart() {
        let mut bytes = SEGMENT_MAGIC.to_vec();
        let value_at = encode_put(&mut bytes, b"k", b"value");
        encode_delete(&mut bytes, b"gone");
        encode_applied(&mut bytes, LogId::new(2, 9));
        let at = SEGMENT_MAGIC.len();
        let (put, at) = decode_at(&bytes, at).unwrap().unwrap();
        assert_eq!(
            put,
            Record::Put {
                key: b"k",
                value_at: value_at as u64,
                value_len: 5
            }
        );
        assert_eq!(&bytes[value_at..value_at + 5], b"value");
        let (delete, at) = decode_at(&bytes, at).unwrap().unwrap();
        assert_eq!(delete, Record::Delete { key: b"gone" });
        let (applied, end) = decode_at(&bytes, at).unwrap().unwrap();
        assert_eq!(
            applied,
            Record::Applied {
                last: LogId::new(2, 9)
            }
        );
        assert_eq!(decode_at(&bytes, end), Ok(None));
        assert_eq!(decode_at(&bytes[..end - 1], at), Err(Damage::Torn));
        let mut flipped = bytes.clone();
        flipped[at + 9] ^= 1;
        assert_eq!(decode_at(&flipped, at), Err(Damage::Corrupt));
        assert_eq!(segment_number(&segment_name(7)), Some(7));
        assert_eq!(segment_number("seg-7.kvd"), None);
        assert_eq!(segment_number("../seg-00000000000000000007.kvd"), None);
    }
}
