//! The connecting side: open TCP, set up the secure channel, say `Hello`,
//! wait for the answer. Used by the transport, the snapshot copier and the
//! admin client alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::net::TcpStream;

use super::channel::{AuthError, Authenticator, BoxedStream};
use super::hello::HelloRefusal;
use super::security::Security;
use crate::runtime::socket_options::watch_progress;
use crate::runtime::wire::frame::{FrameError, read_frame, write_frame};
use crate::runtime::wire::proto;
use crate::runtime::wire::proto::hello_reply::Status;

/// The largest frame read before a connection is authenticated.
pub(crate) const HANDSHAKE_FRAME_BYTES_MAX: u32 = 64 << 10;

/// Why an authenticated connection could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// TCP could not connect.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Connecting and the handshake did not finish in time.
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// The secure channel failed (certificates, key).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The server refused our `Hello`.
    #[error(transparent)]
    Refused(#[from] HelloRefusal),
    /// The server's answer was not a `HelloReply`.
    #[error("malformed handshake answer: {0}")]
    Malformed(String),
}

/// Opens authenticated connections in one role. Cheap to clone.
#[derive(Clone)]
pub struct Dialer {
    authenticator: Arc<dyn Authenticator>,
    hello: proto::Hello,
    timeout: Duration,
    /// Have the kernel drop a connection that makes no progress this long
    /// (see `socket_options.rs`).
    stall_timeout: Option<Duration>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("authenticator", &self.authenticator)
            .field("cluster_id", &self.hello.cluster_id)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// Connects as the server whose Raft address is `own_addr`.
    pub fn server(security: &Security, own_addr: SocketAddr, timeout: Duration) -> Self {
        Dialer {
            authenticator: security.authenticator.clone(),
            hello: proto::Hello {
                cluster_id: security.cluster_id.clone(),
                role: Some(proto::hello::Role::ServerAddr(own_addr.to_string())),
                incarnation: 0,
            },
            timeout,
            stall_timeout: None,
        }
    }

    /// This dialer, its `Hello` naming this start of the server
    /// (`incarnation`: later starts name higher numbers), so that a peer
    /// closes the connections of this server's earlier lives.
    pub fn with_incarnation(mut self, incarnation: u64) -> Self {
        self.hello.incarnation = incarnation;
        self
    }

    /// This dialer, its connections dropped by the kernel once they make no
    /// progress for `stall` (`TCP_USER_TIMEOUT` and keepalive, where the OS
    /// has them).
    pub fn with_stall_timeout(mut self, stall: Duration) -> Self {
        self.stall_timeout = Some(stall);
        self
    }

    /// Connects as an operator holding `token`.
    pub fn operator(
        authenticator: Arc<dyn Authenticator>,
        cluster_id: impl Into<String>,
        token: impl Into<bytes::Bytes>,
        timeout: Duration,
    ) -> Self {
        Dialer {
            authenticator,
            hello: proto::Hello {
                cluster_id: cluster_id.into(),
                role: Some(proto::hello::Role::OperatorToken(token.into())),
                incarnation: 0,
            },
            timeout,
            stall_timeout: None,
        }
    }

    /// Connects as an application (`oar::client`) holding a client `token`
    /// (an operator token works too).
    pub fn client(
        authenticator: Arc<dyn Authenticator>,
        cluster_id: impl Into<String>,
        token: impl Into<bytes::Bytes>,
        timeout: Duration,
    ) -> Self {
        Dialer {
            authenticator,
            hello: proto::Hello {
                cluster_id: cluster_id.into(),
                role: Some(proto::hello::Role::ClientToken(token.into())),
                incarnation: 0,
            },
            timeout,
            stall_timeout: None,
        }
    }

    /// Opens an authenticated connection to the server at `addr`, ready
    /// for requests.
    ///
    /// # Errors
    /// [`DialError`].
    pub async fn dial(&self, addr: SocketAddr) -> Result<BoxedStream, DialError> {
        tokio::time::timeout(self.timeout, self.dial_unbounded(addr))
            .await
            .map_err(|_| DialError::Timeout(self.timeout))?
    }

    async fn dial_unbounded(&self, addr: SocketAddr) -> Result<BoxedStream, DialError> {
        let tcp = TcpStream::connect(addr).await.map_err(DialError::Connect)?;
        let _ = tcp.set_nodelay(true);
        if let Some(stall) = self.stall_timeout {
            watch_progress(&tcp, stall);
        }
        let mut stream = self.authenticator.connect(tcp, addr).await?;
        let hello = proto::frame::Kind::Hello(self.hello.clone());
        write_frame(&mut stream, hello)
            .await
            .map_err(|e| DialError::Auth(e.into()))?;
        let body = read_frame(&mut stream, HANDSHAKE_FRAME_BYTES_MAX)
            .await
            .map_err(|e: FrameError| DialError::Malformed(e.to_string()))?;
        let reply = match proto::Frame::decode(body).map(|f| f.kind) {
            Ok(Some(proto::frame::Kind::HelloReply(reply))) => reply,
            other => return Err(DialError::Malformed(format!("{other:?}"))),
        };
        match Status::try_from(reply.status) {
            Ok(Status::Accepted) => Ok(stream),
            Ok(status) => Err(HelloRefusal {
                status,
                detail: reply.detail,
            }
            .into()),
            Err(_) => Err(DialError::Malformed(format!("status {}", reply.status))),
        }
    }
}
