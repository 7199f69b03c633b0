//! RESP2, the Redis protocol: parsing client commands (arrays of bulk
//! strings, or inline commands as redis-cli sends them when typed) and
//! encoding replies.
//!
//! The parser is a state machine fed by the connection's reads: it consumes
//! each element as soon as it is whole and keeps its place, so a command
//! arriving in many small reads costs work linear in its bytes, and it
//! refuses an oversized command at its length lines, before buffering it.

use bytes::{Buf, BytesMut};

/// The most bytes one command may take on the wire: its bulk strings plus
/// all framing (`*<count>`, `$<len>`, CRLFs).
///
/// Why 4 MiB: every command goes through the Raft log. The runtime refuses
/// commands over its apply limit (8 MiB by default) and the log's record
/// bound (64 MiB) stops the group when crossed; the store's encoding of a
/// command (an op byte, then a 4-byte length an argument) is never longer
/// than its RESP form (at least 6 bytes an argument), so staying at half
/// the runtime's limit keeps every client command clear of both. It also
/// bounds what one connection can make the server buffer.
pub(crate) const COMMAND_BYTES_MAX: usize = 4 << 20;

/// The most arguments (command name included) one command may have.
///
/// Why 65,536: each argument costs a `Vec` header beyond its bytes, so a
/// command of empty arguments would otherwise cost 4 times its wire size;
/// MGET and DEL of 65,535 keys stay possible.
pub(crate) const ARGS_MAX: usize = 1 << 16;

/// The longest inline command line (Redis's own bound for inline commands).
const INLINE_BYTES_MAX: usize = 64 << 10;

/// The longest `*<count>` or `$<len>` line, its type marker included.
const LENGTH_LINE_BYTES_MAX: usize = 32;

/// How many argument slots an array header may reserve before its elements
/// arrive (a header alone must not make the server allocate much).
const ARGS_PREALLOCATED_MAX: usize = 1024;

/// One client command: the command name, then its arguments.
pub(crate) type Command = Vec<Vec<u8>>;

/// A protocol violation; the connection is answered with an error and closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProtocolError(pub(crate) &'static str);

/// The bounds a parser enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The most bytes one command may take on the wire, framing included.
    pub(crate) command_bytes_max: usize,
    /// The most arguments one command may have, its name included.
    pub(crate) args_max: usize,
}

impl Limits {
    /// What the server enforces: [`COMMAND_BYTES_MAX`] and [`ARGS_MAX`].
    pub(crate) const SERVER: Limits = Limits {
        command_bytes_max: COMMAND_BYTES_MAX,
        args_max: ARGS_MAX,
    };
}

/// Parses the commands of one connection from its input buffer.
///
/// The caller appends what it reads to the buffer and calls
/// [`CommandParser::parse_command`] until it returns `Ok(None)`; the parser
/// consumes bytes from the front of the buffer as it goes, and the caller
/// must not consume any itself. After an error the connection is done.
#[derive(Debug)]
pub(crate) struct CommandParser {
    /// The bounds enforced.
    limits: Limits,
    /// The array command being read, once its header was consumed.
    array: Option<PartialArray>,
    /// How many bytes at the front of the buffer are known to hold no line
    /// feed: the next search for a line's end starts there, so a line
    /// arriving a byte at a time is scanned once.
    line_scanned: usize,
    /// The bytes examined so far: searched for a line's end or copied into
    /// an argument. Each byte received is examined at most once, so this
    /// never exceeds the bytes received.
    bytes_examined: u64,
}

/// An array command whose header was read but not all of its elements.
#[derive(Debug)]
struct PartialArray {
    /// How many elements the header announced.
    count: usize,
    /// The elements read so far. Invariant: `args.len() < count`.
    args: Command,
    /// The length of the next bulk string, once its `$<len>` line was read.
    bulk_len: Option<usize>,
    /// The command's bytes on the wire so far, counting the next bulk
    /// string's body and CRLF once its length is known.
    /// Invariant: `bytes <= limits.command_bytes_max`.
    bytes: usize,
}

impl CommandParser {
    /// A parser enforcing `limits`.
    pub(crate) fn new(limits: Limits) -> Self {
        CommandParser {
            limits,
            array: None,
            line_scanned: 0,
            bytes_examined: 0,
        }
    }

    /// The bytes examined so far: a measure of the parser's work.
    #[allow(dead_code, reason = "read by the tests and the fuzz target")]
    pub(crate) fn bytes_examined(&self) -> u64 {
        self.bytes_examined
    }

    /// Parses one command from the front of `buf`, consuming what it reads.
    /// Returns `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] for malformed input or input over the limits.
    pub(crate) fn parse_command(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Command>, ProtocolError> {
        let mut array = match self.array.take() {
            Some(array) => array,
            None if buf.is_empty() => return Ok(None),
            None if buf[0] != b'*' => return self.parse_inline(buf),
            None => match self.parse_array_header(buf)? {
                Some(array) => array,
                None => return Ok(None),
            },
        };
        while array.args.len() < array.count {
            if !self.parse_element_part(&mut array, buf)? {
                self.array = Some(array);
                return Ok(None);
            }
        }
        Ok(Some(array.args))
    }

    /// Reads `*<count>\r\n`.
    fn parse_array_header(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<PartialArray>, ProtocolError> {
        let Some(line) = self.take_line(buf, LENGTH_LINE_BYTES_MAX)? else {
            return Ok(None);
        };
        let line = strip_cr(&line)?;
        let count = parse_length(line, b'*')?;
        if count > self.limits.args_max {
            return Err(ProtocolError("too many arguments"));
        }
        let bytes = line.len() + 2;
        if bytes > self.limits.command_bytes_max {
            return Err(ProtocolError("command too long"));
        }
        Ok(Some(PartialArray {
            count,
            args: Vec::with_capacity(count.min(ARGS_PREALLOCATED_MAX)),
            bulk_len: None,
            bytes,
        }))
    }

    /// Reads the next `$<len>\r\n` line or bulk string body of `array`.
    /// Returns false when more bytes are needed.
    fn parse_element_part(
        &mut self,
        array: &mut PartialArray,
        buf: &mut BytesMut,
    ) -> Result<bool, ProtocolError> {
        let Some(len) = array.bulk_len else {
            let Some(line) = self.take_line(buf, LENGTH_LINE_BYTES_MAX)? else {
                return Ok(false);
            };
            let line = strip_cr(&line)?;
            let len = parse_length(line, b'$')?;
            // Refused here, before the body arrives, so an oversized
            // command is never buffered.
            let room = self.limits.command_bytes_max - array.bytes;
            let framing = line.len() + 2 + 2;
            if framing > room || len > room - framing {
                return Err(ProtocolError("command too long"));
            }
            array.bytes += framing + len;
            array.bulk_len = Some(len);
            return Ok(true);
        };
        if buf.len() < len + 2 {
            return Ok(false);
        }
        if &buf[len..len + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not terminated by CRLF"));
        }
        self.bytes_examined += (len + 2) as u64;
        array.args.push(buf[..len].to_vec());
        buf.advance(len + 2);
        array.bulk_len = None;
        Ok(true)
    }

    /// Reads an inline command: words separated by whitespace, up to a
    /// line feed.
    fn parse_inline(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, ProtocolError> {
        let line_max = INLINE_BYTES_MAX.min(self.limits.command_bytes_max);
        let Some(line) = self.take_line(buf, line_max)? else {
            return Ok(None);
        };
        let args: Command = line[..]
            .split(u8::is_ascii_whitespace)
            .filter(|word| !word.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if args.len() > self.limits.args_max {
            return Err(ProtocolError("too many arguments"));
        }
        Ok(Some(args))
    }

    /// Splits off the line at the front of `buf`, line feed included, once
    /// it is whole. A line longer than `content_max` bytes before its CRLF
    /// is an error, whether or not its end has arrived: the verdict never
    /// depends on how the input was split into reads.
    fn take_line(
        &mut self,
        buf: &mut BytesMut,
        content_max: usize,
    ) -> Result<Option<BytesMut>, ProtocolError> {
        let window = buf.len().min(content_max + 2);
        let start = self.line_scanned.min(window);
        match buf[start..window].iter().position(|&b| b == b'\n') {
            Some(at) => {
                self.bytes_examined += (at + 1) as u64;
                self.line_scanned = 0;
                Ok(Some(buf.split_to(start + at + 1)))
            }
            None => {
                self.bytes_examined += (window - start) as u64;
                self.line_scanned = window;
                if window == content_max + 2 {
                    return Err(ProtocolError("line too long"));
                }
                Ok(None)
            }
        }
    }
}

/// `line` (ending in a line feed) without its CRLF.
fn strip_cr(line: &[u8]) -> Result<&[u8], ProtocolError> {
    line.strip_suffix(b"\r\n")
        .ok_or(ProtocolError("line not terminated by CRLF"))
}

/// Reads `<marker><decimal digits>`; signs, blanks and overflow are errors.
fn parse_length(line: &[u8], marker: u8) -> Result<usize, ProtocolError> {
    let Some((&first, digits)) = line.split_first() else {
        return Err(ProtocolError("unexpected type marker"));
    };
    if first != marker {
        return Err(ProtocolError("unexpected type marker"));
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ProtocolError("invalid length"));
    }
    digits.iter().try_fold(0usize, |n, &digit| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(digit - b'0')))
            .ok_or(ProtocolError("invalid length"))
    })
}

/// `+OK`-style simple string.
pub(crate) fn simple(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(format!("+{text}\r\n").as_bytes());
}

/// `-ERR ...`-style error.
pub(crate) fn error(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(format!("-{text}\r\n").as_bytes());
}

/// `:<n>` integer.
pub(crate) fn integer(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(format!(":{n}\r\n").as_bytes());
}

/// A bulk string, or the null bulk string for `None`.
pub(crate) fn bulk(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"$-1\r\n"),
    }
}

/// The bytes [`bulk`] writes for a value of `len` bytes.
pub(crate) fn bulk_encoded_len(len: usize) -> usize {
    1 + len.to_string().len() + 2 + len + 2
}

/// An array header of `n` elements.
pub(crate) fn array_header(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
}
