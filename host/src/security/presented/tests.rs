//! Reading the certificate a server presents: the name a node certificate
//! carries, a server from another CA refused, and a server that never
//! finishes the handshake given up on within the bound.

use std::net::{IpAddr, Ipv4Addr};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::security::certs::{self, Pem};

pub(crate) const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const BOUND: Duration = Duration::from_secs(5);

pub(crate) fn tls_of(ca: &Pem, own: &Pem) -> ClientTls {
    ClientTls {
        ca_pem: ca.cert.clone().into_bytes(),
        cert_pem: own.cert.clone().into_bytes(),
        key_pem: own.key.clone().into_bytes(),
    }
}

/// A TLS server at a loopback port presenting `server` (signed by the CA
/// in `tls`, which client certificates must chain to); it completes
/// handshakes and holds nothing.
pub(crate) async fn serve(tls: ClientTls) -> String {
    let config = crate::security::rustls_config::server_config(&tls).expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move { acceptor.accept(stream).await });
        }
    });
    addr
}

#[tokio::test]
async fn a_node_certificate_names_its_node() {
    let ca = certs::new_ca().expect("CA");
    let server = certs::node_cert(&ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let client = certs::node_cert(&ca, "n2", &[LOOPBACK], &[]).expect("n2");
    let addr = serve(tls_of(&ca, &server)).await;
    let identity = presented_identity(&addr, &tls_of(&ca, &client), BOUND)
        .await
        .expect("a handshake");
    assert_eq!(identity.role, Some(super::super::Role::Node));
    assert_eq!(identity.node_name.as_deref(), Some("n1"));
    assert_eq!(
        own_identity(&tls_of(&ca, &client)).node_name.as_deref(),
        Some("n2")
    );
}

#[tokio::test]
async fn a_server_of_another_ca_is_refused() {
    let ca = certs::new_ca().expect("CA");
    let other_ca = certs::new_ca().expect("other CA");
    let server = certs::node_cert(&other_ca, "n1", &[LOOPBACK], &[]).expect("n1");
    let client = certs::node_cert(&ca, "n2", &[LOOPBACK], &[]).expect("n2");
    let addr = serve(tls_of(&other_ca, &server)).await;
    let error = presented_identity(&addr, &tls_of(&ca, &client), BOUND)
        .await
        .expect_err("another CA");
    assert!(matches!(error, DialError::Handshake { .. }), "{error}");
}

#[tokio::test]
async fn a_silent_server_is_given_up_on_within_the_bound() {
    let ca = certs::new_ca().expect("CA");
    let client = certs::node_cert(&ca, "n2", &[LOOPBACK], &[]).expect("n2");
    // Accepts connections (the kernel completes them) but never answers.
    let listener = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let bound = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let error = presented_identity(&addr, &tls_of(&ca, &client), bound)
        .await
        .expect_err("no handshake");
    assert!(matches!(error, DialError::TimedOut { .. }), "{error}");
    assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
    drop(listener);
}

#[test]
fn server_names_are_the_host_part() {
    assert!(matches!(
        server_name("127.0.0.1:7400"),
        Ok(ServerName::IpAddress(_))
    ));
    assert!(matches!(
        server_name("[::1]:7400"),
        Ok(ServerName::IpAddress(_))
    ));
    assert!(matches!(
        server_name("node1.example:7400"),
        Ok(ServerName::DnsName(_))
    ));
    assert!(server_name("no-port").is_err());
}
