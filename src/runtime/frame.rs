//! Length-prefixed frames on a TCP stream: a big-endian `u32` body length,
//! then the body (a protobuf `Frame`). The length is checked against a limit
//! before anything is allocated, so a peer claiming 4 GiB costs nothing.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The default largest frame body accepted: 64 MiB.
pub const FRAME_BYTES_MAX: u32 = 64 << 20;

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

/// Reads one frame body.
///
/// # Errors
/// [`FrameError`]; after any error the stream is not at a frame boundary
/// and must be closed.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Bytes, FrameError> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    read_frame_body(reader, header, max).await
}

/// Reads the body of a frame whose length prefix `header` was already read
/// (a server sniffing the first bytes of a connection).
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
    let mut body = BytesMut::zeroed(len as usize);
    reader.read_exact(&mut body).await?;
    Ok(body.freeze())
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
}
