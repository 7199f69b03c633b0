//! The bytes a session group logs and answers with.
//!
//! A command entry of a group with sessions is an envelope:
//!
//! ```text
//!   tag u8 | time_ms | body
//!   tag 4 Plain    body = command                      (no session)
//!   tag 1 Open     body = -
//!   tag 5 Request  body = session | seq | first_unacked | command
//!   tag 3 Close    body = session u64
//! ```
//!
//! Plain and Request, one per write, carry their integers as varints
//! (LEB128, as protobuf): about 14 bytes of envelope instead of 33, less for
//! every write to log, replicate and fsync. Open and Close carry them as
//! big-endian u64s, as did Plain (tag 0) and Request (tag 2) before; those
//! two tags are still read, so logs written before stay readable. `time_ms`
//! is the proposing leader's wall clock in milliseconds since the Unix
//! epoch, the only clock sessions ever read.
//! A session operation is answered with `0 | payload` (the session id for
//! Open, the state machine's reply for Request, nothing for Close) or
//! `1 | code u8 | session u64 | value u64` for a [`SessionError`]. A Plain
//! command's answer is the state machine's, unchanged.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::SessionError;
use super::table::SessionId;

const PLAIN: u8 = 0;
const OPEN: u8 = 1;
const REQUEST: u8 = 2;
const CLOSE: u8 = 3;
const PLAIN_VARINT: u8 = 4;
const REQUEST_VARINT: u8 = 5;

/// One logged command of a session group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Envelope {
    /// A command outside any session.
    Plain { time_ms: u64, command: Bytes },
    /// Open a session; its id is this entry's index.
    Open { time_ms: u64 },
    /// A command in a session.
    Request {
        time_ms: u64,
        session: SessionId,
        seq: u64,
        first_unacked: u64,
        command: Bytes,
    },
    /// Close a session and forget its replies.
    Close { time_ms: u64, session: SessionId },
}

/// The leader's wall clock, for stamping an envelope.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The user's command inside a logged entry of a session group (a Plain
/// envelope or a session request), `None` for any other entry: for
/// checkers that read a group's log, such as the simulator's.
#[doc(hidden)]
pub fn logged_command(entry: &Bytes) -> Option<Bytes> {
    match Envelope::decode(entry.clone())? {
        Envelope::Plain { command, .. } | Envelope::Request { command, .. } => Some(command),
        Envelope::Open { .. } | Envelope::Close { .. } => None,
    }
}

/// `command` as a Plain envelope stamped now.
pub(crate) fn encode_plain(command: &[u8]) -> Bytes {
    Envelope::encode_varints(PLAIN_VARINT, &[now_ms()], command)
}

/// Writes `v` as a varint at `out[*at..]` (room for 10 bytes needed).
fn put_varint(out: &mut [u8], at: &mut usize, mut v: u64) {
    while v >= 0x80 {
        out[*at] = v as u8 | 0x80;
        v >>= 7;
        *at += 1;
    }
    out[*at] = v as u8;
    *at += 1;
}

/// Reads a varint at `bytes[*at..]` as prost does (at most 10 bytes, the
/// last at most 1); `None` if cut short or too long for a u64. Inlined off
/// a slice: cheaper than prost's through `Buf` on a `Bytes`.
#[inline(always)]
fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *bytes.get(*at)?;
        *at += 1;
        if i == 9 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

impl Envelope {
    /// `tag | words as varints | command` in one allocation and one copy
    /// of the command (the header is built on the stack; at most 4 words).
    fn encode_varints(tag: u8, words: &[u64], command: &[u8]) -> Bytes {
        let mut head = [0u8; 1 + 4 * 10];
        head[0] = tag;
        let mut at = 1;
        for w in words {
            put_varint(&mut head, &mut at, *w);
        }
        let mut out = Vec::with_capacity(at + command.len());
        out.extend_from_slice(&head[..at]);
        out.extend_from_slice(command);
        Bytes::from(out)
    }

    /// The envelopes of tags 4 and 5 (the tag at `bytes[0]`); `None` for
    /// bytes that are not one. Read off the slice, the command then split
    /// off without a reference count.
    fn decode_varints(tag: u8, mut bytes: Bytes) -> Option<Envelope> {
        let mut at = 1;
        let time_ms = get_varint(&bytes, &mut at)?;
        let envelope = match tag {
            PLAIN_VARINT => {
                bytes.advance(at);
                Envelope::Plain {
                    time_ms,
                    command: bytes,
                }
            }
            _ => {
                let session = SessionId(get_varint(&bytes, &mut at)?);
                let seq = get_varint(&bytes, &mut at)?;
                let first_unacked = get_varint(&bytes, &mut at)?;
                bytes.advance(at);
                Envelope::Request {
                    time_ms,
                    session,
                    seq,
                    first_unacked,
                    command: bytes,
                }
            }
        };
        Some(envelope)
    }

    fn encode_parts(tag: u8, time_ms: u64, words: &[u64], command: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(9 + 8 * words.len() + command.len());
        out.put_u8(tag);
        out.put_u64(time_ms);
        for w in words {
            out.put_u64(*w);
        }
        out.put_slice(command);
        out.freeze()
    }

    /// The envelope's bytes.
    pub(crate) fn encode(&self) -> Bytes {
        match self {
            Envelope::Plain { time_ms, command } => {
                Self::encode_varints(PLAIN_VARINT, &[*time_ms], command)
            }
            Envelope::Open { time_ms } => Self::encode_parts(OPEN, *time_ms, &[], &[]),
            Envelope::Request {
                time_ms,
                session,
                seq,
                first_unacked,
                command,
            } => Self::encode_varints(
                REQUEST_VARINT,
                &[*time_ms, session.0, *seq, *first_unacked],
                command,
            ),
            Envelope::Close { time_ms, session } => {
                Self::encode_parts(CLOSE, *time_ms, &[session.0], &[])
            }
        }
    }

    /// Reads an envelope; `None` for bytes that are not one.
    pub(crate) fn decode(mut bytes: Bytes) -> Option<Envelope> {
        if let Some(&tag @ (PLAIN_VARINT | REQUEST_VARINT)) = bytes.first() {
            return Self::decode_varints(tag, bytes);
        }
        if bytes.len() < 9 {
            return None;
        }
        let tag = bytes.get_u8();
        let time_ms = bytes.get_u64();
        let word = |bytes: &mut Bytes| (bytes.len() >= 8).then(|| bytes.get_u64());
        Some(match tag {
            PLAIN => Envelope::Plain {
                time_ms,
                command: bytes,
            },
            OPEN if bytes.is_empty() => Envelope::Open { time_ms },
            REQUEST => {
                let session = SessionId(word(&mut bytes)?);
                let seq = word(&mut bytes)?;
                let first_unacked = word(&mut bytes)?;
                Envelope::Request {
                    time_ms,
                    session,
                    seq,
                    first_unacked,
                    command: bytes,
                }
            }
            CLOSE if bytes.len() == 8 => Envelope::Close {
                time_ms,
                session: SessionId(bytes.get_u64()),
            },
            _ => return None,
        })
    }
}

/// A session operation's answer as bytes.
pub(crate) fn encode_reply(reply: &Result<Bytes, SessionError>) -> Bytes {
    if matches!(reply, Ok(payload) if payload.is_empty()) {
        // Common (a write that answers nothing, a close): no allocation.
        return Bytes::from_static(&[0]);
    }
    let mut out = BytesMut::with_capacity(match reply {
        Ok(payload) => 1 + payload.len(),
        Err(_) => 18,
    });
    match reply {
        Ok(payload) => {
            out.put_u8(0);
            out.put_slice(payload);
        }
        Err(e) => {
            let (session, value) = match e {
                SessionError::Expired { session } | SessionError::ReplyCacheFull { session } => {
                    (session.0, 0)
                }
                SessionError::ReplyForgotten { session, seq } => (session.0, *seq),
                SessionError::TooManySessions { max } => (0, *max as u64),
                SessionError::Malformed => (0, 0),
            };
            out.put_u8(1);
            out.put_u8(e.code());
            out.put_u64(session);
            out.put_u64(value);
        }
    }
    out.freeze()
}

/// A session error alone as bytes (as the client service sends it).
pub(crate) fn encode_session_error(error: &SessionError) -> Bytes {
    encode_reply(&Err(error.clone()))
}

/// Reads a session error written by `encode_session_error`.
pub fn decode_session_error(bytes: Bytes) -> Option<SessionError> {
    decode_reply(bytes)?.err()
}

/// Reads a session operation's answer; `None` for bytes that are not one.
pub(crate) fn decode_reply(mut bytes: Bytes) -> Option<Result<Bytes, SessionError>> {
    match bytes.first()? {
        0 => {
            bytes.advance(1);
            Some(Ok(bytes))
        }
        1 if bytes.len() == 18 => {
            bytes.advance(1);
            let code = bytes.get_u8();
            let session = SessionId(bytes.get_u64());
            let value = bytes.get_u64();
            Some(Err(match code {
                1 => SessionError::Expired { session },
                2 => SessionError::ReplyForgotten {
                    session,
                    seq: value,
                },
                3 => SessionError::TooManySessions {
                    max: usize::try_from(value).unwrap_or(usize::MAX),
                },
                4 => SessionError::ReplyCacheFull { session },
                5 => SessionError::Malformed,
                _ => return None,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_garbage_is_refused() {
        let all = [
            Envelope::Plain {
                time_ms: 7,
                command: Bytes::from_static(b"set a 1"),
            },
            Envelope::Open { time_ms: 8 },
            Envelope::Request {
                time_ms: 9,
                session: SessionId(3),
                seq: 4,
                first_unacked: 2,
                command: Bytes::from_static(b"incr"),
            },
            Envelope::Close {
                time_ms: 10,
                session: SessionId(3),
            },
        ];
        for e in all {
            assert_eq!(Envelope::decode(e.encode()), Some(e.clone()));
            // As written before varints: still read.
            let fixed = match &e {
                Envelope::Plain { time_ms, command } => {
                    Some(Envelope::encode_parts(PLAIN, *time_ms, &[], command))
                }
                Envelope::Request {
                    time_ms,
                    session,
                    seq,
                    first_unacked,
                    command,
                } => Some(Envelope::encode_parts(
                    REQUEST,
                    *time_ms,
                    &[session.0, *seq, *first_unacked],
                    command,
                )),
                _ => None,
            };
            if let Some(fixed) = fixed {
                assert_eq!(Envelope::decode(fixed), Some(e));
            }
        }
        // Varints cut short, or longer than a u64 holds.
        for bad in [
            &[4u8][..],
            &[5, 9, 3, 0x80],
            &[
                5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1,
            ],
        ] {
            assert_eq!(
                Envelope::decode(Bytes::copy_from_slice(bad)),
                None,
                "{bad:?}"
            );
        }
        let request = Envelope::Request {
            time_ms: 1_800_000_000_000,
            session: SessionId(123_456),
            seq: 1_000,
            first_unacked: 999,
            command: Bytes::new(),
        };
        assert_eq!(request.encode().len(), 1 + 6 + 3 + 2 + 2);
        assert_eq!(Envelope::decode(Bytes::from_static(b"short")), None);
        let mut bad = vec![9u8];
        bad.extend_from_slice(&[0; 8]);
        assert_eq!(Envelope::decode(Bytes::from(bad)), None);
        let mut truncated = vec![REQUEST];
        truncated.extend_from_slice(&[0; 8 + 12]);
        assert_eq!(Envelope::decode(Bytes::from(truncated)), None);
    }

    #[test]
    fn varints_read_and_write_as_prost_does() {
        let values = [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1 << 35,
            u64::MAX - 1,
            u64::MAX,
        ];
        for v in values {
            let mut ours = [0u8; 10];
            let mut len = 0;
            put_varint(&mut ours, &mut len, v);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            assert_eq!(&ours[..len], &theirs[..], "{v}");
            let mut at = 0;
            assert_eq!(get_varint(&theirs, &mut at), Some(v));
            assert_eq!(at, theirs.len());
        }
        // Cut short, 11 bytes, a 10th byte over 1: refused, as by prost.
        let mut eleven = vec![0x80u8; 10];
        eleven.push(0);
        let mut tenth = vec![0xffu8; 9];
        tenth.push(2);
        for bad in [&[0x80u8][..], &eleven, &tenth] {
            let mut at = 0;
            assert_eq!(get_varint(bad, &mut at), None, "{bad:?}");
            assert!(prost::encoding::decode_varint(&mut &bad[..]).is_err());
        }
    }

    #[test]
    fn replies_round_trip() {
        let all = [
            Ok(Bytes::from_static(b"7")),
            Err(SessionError::Expired {
                session: SessionId(5),
            }),
            Err(SessionError::ReplyForgotten {
                session: SessionId(5),
                seq: 3,
            }),
            Err(SessionError::TooManySessions { max: 10 }),
            Err(SessionError::ReplyCacheFull {
                session: SessionId(5),
            }),
            Err(SessionError::Malformed),
        ];
        for r in all {
            assert_eq!(decode_reply(encode_reply(&r)), Some(r));
        }
        assert_eq!(decode_reply(Bytes::from_static(&[1, 2])), None);
    }
}
