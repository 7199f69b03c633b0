//! Mutual TLS (rustls with the ring provider): one cluster CA signs every
//! server's certificate, whose subject alternative names carry the server's
//! IP address. Operators connect without a certificate and present a token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::channel::{AuthError, AuthFuture, Authenticator, BoxedStream, Credential};

/// Why TLS credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// rustls refused the certificates or key (e.g. a key that does not
    /// match the certificate).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The client-certificate verifier could not be built (e.g. no CA).
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// Mutual TLS for servers, or server-verifying TLS for operators.
#[derive(Clone)]
pub struct TlsAuthenticator {
    /// `None` for an operator's, which only connects.
    acceptor: Option<TlsAcceptor>,
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAuthenticator")
            .field("accepts", &self.acceptor.is_some())
            .finish_non_exhaustive()
    }
}

/// ring rather than aws-lc-rs: it builds with only a C compiler (no cmake)
/// on every machine the project targets. Its lack of post-quantum key
/// exchange (the deprecation) matters for traffic recorded today and
/// decrypted decades later; revisit when aws-lc-rs builds here as simply.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert.clone())?;
    }
    Ok(Arc::new(roots))
}

fn certs_from_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |detail: String| TlsError::Pem {
        path: path.display().to_string(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no certificate".into()));
    }
    Ok(certs)
}

fn key_from_pem(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

impl TlsAuthenticator {
    /// A server's: accepts connections from holders of a certificate `ca`
    /// signed (peers) and from clients without one (operators, who must
    /// then present a token); connects to peers with `cert_chain`.
    ///
    /// # Errors
    /// [`TlsError`] for an unusable CA, certificate or key.
    pub fn server(
        ca: &[CertificateDer<'static>],
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let roots = roots(ca)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(cert_chain.clone(), key.clone_key())?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(cert_chain, key)?;
        Ok(TlsAuthenticator {
            acceptor: Some(TlsAcceptor::from(Arc::new(server))),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// [`server`](Self::server) from PEM files: the CA certificate(s), this
    /// server's certificate chain, and its private key.
    ///
    /// # Errors
    /// [`TlsError`].
    pub fn server_from_pem_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Self::server(
            &certs_from_pem(ca)?,
            certs_from_pem(cert)?,
            key_from_pem(key)?,
        )
    }

    /// An operator's (`oarctl`): verifies servers against `ca`, presents no
    /// certificate; authorization comes from the token in its `Hello`.
    ///
    /// # Errors
    /// [`TlsError`] for an unusable CA.
    pub fn operator(ca: &[CertificateDer<'static>]) -> Result<Self, TlsError> {
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth();
        Ok(TlsAuthenticator {
            acceptor: None,
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// [`operator`](Self::operator) from the CA's PEM file.
    ///
    /// # Errors
    /// [`TlsError`].
    pub fn operator_from_pem_file(ca: &Path) -> Result<Self, TlsError> {
        Self::operator(&certs_from_pem(ca)?)
    }
}

impl Authenticator for TlsAuthenticator {
    fn accept(&self, stream: TcpStream) -> AuthFuture<(BoxedStream, Credential)> {
        let acceptor = self.acceptor.clone();
        Box::pin(async move {
            let acceptor = acceptor.ok_or(AuthError::ConnectOnly)?;
            let stream = acceptor.accept(stream).await?;
            let credential = match stream.get_ref().1.peer_certificates() {
                Some([leaf, ..]) => Credential::Certificate(leaf.clone().into_owned()),
                _ => Credential::Anonymous,
            };
            Ok((Box::new(stream) as BoxedStream, credential))
        })
    }

    fn connect(&self, stream: TcpStream, addr: SocketAddr) -> AuthFuture<BoxedStream> {
        let connector = self.connector.clone();
        Box::pin(async move {
            // The server's certificate must name the IP we dialed.
            let name = ServerName::IpAddress(addr.ip().into());
            let stream = connector.connect(name, stream).await?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }
}
