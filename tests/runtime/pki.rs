//! A throwaway cluster CA for tests and benchmarks: server certificates
//! naming IP addresses, and the security settings that use them.
#![allow(dead_code, unreachable_pub)]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use oar::runtime::{Security, TlsAuthenticator};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The cluster id every test server shares.
pub const CLUSTER: &str = "test-cluster";
/// The operator token every test server accepts.
pub const OPERATOR_TOKEN: &str = "operator-secret";
/// The token test servers admit clients with.
pub const CLIENT_TOKEN: &str = "client-secret";

/// A CA that signs server certificates.
pub struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A fresh CA.
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&key).expect("ca cert");
        Pki {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate.
    pub fn ca(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// A certificate and key for a server at these IPs.
    pub fn server_cert(&self, ips: &[IpAddr]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = ips.iter().map(|&ip| SanType::IpAddress(ip)).collect();
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("cert");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    /// Writes the CA certificate and a server certificate and key for `ip`
    /// as PEM files into `dir`; returns the paths (ca, cert, key).
    pub fn write_server_files(&self, dir: &std::path::Path, ip: IpAddr) -> [std::path::PathBuf; 3] {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![SanType::IpAddress(ip)];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("cert");
        let paths = [
            dir.join("ca.pem"),
            dir.join(format!("server-{ip}.pem")),
            dir.join(format!("server-{ip}.key")),
        ];
        std::fs::write(&paths[0], &self.ca_pem).unwrap();
        std::fs::write(&paths[1], cert.pem()).unwrap();
        std::fs::write(&paths[2], key.serialize_pem()).unwrap();
        paths
    }

    /// A server's authenticator for these IPs.
    pub fn server(&self, ips: &[IpAddr]) -> TlsAuthenticator {
        let (cert, key) = self.server_cert(ips);
        TlsAuthenticator::server(&[self.ca()], vec![cert], key).expect("server tls")
    }

    /// The security settings of a test server at `ip`.
    pub fn security(&self, ip: IpAddr) -> Security {
        Security::new(
            Arc::new(self.server(&[ip])),
            CLUSTER,
            vec![OPERATOR_TOKEN.to_string()],
        )
        .with_client_tokens(vec![CLIENT_TOKEN.to_string()])
    }

    /// An application's dialer holding `token` (TLS checks the server; the
    /// token proves the client).
    pub fn client_dialer_with(&self, token: &str) -> oar::runtime::Dialer {
        oar::runtime::Dialer::client(
            Arc::new(self.operator()),
            CLUSTER,
            token.as_bytes().to_vec(),
            std::time::Duration::from_secs(2),
        )
    }

    /// An operator's authenticator.
    pub fn operator(&self) -> TlsAuthenticator {
        TlsAuthenticator::operator(&[self.ca()]).expect("operator tls")
    }
}

/// One CA for a whole test binary (key generation is cheap, but servers
/// of one test must share it).
pub fn shared() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::new)
}

impl Pki {
    /// An operator's dialer holding `token`.
    pub fn operator_dialer_with(&self, token: &str) -> oar::runtime::Dialer {
        oar::runtime::Dialer::operator(
            Arc::new(self.operator()),
            CLUSTER,
            token.as_bytes().to_vec(),
            std::time::Duration::from_secs(5),
        )
    }

    /// An operator's dialer with the right token.
    pub fn operator_dialer(&self) -> oar::runtime::Dialer {
        self.operator_dialer_with(OPERATOR_TOKEN)
    }
}
