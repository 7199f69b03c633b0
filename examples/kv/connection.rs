//! One client connection: reads commands, has them executed in order and
//! writes the replies, within bounds of time and memory a client cannot
//! push past.

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::{self, Command, CommandParser, Limits, ProtocolError};

/// The default idle timeout: a connection that sends nothing (or reads none
/// of its replies) for this long is closed, so abandoned or stalled clients
/// do not hold a connection slot forever.
pub(crate) const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);

/// Pending replies are written out once they reach this many bytes, even
/// in the middle of a pipeline: a client that sends many commands without
/// reading its replies makes the server hold at most this plus one reply,
/// and then waits on the client's reading.
pub(crate) const REPLIES_PENDING_BYTES_MAX: usize = 64 << 10;

/// The read buffer's usual capacity; a buffer that grew past four times
/// this for a large command is given back once empty.
const READ_BUFFER_BYTES: usize = 16 << 10;

/// How long a connection closed for a protocol error keeps reading (and
/// discarding) what the client still sends, so that the client receives
/// the error reply instead of a reset.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// What executes a client's commands.
pub(crate) trait Service {
    /// Executes `command` (never empty) and appends its reply to `out`.
    fn execute(&self, command: Command, out: &mut Vec<u8>) -> impl Future<Output = ()> + Send;
}

/// Serves one client connection until it closes, fails, breaks the
/// protocol or idles for `idle_timeout` (`None`: never times out).
/// Pipelined commands are answered in order.
pub(crate) async fn serve_connection(
    mut stream: TcpStream,
    service: impl Service,
    idle_timeout: Option<Duration>,
) {
    let mut parser = CommandParser::new(Limits::SERVER);
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut out = Vec::new();
    loop {
        match within(idle_timeout, stream.read_buf(&mut buf)).await {
            Some(Ok(n)) if n > 0 => {}
            _ => return, // end of input, an error, or idle too long
        }
        loop {
            match parser.parse_command(&mut buf) {
                Ok(Some(command)) if command.is_empty() => {}
                Ok(Some(command)) => {
                    service.execute(command, &mut out).await;
                    if out.len() >= REPLIES_PENDING_BYTES_MAX
                        && !write_replies(&mut stream, &mut out, idle_timeout).await
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(ProtocolError(why)) => {
                    resp::error(&mut out, &format!("ERR Protocol error: {why}"));
                    if write_replies(&mut stream, &mut out, idle_timeout).await {
                        linger_and_close(stream).await;
                    }
                    return;
                }
            }
        }
        if !write_replies(&mut stream, &mut out, idle_timeout).await {
            return;
        }
        if buf.is_empty() && buf.capacity() > 4 * READ_BUFFER_BYTES {
            buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
        }
    }
}

/// Writes and clears `out`, giving up after `timeout`; false if the
/// connection is done.
async fn write_replies(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    timeout: Option<Duration>,
) -> bool {
    let written = matches!(within(timeout, stream.write_all(out)).await, Some(Ok(())));
    out.clear();
    if out.capacity() > 4 * REPLIES_PENDING_BYTES_MAX {
        *out = Vec::new();
    }
    written
}

/// Ends the connection after an error reply: sends end of output, then
/// discards input for at most [`CLOSE_LINGER`]. Closing with unread input
/// would make the kernel send a reset, and a client still sending (a large
/// command refused at its length) could lose the error reply to it.
async fn linger_and_close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = vec![0; READ_BUFFER_BYTES];
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// `future`'s output, or `None` if `timeout` passes first.
async fn within<T>(timeout: Option<Duration>, future: impl Future<Output = T>) -> Option<T> {
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, future).await.ok(),
        None => Some(future.await),
    }
}
