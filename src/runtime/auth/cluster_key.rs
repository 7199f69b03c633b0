//! The simulator's secure channel: a mutual challenge–response over a
//! shared cluster key (HMAC-SHA256), with nonces from a seeded generator so
//! that a simulated run replays byte for byte.
//!
//! ```text
//!   acceptor → connector   "OARK" ‖ nonce_a                      (20 bytes)
//!   connector → acceptor   nonce_c ‖ HMAC(key, "connect" ‖ nonce_a ‖ nonce_c)
//!   acceptor → connector   HMAC(key, "accept" ‖ nonce_c ‖ nonce_a)
//! ```
//!
//! It proves that both ends know the key; it neither encrypts nor protects
//! the stream that follows, so it is sound only where the network cannot
//! inject into an established connection (the simulator's). The peer's
//! address stands for its identity there, as the simulated network cannot
//! spoof a source address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ring::hmac;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::channel::{AuthError, AuthFuture, Authenticator, BoxedStream, Credential};

const MAGIC: [u8; 4] = *b"OARK";
const NONCE_BYTES: usize = 16;
const MAC_BYTES: usize = 32;

/// Challenge–response over a cluster key (see the module doc).
#[derive(Clone)]
pub struct ClusterKeyAuthenticator {
    key: hmac::Key,
    nonces: Arc<Mutex<ChaCha8Rng>>,
}

impl std::fmt::Debug for ClusterKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterKeyAuthenticator")
            .finish_non_exhaustive()
    }
}

impl ClusterKeyAuthenticator {
    /// Proves and checks knowledge of `cluster_key`; nonces come from
    /// `seed` (a simulated run's, for replay).
    pub fn new(cluster_key: &[u8], seed: u64) -> Self {
        ClusterKeyAuthenticator {
            key: hmac::Key::new(hmac::HMAC_SHA256, cluster_key),
            nonces: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        }
    }

    fn nonce(&self) -> [u8; NONCE_BYTES] {
        let mut nonce = [0u8; NONCE_BYTES];
        self.nonces
            .lock()
            .expect("nonce lock")
            .fill_bytes(&mut nonce);
        nonce
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(label);
        context.update(first);
        context.update(second);
        context.sign()
    }

    fn verify(&self, label: &[u8], first: &[u8], second: &[u8], tag: &[u8]) -> bool {
        let mut message = Vec::with_capacity(label.len() + first.len() + second.len());
        message.extend_from_slice(label);
        message.extend_from_slice(first);
        message.extend_from_slice(second);
        hmac::verify(&self.key, &message, tag).is_ok()
    }
}

impl Authenticator for ClusterKeyAuthenticator {
    fn accept(&self, mut stream: TcpStream) -> AuthFuture<(BoxedStream, Credential)> {
        let this = self.clone();
        Box::pin(async move {
            let peer = stream.peer_addr()?;
            let nonce_a = this.nonce();
            let mut challenge = MAGIC.to_vec();
            challenge.extend_from_slice(&nonce_a);
            stream.write_all(&challenge).await?;
            stream.flush().await?;
            let mut answer = [0u8; NONCE_BYTES + MAC_BYTES];
            stream.read_exact(&mut answer).await?;
            let (nonce_c, tag) = answer.split_at(NONCE_BYTES);
            if !this.verify(b"connect", &nonce_a, nonce_c, tag) {
                return Err(AuthError::Failed(
                    "the connecting side does not know the cluster key",
                ));
            }
            stream
                .write_all(this.mac(b"accept", nonce_c, &nonce_a).as_ref())
                .await?;
            stream.flush().await?;
            Ok((
                Box::new(stream) as BoxedStream,
                Credential::ClusterKey(peer.ip()),
            ))
        })
    }

    fn connect(&self, mut stream: TcpStream, _addr: SocketAddr) -> AuthFuture<BoxedStream> {
        let this = self.clone();
        Box::pin(async move {
            let mut challenge = [0u8; MAGIC.len() + NONCE_BYTES];
            stream.read_exact(&mut challenge).await?;
            let (magic, nonce_a) = challenge.split_at(MAGIC.len());
            if magic != MAGIC {
                return Err(AuthError::Failed("the server did not send a challenge"));
            }
            let nonce_c = this.nonce();
            let mut answer = nonce_c.to_vec();
            answer.extend_from_slice(this.mac(b"connect", nonce_a, &nonce_c).as_ref());
            stream.write_all(&answer).await?;
            stream.flush().await?;
            let mut tag = [0u8; MAC_BYTES];
            stream.read_exact(&mut tag).await?;
            if !this.verify(b"accept", &nonce_c, nonce_a, &tag) {
                return Err(AuthError::Failed(
                    "the server does not know the cluster key",
                ));
            }
            Ok(Box::new(stream) as BoxedStream)
        })
    }
}
