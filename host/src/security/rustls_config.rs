//! rustls configurations from a node's TLS files, for the TLS clusterhost
//! speaks itself rather than through tonic: dialing a node to read its
//! certificate ([`super::presented`]) and serving the ops listener
//! (`crate::ops`). tonic builds the gRPC port's from the same files
//! (`crate::api::server`), under the same rule as [`server_config`]: a
//! client certificate from the cluster's CA is required.

use std::sync::Arc;

use clusterhost_client::ClientTls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

/// The node's TLS files do not make a configuration (they are checked when
/// the node starts, so at start-up or not at all).
#[derive(Debug, thiserror::Error)]
#[error("TLS material: {0}")]
pub struct TlsMaterialError(String);

fn material(error: impl std::fmt::Display) -> TlsMaterialError {
    TlsMaterialError(error.to_string())
}

/// A server presenting this node's certificate that requires every client
/// to present one the cluster's CA signed (any role: what it may do is
/// decided per call, where there are calls). Plaintext, no certificate and
/// another CA's fail the handshake. Speaks HTTP/1.1 only (ALPN), which is
/// all the ops listener serves.
pub fn server_config(tls: &ClientTls) -> Result<ServerConfig, TlsMaterialError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(tls)?), provider.clone())
            .build()
            .map_err(material)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(material)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain(tls)?, key(tls)?)
        .map_err(material)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client that verifies the server against the cluster's CA and
/// presents this node's certificate.
pub fn client_config(tls: &ClientTls) -> Result<ClientConfig, TlsMaterialError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(material)?
        .with_root_certificates(roots(tls)?)
        .with_client_auth_cert(chain(tls)?, key(tls)?)
        .map_err(material)
}

fn roots(tls: &ClientTls) -> Result<RootCertStore, TlsMaterialError> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots.add(ca.map_err(material)?).map_err(material)?;
    }
    Ok(roots)
}

fn chain(tls: &ClientTls) -> Result<Vec<CertificateDer<'static>>, TlsMaterialError> {
    CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(material)
}

fn key(tls: &ClientTls) -> Result<PrivateKeyDer<'static>, TlsMaterialError> {
    PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(material)
}
