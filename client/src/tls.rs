//! [`ClientTls`]: the CA and certificate a client (or a node dialing a
//! peer) presents when the cluster runs with mutual TLS.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Why TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file (`CA certificate`, `certificate`, `key`).
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("{path} holds no PEM {what}")]
    NotPem {
        /// What was expected.
        what: &'static str,
        /// Its path.
        path: String,
    },
}

/// PEM bytes of the cluster's CA, this side's certificate and its private
/// key. The key is never printed (see the `Debug` impl).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA certificate peers' certificates must chain to.
    pub ca_pem: Vec<u8>,
    /// This side's certificate.
    pub cert_pem: Vec<u8>,
    /// This side's private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClientTls")
            .field("ca_pem", &self.ca_pem.len())
            .field("cert_pem", &self.cert_pem.len())
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl ClientTls {
    /// Read the three PEM files.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsFileError> {
        Ok(Self {
            ca_pem: read_pem(ca, "CA certificate", "CERTIFICATE")?,
            cert_pem: read_pem(cert, "certificate", "CERTIFICATE")?,
            key_pem: read_pem(key, "key", "PRIVATE KEY")?,
        })
    }
}

/// tonic's client configuration for `tls`: verify the server against the
/// CA and present the certificate. A free function, not a method, so that
/// [`ClientTls`] carries no gRPC type into APIs that hand it on (the
/// embedding builder's).
pub fn tonic_tls_config(tls: &ClientTls) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.ca_pem))
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
}

/// Read `path`, which must hold a PEM block whose label contains `label`
/// (so a key and a certificate passed the wrong way round are caught here,
/// with the file named, not as a handshake failure later).
fn read_pem(path: &Path, what: &'static str, label: &str) -> Result<Vec<u8>, TlsFileError> {
    let bytes = std::fs::read(path).map_err(|source| TlsFileError::Read {
        what,
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let has_block = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(label));
    if !has_block {
        return Err(TlsFileError::NotPem {
            what,
            path: path.display().to_string(),
        });
    }
    Ok(bytes)
}
