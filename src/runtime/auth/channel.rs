//! The secure-channel step: an [`Authenticator`] turns a raw TCP stream into
//! a stream whose other end proved a [`Credential`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream after the secure channel is up (TLS, or plain TCP under a
/// key-proven or insecure channel).
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// An authenticated connection's stream.
pub type BoxedStream = Box<dyn AsyncStream>;

/// A future an [`Authenticator`] returns.
pub type AuthFuture<T> = Pin<Box<dyn Future<Output = Result<T, AuthError>> + Send>>;

/// Sets up the secure channel on new connections, both ways.
///
/// Implementations: [`TlsAuthenticator`](super::TlsAuthenticator) (mutual
/// TLS, production), [`ClusterKeyAuthenticator`](super::ClusterKeyAuthenticator)
/// (the simulator's), [`Insecure`] (nothing; an explicit opt-out).
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Server side: secures a connection a stranger opened; what the other
    /// end proved is in the [`Credential`].
    ///
    /// # Errors
    /// The channel could not be set up (bad certificate, wrong key, I/O).
    fn accept(&self, stream: TcpStream) -> AuthFuture<(BoxedStream, Credential)>;

    /// Client side: secures a connection this side opened to `addr`, and
    /// checks that the other end is the server at `addr`.
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    fn connect(&self, stream: TcpStream, addr: SocketAddr) -> AuthFuture<BoxedStream>;

    /// True only for [`Insecure`]: servers warn when they start with it.
    fn checks_nothing(&self) -> bool {
        false
    }
}

/// What the secure channel proved about the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A certificate the cluster CA signed (TLS).
    Certificate(CertificateDer<'static>),
    /// Knowledge of the cluster key, from this network address (the
    /// simulator, whose network cannot spoof a source address).
    ClusterKey(IpAddr),
    /// Nothing: a TLS client without a certificate (an operator, which must
    /// still present a token).
    Anonymous,
    /// Nothing was checked: the server runs insecure, by explicit choice.
    Unchecked(IpAddr),
}

impl Credential {
    /// Whether this credential vouches for the server at `addr`: its
    /// certificate names `addr`'s IP, or it proved the key from that IP.
    /// Several servers on one IP are one principal.
    pub fn vouches_for_server(&self, addr: SocketAddr) -> bool {
        match self {
            Credential::Certificate(der) => {
                let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
                    return false;
                };
                let name = ServerName::IpAddress(addr.ip().into());
                cert.verify_is_valid_for_subject_name(&name).is_ok()
            }
            Credential::ClusterKey(ip) | Credential::Unchecked(ip) => *ip == addr.ip(),
            Credential::Anonymous => false,
        }
    }
}

/// Why a secure channel could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Reading or writing the handshake failed (includes TLS refusals:
    /// a certificate the CA did not sign, or none where one is required).
    #[error("handshake I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The other end does not know the cluster key, or answered with bytes
    /// that are not the handshake.
    #[error("authentication failed: {0}")]
    Failed(&'static str),
    /// This authenticator cannot accept connections (an operator's).
    #[error("this authenticator only connects")]
    ConnectOnly,
}

/// No channel security at all: every connection is taken at its word.
/// Only for a deliberately insecure deployment (`--insecure`) and tests of
/// what insecurity allows; servers log a warning when they start with it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Insecure;

impl Authenticator for Insecure {
    fn accept(&self, stream: TcpStream) -> AuthFuture<(BoxedStream, Credential)> {
        Box::pin(async move {
            let peer = stream.peer_addr()?;
            Ok((
                Box::new(stream) as BoxedStream,
                Credential::Unchecked(peer.ip()),
            ))
        })
    }

    fn connect(&self, stream: TcpStream, _addr: SocketAddr) -> AuthFuture<BoxedStream> {
        Box::pin(async move { Ok(Box::new(stream) as BoxedStream) })
    }

    fn checks_nothing(&self) -> bool {
        true
    }
}
