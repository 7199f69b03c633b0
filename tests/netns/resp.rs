//! A minimal RESP2 client with deadlines, made from inside a namespace of
//! the bed (the bridge's, where 10.77.0.254 is): one command on a fresh
//! connection, or many on a kept one.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::bed::in_netns;

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+...`
    Simple(String),
    /// `-...`
    Error(String),
    /// `:...`
    Integer(i64),
    /// `$...` (`None`: the null bulk string).
    Bulk(Option<Vec<u8>>),
}

/// Sends `args` to `addr` from namespace `ns` and reads one reply; gives up
/// after `timeout` for the connect and again for the reply.
pub fn call(ns: &str, addr: SocketAddr, args: &[&[u8]], timeout: Duration) -> io::Result<Reply> {
    let mut connection = in_netns(ns, || Connection::open(addr, timeout))?;
    connection.call(args)
}

/// A client connection, for many commands one after the other.
pub struct Connection {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects from the calling thread's namespace; `timeout` bounds the
    /// connect and, later, each reply.
    pub fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Connection { stream, reader })
    }

    /// Sends one command and reads its reply. After an error the
    /// connection's state is unknown (a late reply may still come): drop it.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&request)?;
        read_reply(&mut self.reader)
    }
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end();
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("reply {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Integer(rest.parse().map_err(|_| bad())?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut body = vec![0; len as usize + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len as usize);
            Reply::Bulk(Some(body))
        }
        _ => return Err(bad()),
    })
}
