//! `oarctl certs`: a cluster CA, one certificate per server naming its IP
//! address, and an operator token — everything a test or small cluster
//! needs to run authenticated, in one command.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// Writes `ca.pem`, `ca.key`, `server-<ip>.pem` / `server-<ip>.key` for
/// every IP, and `operator.token` into `out`. Keys are written owner-only.
pub(crate) fn make(out: &Path, ips: &[IpAddr]) -> Result<(), Box<dyn std::error::Error>> {
    fs::create_dir_all(out)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "oar cluster CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write(out, "ca.pem", &ca_cert.pem(), false)?;
    write(out, "ca.key", &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca_params, ca_key);
    for ip in ips {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::IpAddress(*ip)];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("oar server {ip}"));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(out, &format!("server-{ip}.pem"), &cert.pem(), false)?;
        write(out, &format!("server-{ip}.key"), &key.serialize_pem(), true)?;
    }
    write(out, "operator.token", &token()?, true)?;
    Ok(())
}

/// 32 random bytes from the OS, hex-encoded.
fn token() -> Result<String, Box<dyn std::error::Error>> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness from the OS")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write(dir: &Path, name: &str, text: &str, secret: bool) -> std::io::Result<()> {
    let path = dir.join(name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    use std::io::Write;
    options.open(&path)?.write_all(text.as_bytes())
}
