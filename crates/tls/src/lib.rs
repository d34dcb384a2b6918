//! TLS (rustls with the `ring` provider) for the server's listeners: the
//! REST and Neutron APIs with `--tls-cert`/`--tls-key`; the topology service
//! also with `--agent-ca`, then every agent must show a certificate signed
//! by that CA. And the agent's side: the CA it trusts the server by, and its
//! own certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub type Acceptor = tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {error}")]
    Pem {
        path: PathBuf,
        error: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the CA in {path}: {error}")]
    Ca { path: PathBuf, error: String },
    #[error("the certificate and key: {0}")]
    Config(#[from] rustls::Error),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |error| TlsError::Pem {
        path: path.into(),
        error,
    };
    let v = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if v.is_empty() {
        return Err(TlsError::NoCertificate(path.into()));
    }
    Ok(v)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::Pem {
        path: path.into(),
        error,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots of the CA in `path` (PEM, one or more certificates).
pub fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).map_err(|e| TlsError::Ca {
            path: path.into(),
            error: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A server's TLS configuration from PEM files: its certificate chain and
/// key, and, with `client_ca`, the CA every client's certificate must chain
/// to (mutual TLS). `alpn`: the protocols offered (`h2` for gRPC).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certs(cert)?;
    let key = self::key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Ca {
                path: ca.into(),
                error: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_single_cert(chain, key)?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// An acceptor for the REST and Neutron APIs (HTTP/1.1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<Acceptor, TlsError> {
    Ok(Acceptor::from(Arc::new(server_config(
        cert,
        key,
        None,
        &[b"http/1.1"],
    )?)))
}

/// An agent's configuration: the CA the server's certificate must chain to,
/// and the agent's own certificate and key (its host name is in it).
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(certs(cert)?, self::key(key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Whether the certificate `cert` names `host` (a DNS name, or an address
/// in its subject alternative names).
pub fn names(cert: &CertificateDer<'_>, host: &str) -> bool {
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
}
