//! A frame's shape checked before it is decoded: protobuf decoding turns a
//! two-byte empty entry into a ~100-byte struct, so a 64 MiB frame of empty
//! entries would decode into gigabytes. Counting the entries of an
//! AppendEntries on the raw bytes first bounds what decoding may allocate
//! to the frame's size plus `entries_max` entries.

/// Field numbers on the path `Frame.raft` → `RaftMessage.append_request`
/// → `AppendEntriesRequest.entries` (see `proto/raft.proto`).
const FRAME_RAFT: u64 = 1;
const RAFT_MESSAGE_APPEND_REQUEST: u64 = 12;
const APPEND_REQUEST_ENTRIES: u64 = 2;

/// Why a frame was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// The bytes are not a well-formed protobuf message.
    #[error("malformed protobuf at byte {0}")]
    Malformed(usize),
    /// An AppendEntries carries more entries than any honest sender sends.
    #[error("{count} entries in one message (limit {max})")]
    TooManyEntries {
        /// Entries counted (counting stops just past the limit).
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Checks that a `Frame` body carries at most `entries_max` log entries.
///
/// # Errors
/// [`ShapeError`].
pub fn check_frame_shape(body: &[u8], entries_max: usize) -> Result<(), ShapeError> {
    for (tag, raft) in length_delimited_fields(body, FRAME_RAFT) {
        for (_, append) in length_delimited_fields(raft?, RAFT_MESSAGE_APPEND_REQUEST) {
            let mut count = 0;
            for field in length_delimited_fields(append?, APPEND_REQUEST_ENTRIES) {
                field.1?;
                count += 1;
                if count > entries_max {
                    return Err(ShapeError::TooManyEntries {
                        count,
                        max: entries_max,
                    });
                }
            }
        }
        let _ = tag;
    }
    // Walk the whole frame once so that a malformed tail is refused too.
    for field in length_delimited_fields(body, u64::MAX) {
        field.1?;
    }
    Ok(())
}

/// The length-delimited fields numbered `wanted` in `message`, in order;
/// an item is an error where the message stops being well-formed.
fn length_delimited_fields(
    message: &[u8],
    wanted: u64,
) -> impl Iterator<Item = (u64, Result<&[u8], ShapeError>)> {
    let mut at = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        while !failed && at < message.len() {
            let field = next_field(message, &mut at);
            match field {
                Err(e) => {
                    failed = true;
                    return Some((wanted, Err(e)));
                }
                Ok((number, Some(bytes))) if number == wanted => return Some((number, Ok(bytes))),
                Ok(_) => {}
            }
        }
        None
    })
}

/// Reads the field at `*at`: its number and, if length-delimited, its bytes.
fn next_field<'a>(
    message: &'a [u8],
    at: &mut usize,
) -> Result<(u64, Option<&'a [u8]>), ShapeError> {
    let start = *at;
    let key = varint(message, at)?;
    let number = key >> 3;
    let skip = |len: usize, at: &mut usize| {
        let end = at.checked_add(len).filter(|&end| end <= message.len());
        end.map(|end| *at = end).ok_or(ShapeError::Malformed(start))
    };
    match key & 7 {
        0 => varint(message, at).map(|_| (number, None)),
        1 => skip(8, at).map(|()| (number, None)),
        5 => skip(4, at).map(|()| (number, None)),
        2 => {
            let len =
                usize::try_from(varint(message, at)?).map_err(|_| ShapeError::Malformed(start))?;
            let from = *at;
            skip(len, at)?;
            Ok((number, Some(&message[from..*at])))
        }
        // Groups (3, 4) are not used by this schema; 6 and 7 do not exist.
        _ => Err(ShapeError::Malformed(start)),
    }
}

fn varint(message: &[u8], at: &mut usize) -> Result<u64, ShapeError> {
    let start = *at;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *message.get(*at).ok_or(ShapeError::Malformed(start))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ShapeError::Malformed(start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::wire::proto;
    use prost::Message as _;

    fn append_frame(entries: usize) -> Vec<u8> {
        let append = proto::AppendEntriesRequest {
            entries: vec![proto::LogEntry::default(); entries],
            ..Default::default()
        };
        let message = proto::RaftMessage {
            body: Some(proto::raft_message::Body::AppendRequest(append)),
            ..Default::default()
        };
        proto::Frame {
            kind: Some(proto::frame::Kind::Raft(message)),
        }
        .encode_to_vec()
    }

    #[test]
    fn entries_are_counted_before_decoding() {
        assert_eq!(check_frame_shape(&append_frame(100), 100), Ok(()));
        assert_eq!(
            check_frame_shape(&append_frame(101), 100),
            Err(ShapeError::TooManyEntries {
                count: 101,
                max: 100
            })
        );
        // Empty entries are two bytes each on the wire: this is the
        // amplification the check exists for.
        assert!(append_frame(1000).len() < 3 * 1000 + 16);
    }

    #[test]
    fn malformed_bytes_are_refused_not_panicked_on() {
        let frame = append_frame(3);
        for cut in 0..frame.len() {
            let _ = check_frame_shape(&frame[..cut], 10);
        }
        assert!(check_frame_shape(&[0x0a, 0xff], 10).is_err());
        assert!(check_frame_shape(&[0xff; 12], 10).is_err());
        assert_eq!(check_frame_shape(&[], 10), Ok(()));
    }
}
