//! Length-prefixed frames on a stream: a big-endian `u32` body length, then
//! the body (a protobuf `Frame`). The length is checked against a limit
//! before anything is read, and the body's buffer grows only as its bytes
//! arrive, so a peer claiming 64 MiB and sending four bytes costs four
//! bytes, not 64 MiB.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::proto;

/// The default largest frame body accepted: 64 MiB.
pub const FRAME_BYTES_MAX: u32 = 64 << 20;

/// How much of a body is read (and its buffer grown) at a time.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The length prefix is over the limit; the connection must be closed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The claimed length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// No frame began within the idle timeout.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// A frame began but its body did not arrive within the deadline.
    #[error("frame body not received within {0:?}")]
    Slow(Duration),
    /// Reading failed, or the connection closed inside a frame.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Appends one frame carrying `body` to `out`.
pub fn encode_frame(body: &[u8], out: &mut BytesMut) {
    out.reserve(4 + body.len());
    out.put_u32(body.len() as u32);
    out.put_slice(body);
}

/// Writes one frame and flushes it (madsim's stream sends only on flush).
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: proto::frame::Kind,
) -> std::io::Result<()> {
    // Encoded straight behind its length prefix: one pass over the body
    // (a snapshot chunk's megabyte is not copied a second time).
    let frame = proto::Frame { kind: Some(kind) };
    let len = frame.encoded_len();
    let mut out = BytesMut::with_capacity(len + 4);
    out.put_u32(len as u32);
    frame
        .encode(&mut out)
        .expect("the buffer was sized to the frame");
    writer.write_all(&out).await?;
    writer.flush().await
}

/// Reads a frame's four-byte length prefix; `Closed` on a clean end.
///
/// # Errors
/// [`FrameError::Closed`] or [`FrameError::Io`].
pub async fn read_header<R: AsyncRead + Unpin>(reader: &mut R) -> Result<[u8; 4], FrameError> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => Ok(header),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Closed),
        Err(e) => Err(e.into()),
    }
}

/// Reads one frame body.
///
/// # Errors
/// [`FrameError`]; after any error the stream is not at a frame boundary
/// and must be closed.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Bytes, FrameError> {
    let header = read_header(reader).await?;
    read_frame_body(reader, header, max).await
}

/// Reads one frame body, waiting at most `idle` for it to begin and then
/// at most `body_timeout` for the rest of it (a peer trickling a large
/// frame one byte a minute must not hold the connection forever).
///
/// # Errors
/// As [`read_frame`], plus [`FrameError::Idle`] and [`FrameError::Slow`].
pub async fn read_frame_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
    idle: Duration,
    body_timeout: Duration,
) -> Result<Bytes, FrameError> {
    let header = tokio::time::timeout(idle, read_header(reader))
        .await
        .map_err(|_| FrameError::Idle(idle))??;
    tokio::time::timeout(body_timeout, read_frame_body(reader, header, max))
        .await
        .map_err(|_| FrameError::Slow(body_timeout))?
}

/// Reads the body of a frame whose length prefix `header` was already read
/// (a server sniffing the first bytes of a connection). The buffer grows
/// with the bytes received, never ahead of them by more than one chunk.
///
/// # Errors
/// As [`read_frame`].
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    header: [u8; 4],
    max: u32,
) -> Result<Bytes, FrameError> {
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = BytesMut::new();
    read_body_into(reader, len as usize, &mut body).await?;
    Ok(body.freeze())
}

/// Reads `len` bytes into `body`, growing it one chunk at a time.
async fn read_body_into<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
    body: &mut BytesMut,
) -> std::io::Result<()> {
    while body.len() < len {
        let want = (len - body.len()).min(READ_CHUNK_BYTES);
        body.reserve(want);
        if reader.read_buf(&mut (&mut *body).limit(want)).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Frames written in one batch before a flush, at most.
pub const WRITE_BATCH_MAX: usize = 64;

/// Writes what is queued as frames until the queue closes, each batch (what
/// is queued, up to [`WRITE_BATCH_MAX`]) with one flush: the shared writer
/// of pipelined connections (client requests, their answers).
///
/// # Errors
/// A write failed, or did not finish within `timeout` (`TimedOut`): a peer
/// that stops reading must not hold the queue forever.
pub async fn write_queued<T, W: AsyncWrite + Unpin>(
    writer: &mut W,
    queued: &mut tokio::sync::mpsc::Receiver<T>,
    kind: fn(T) -> proto::frame::Kind,
    timeout: Duration,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    while let Some(first) = queued.recv().await {
        // Let the tasks woken together with the first one's (the answers
        // of one applied batch; the callers one read of answers woke)
        // queue theirs before the write: one TLS record, one write and one
        // flush for all of them instead of one each.
        tokio::task::yield_now().await;
        out.clear();
        let mut next = Some(first);
        let mut batched = 0;
        while let Some(item) = next {
            let body = proto::Frame {
                kind: Some(kind(item)),
            }
            .encode_to_vec();
            encode_frame(&body, &mut out);
            batched += 1;
            next = match batched < WRITE_BATCH_MAX {
                true => queued.try_recv().ok(),
                false => None,
            };
        }
        tokio::time::timeout(timeout, async {
            writer.write_all(&out).await?;
            writer.flush().await
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused_before_allocating() {
        let mut wire = BytesMut::new();
        encode_frame(b"hello", &mut wire);
        encode_frame(b"", &mut wire);
        wire.put_u32(u32::MAX); // claims 4 GiB
        let mut reader = &wire[..];
        assert_eq!(&read_frame(&mut reader, 1024).await.unwrap()[..], b"hello");
        assert!(read_frame(&mut reader, 1024).await.unwrap().is_empty());
        let err = read_frame(&mut reader, 1024).await.unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: u32::MAX,
                max: 1024
            }
        ));
        assert!(matches!(
            read_frame(&mut reader, 1024).await,
            Err(FrameError::Closed)
        ));
        // A frame cut short is an I/O error, not a clean close.
        let mut cut = BytesMut::new();
        encode_frame(b"hello", &mut cut);
        let mut reader = &cut[..6];
        assert!(matches!(
            read_frame(&mut reader, 1024).await,
            Err(FrameError::Io(_))
        ));
    }

    #[tokio::test]
    async fn a_frame_body_is_buffered_only_as_its_bytes_arrive() {
        // A header claiming 64 MiB, then the stream ends: what was reserved
        // stays within one chunk of what arrived (the old reader zeroed all
        // 64 MiB up front).
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client
            .write_all(&(64u32 << 20).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&[7u8; 1000]).await.unwrap();
        drop(client);
        let header = read_header(&mut server).await.unwrap();
        let mut body = BytesMut::new();
        let read = read_body_into(&mut server, u32::from_be_bytes(header) as usize, &mut body);
        assert!(read.await.is_err());
        assert_eq!(body.len(), 1000);
        assert!(
            body.capacity() <= 2 * READ_CHUNK_BYTES,
            "{}",
            body.capacity()
        );
    }

    #[tokio::test]
    async fn a_trickled_frame_times_out() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(&100u32.to_be_bytes()).await.unwrap();
        client.write_all(&[1u8; 10]).await.unwrap();
        let short = Duration::from_millis(50);
        let err = read_frame_within(&mut server, 1024, Duration::from_secs(5), short).await;
        assert!(matches!(err, Err(FrameError::Slow(_))));
        let (_client, mut idle_server) = tokio::io::duplex(16);
        let err = read_frame_within(&mut idle_server, 1024, short, short).await;
        assert!(matches!(err, Err(FrameError::Idle(_))));
        drop(client);
    }
}
