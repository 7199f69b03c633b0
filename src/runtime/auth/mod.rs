//! The front door: who is on the other end of a connection, proven before
//! anything it sends is read as a request.
//!
//! Every connection, in both directions, goes through two steps:
//!
//! 1. **A secure channel** from an [`Authenticator`]: mutual TLS with one
//!    cluster CA in production ([`TlsAuthenticator`]), or, in the
//!    simulator, a challenge–response over a cluster key
//!    ([`ClusterKeyAuthenticator`]), which madsim can run deterministically
//!    where TLS cannot (its handshake draws on the OS's randomness and
//!    clock). The channel yields a [`Credential`].
//! 2. **A `Hello`** from the side that opened the connection: its cluster id
//!    and its role, a server (with its Raft address, which the credential
//!    must vouch for) or an operator (with a token). The answer is a
//!    `HelloReply`; only then are requests read, and only those the role
//!    may send.
//!
//! ```text
//!   dialer ── TCP ──► accept ── channel (TLS / key) ──► Credential
//!          ── Hello{cluster, server_addr | token} ──►  Identity::Server(addr) | Operator
//!          ◄── HelloReply ──                           then frames, checked per role
//! ```

mod channel;
mod cluster_key;
mod dialer;
mod hello;
mod security;
mod tls;

pub use channel::{
    AsyncStream, AuthError, AuthFuture, Authenticator, BoxedStream, Credential, Insecure,
};
pub use cluster_key::ClusterKeyAuthenticator;
pub(crate) use dialer::HANDSHAKE_FRAME_BYTES_MAX;
pub use dialer::{DialError, Dialer};
pub use hello::{HelloRefusal, Identity};
pub(crate) use hello::{accept_hello, accepted as hello_accepted};
pub use security::Security;
pub use tls::{TlsAuthenticator, TlsError};
