//! RESP2, the Redis protocol: parsing client commands (arrays of bulk
//! strings, or inline commands as redis-cli sends them when typed) and
//! encoding replies.

use bytes::{Buf, BytesMut};

/// The longest bulk string or array accepted (bounds what a client can make
/// the server allocate).
const BULK_BYTES_MAX: usize = 64 << 20;
const ARRAY_LEN_MAX: usize = 1 << 20;

/// A protocol violation; the connection is answered with an error and closed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProtocolError(pub(crate) &'static str);

/// Parses one command from the front of `buf`, consuming it. Returns
/// `Ok(None)` when more bytes are needed.
pub(crate) fn parse_command(buf: &mut BytesMut) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf);
    }
    let mut pos = 0;
    let Some(count) = read_number(buf, &mut pos, b'*')? else {
        return Ok(None);
    };
    if count > ARRAY_LEN_MAX {
        return Err(ProtocolError("array too long"));
    }
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(len) = read_number(buf, &mut pos, b'$')? else {
            return Ok(None);
        };
        if len > BULK_BYTES_MAX {
            return Err(ProtocolError("bulk string too long"));
        }
        if buf.len() < pos + len + 2 {
            return Ok(None);
        }
        if &buf[pos + len..pos + len + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not terminated by CRLF"));
        }
        args.push(buf[pos..pos + len].to_vec());
        pos += len + 2;
    }
    buf.advance(pos);
    Ok(Some(args))
}

/// Reads `<prefix><decimal>\r\n` at `pos`.
fn read_number(buf: &[u8], pos: &mut usize, prefix: u8) -> Result<Option<usize>, ProtocolError> {
    let Some(end) = find_crlf(&buf[*pos..]) else {
        return if buf.len() - *pos > 32 {
            Err(ProtocolError("length line too long"))
        } else {
            Ok(None)
        };
    };
    let line = &buf[*pos..*pos + end];
    if line.first() != Some(&prefix) {
        return Err(ProtocolError("unexpected type marker"));
    }
    let text = std::str::from_utf8(&line[1..]).map_err(|_| ProtocolError("length is not ASCII"))?;
    let n = text
        .parse::<usize>()
        .map_err(|_| ProtocolError("invalid length"))?;
    *pos += end + 2;
    Ok(Some(n))
}

fn parse_inline(buf: &mut BytesMut) -> Result<Option<Vec<Vec<u8>>>, ProtocolError> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > 64 << 10 {
            Err(ProtocolError("inline command too long"))
        } else {
            Ok(None)
        };
    };
    let line = buf.split_to(end + 1);
    let args = line[..]
        .split(|b: &u8| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Ok(Some(args))
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
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

/// An array header of `n` elements.
pub(crate) fn array_header(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arrays_partial_input_and_inline_commands() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI"[..]);
        assert_eq!(
            parse_command(&mut buf).unwrap(),
            Some(vec![b"GET".to_vec(), b"k".to_vec()])
        );
        assert_eq!(parse_command(&mut buf).unwrap(), None, "incomplete");
        buf.extend_from_slice(b"NG\r\nset a  b\r\n");
        assert_eq!(
            parse_command(&mut buf).unwrap(),
            Some(vec![b"PING".to_vec()])
        );
        assert_eq!(
            parse_command(&mut buf).unwrap(),
            Some(vec![b"set".to_vec(), b"a".to_vec(), b"b".to_vec()])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_huge_or_malformed_lengths() {
        let mut buf = BytesMut::from(&b"*1\r\n$99999999999\r\n"[..]);
        assert!(parse_command(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"*1\r\n$1\r\nab\r\n"[..]);
        assert!(parse_command(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"*x\r\n"[..]);
        assert!(parse_command(&mut buf).is_err());
    }
}
