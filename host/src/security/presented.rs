//! Which certificate a node presents at an address: a TLS handshake with
//! this node's own certificate, verified against the cluster's CA and the
//! address dialed, and nothing sent after it. The autopilot asks this
//! before it believes a gossiped address (see
//! `crate::membership::identity`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use clusterhost_client::ClientTls;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use super::peer::{PeerIdentity, identity_of};

/// Why no certificate could be read at an address.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// This node's own TLS files are unusable (a bug: they were checked at
    /// start).
    #[error("this node's TLS material: {0}")]
    OwnTls(String),
    /// The address is not `host:port`.
    #[error("bad address {0}")]
    BadAddress(String),
    /// No TCP connection or no completed handshake in time.
    #[error("no TLS handshake with {addr} within {timeout:?}")]
    TimedOut {
        /// The address dialed.
        addr: String,
        /// The bound.
        timeout: Duration,
    },
    /// Connecting or the handshake failed (a certificate from another CA,
    /// or one not valid for the address, ends here).
    #[error("TLS handshake with {addr}: {reason}")]
    Handshake {
        /// The address dialed.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// The identity in the certificate the server at `rpc_addr` presents to a
/// client holding `tls`, within `timeout`.
pub async fn presented_identity(
    rpc_addr: &str,
    tls: &ClientTls,
    timeout: Duration,
) -> Result<PeerIdentity, DialError> {
    let connector = TlsConnector::from(Arc::new(client_config(tls)?));
    let server_name = server_name(rpc_addr)?;
    let handshake = async {
        let stream = tokio::net::TcpStream::connect(rpc_addr).await?;
        connector.connect(server_name, stream).await
    };
    let stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| DialError::TimedOut {
            addr: rpc_addr.to_string(),
            timeout,
        })?
        .map_err(|error| DialError::Handshake {
            addr: rpc_addr.to_string(),
            reason: error.to_string(),
        })?;
    let (_, connection) = stream.get_ref();
    let leaf = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or_else(|| DialError::Handshake {
            addr: rpc_addr.to_string(),
            reason: "the server presented no certificate".to_string(),
        })?;
    Ok(identity_of(leaf.as_ref()))
}

/// The node id the server at `rpc_addr` reports for itself (its `Status`)
/// to a client holding `tls`, over mutual TLS, within `timeout`. Read with
/// the certificate, so an address is believed for the id its own server
/// answers, never for another id gossip claims there.
pub async fn answered_node_id(
    rpc_addr: &str,
    tls: &ClientTls,
    timeout: Duration,
) -> Result<u64, String> {
    let ask = async {
        let mut client = clusterhost_client::Client::connect_with(rpc_addr, Some(tls))
            .await
            .map_err(|error| error.to_string())?;
        let status = client.status().await.map_err(|error| error.to_string())?;
        Ok(status.node_id)
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("no status from {rpc_addr} within {timeout:?}"))?
}

/// The identity this node's own certificate names.
pub fn own_identity(tls: &ClientTls) -> PeerIdentity {
    CertificateDer::pem_slice_iter(&tls.cert_pem)
        .next()
        .and_then(Result::ok)
        .map(|der| identity_of(der.as_ref()))
        .unwrap_or_default()
}

fn client_config(tls: &ClientTls) -> Result<ClientConfig, DialError> {
    super::rustls_config::client_config(tls).map_err(|error| DialError::OwnTls(error.to_string()))
}

/// The name the server's certificate must be valid for: the host part of
/// `host:port` (an IP address, as node certificates carry, or a DNS name).
fn server_name(rpc_addr: &str) -> Result<ServerName<'static>, DialError> {
    let bad = || DialError::BadAddress(rpc_addr.to_string());
    let (host, _port) = rpc_addr.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|_| bad())
}

#[cfg(test)]
pub(crate) mod tests;
