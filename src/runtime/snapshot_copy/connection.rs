//! One connection of a snapshot copier to a file service: a TCP stream
//! carrying length-prefixed frames, or a direct call into an in-process
//! server's service.

use std::collections::VecDeque;
use std::io;

use prost::Message as _;
use tokio::io::{ReadHalf, WriteHalf};

use super::client::{Failure, SnapshotSource};
use super::server::FileHandler;
use crate::runtime::auth::BoxedStream;
use crate::runtime::wire::frame::{FRAME_BYTES_MAX, FrameError, read_frame, write_frame};
use crate::runtime::wire::proto;

/// One connection to a file service.
pub(super) enum Connection {
    Tcp {
        reader: ReadHalf<BoxedStream>,
        writer: WriteHalf<BoxedStream>,
    },
    /// In process: requests wait here until their answer is awaited.
    Local {
        handler: FileHandler,
        queue: VecDeque<proto::GetFileRequest>,
    },
}

impl Connection {
    /// Connects to `source`.
    pub(super) async fn open(source: &SnapshotSource) -> io::Result<Connection> {
        match source {
            SnapshotSource::Tcp { addr, dialer } => {
                let stream = dialer.dial(*addr).await.map_err(io::Error::other)?;
                let (reader, writer) = tokio::io::split(stream);
                Ok(Connection::Tcp { reader, writer })
            }
            SnapshotSource::Local { network, addr } => {
                let handler = network.file_handler(*addr).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("no server at {addr}"),
                    )
                })?;
                Ok(Connection::Local {
                    handler,
                    queue: VecDeque::new(),
                })
            }
        }
    }

    /// Sends a request; answers come in request order.
    pub(super) async fn send(&mut self, request: proto::GetFileRequest) -> io::Result<()> {
        match self {
            Connection::Tcp { writer, .. } => {
                write_frame(writer, proto::frame::Kind::GetFileRequest(request)).await
            }
            Connection::Local { queue, .. } => {
                queue.push_back(request);
                Ok(())
            }
        }
    }

    /// The answer to the oldest request not yet answered.
    pub(super) async fn recv(&mut self) -> Result<proto::GetFileResponse, Failure> {
        match self {
            Connection::Tcp { reader, .. } => {
                let body = read_frame(reader, FRAME_BYTES_MAX)
                    .await
                    .map_err(|e| match e {
                        FrameError::Closed => {
                            Failure::Io(io::Error::from(io::ErrorKind::UnexpectedEof))
                        }
                        FrameError::Io(e) => Failure::Io(e),
                        e => Failure::Garbled(e.to_string()),
                    })?;
                let frame =
                    proto::Frame::decode(body).map_err(|e| Failure::Garbled(e.to_string()))?;
                match frame.kind {
                    Some(proto::frame::Kind::GetFileResponse(response)) => Ok(response),
                    Some(proto::frame::Kind::Error(e)) => Err(Failure::Garbled(e.detail)),
                    _ => Err(Failure::Garbled("not a file response".into())),
                }
            }
            Connection::Local { handler, queue } => {
                let request = queue
                    .pop_front()
                    .ok_or_else(|| Failure::Garbled("an answer to nothing".into()))?;
                handler(request)
                    .await
                    .ok_or_else(|| Failure::Io(io::Error::from(io::ErrorKind::ConnectionReset)))
            }
        }
    }
}
