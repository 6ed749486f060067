//! The certificate SIP over TLS presents: the operator's (PEM files from config), or else a
//! self-signed one generated into the data directory at first start, so TLS works out of the box
//! for room systems that accept it (most let the administrator trust it, or do not verify).
//! rustls with the aws-lc-rs provider, as the rest of the workspace.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files given by the operator.
    Files { cert: PathBuf, key: PathBuf },
    /// `cert.pem` and `key.pem` in this directory, generated there if missing, for these names.
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The names a generated certificate is for: the advertised address and localhost.
pub fn default_names(ip: IpAddr) -> Vec<String> {
    vec![ip.to_string(), "localhost".into()]
}

/// Load (or first generate) the certificate and build the server configuration.
pub fn server_config(source: &CertSource) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = match source {
        CertSource::Files { cert, key } => (cert.clone(), key.clone()),
        CertSource::SelfSigned { dir, names } => {
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !cert.exists() || !key.exists() {
                generate(dir, &cert, &key, names)?;
            }
            (cert, key)
        }
    };
    let cert_pem = read(&cert_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path });
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)
        .map_err(|_| TlsError::NoKey { path: key_path })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

fn generate(dir: &Path, cert: &Path, key: &Path, names: &[String]) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
    };
    write(key, certified.signing_key.serialize_pem())?;
    restrict(key);
    write(cert, certified.cert.pem())?;
    tracing::info!(cert = %cert.display(), "generated a self-signed certificate for SIP over TLS");
    Ok(())
}

/// The private key is for this user only.
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot restrict the key file's permissions");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = std::env::temp_dir().join(format!("convene-sip-tls-{}", std::process::id()));
        let source = CertSource::SelfSigned {
            dir: dir.clone(),
            names: default_names("127.0.0.1".parse().unwrap()),
        };
        server_config(&source).unwrap();
        let first = std::fs::read(dir.join("cert.pem")).unwrap();
        server_config(&source).unwrap();
        assert_eq!(std::fs::read(dir.join("cert.pem")).unwrap(), first);
        std::fs::write(dir.join("cert.pem"), "nonsense").unwrap();
        assert!(matches!(
            server_config(&source),
            Err(TlsError::NoCertificate { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
