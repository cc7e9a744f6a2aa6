//! A node's ops listener (`run --metrics-listen`) as the operating tests
//! use it: nodes started with one, plain HTTP requests to it (HTTPS to a
//! node with TLS), and `/metrics` scraped and parsed with a Prometheus
//! text-format parser.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clusterhost_client::ClientTls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::paths::kv_plugin;
use crate::scenario::{MEMBERSHIP_TIMEOUT, fast};
use crate::{NodeOptions, TestCluster};

/// Longest one HTTP request to a node's ops listener may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A scrape: each sample's value by its name and labels
/// (`name{k="v",...}`, labels sorted).
pub type Scraped = BTreeMap<String, f64>;

/// A free loopback port for a node's ops listener (released before the
/// node binds it).
///
/// The port comes from below the kernel's ephemeral range (32768 and up by
/// default): a port the kernel hands out as free is free only until an
/// outgoing connection takes it as its source port, and a node cannot move
/// its ops listener the way the harness moves a colliding gRPC port (the
/// test already holds the address). Each test process starts at its own
/// point of the range and walks it, taking the first port it can bind.
pub fn free_ops_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..OPS_PORT_SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = OPS_PORT_FLOOR + (start.wrapping_add(step) % OPS_PORT_SPAN) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("a bound address");
        }
    }
    panic!("no free port in {OPS_PORT_FLOOR}..+{OPS_PORT_SPAN}")
}

/// The ops ports tests use: below the kernel's ephemeral range.
const OPS_PORT_FLOOR: u16 = 20_000;
const OPS_PORT_SPAN: u32 = 12_000;

/// `fast(id)` with the ops listener on `ops`.
pub fn with_ops(id: u64, ops: SocketAddr) -> NodeOptions {
    let mut options = fast(id);
    options.extra_args = vec!["--metrics-listen".to_string(), ops.to_string()];
    options
}

/// Three kv nodes (ids 1, 2, 3), all voters, each serving its ops listener
/// at the address returned for it.
pub async fn three_nodes_with_ops() -> (TestCluster, Vec<SocketAddr>) {
    let ops: Vec<SocketAddr> = (0..3).map(|_| free_ops_addr()).collect();
    let mut cluster = TestCluster::start_bootstrap_with(&kv_plugin(), with_ops(1, ops[0])).await;
    cluster.start_joining(0, with_ops(2, ops[1])).await;
    cluster.start_joining(1, with_ops(3, ops[2])).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    (cluster, ops)
}

/// `GET path` over HTTP/1.1: the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|error| format!("connect {addr}: {error}"))?;
        get(stream, addr, path).await
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("GET {path} on {addr} timed out"))?
}

/// `GET path` over HTTPS to a node with TLS: the server is checked against
/// `tls`'s CA (and must be valid for `addr`'s IP); `tls`'s certificate is
/// presented when `present_certificate`.
pub async fn https_get(
    addr: SocketAddr,
    path: &str,
    tls: &ClientTls,
    present_certificate: bool,
) -> Result<(u16, String), String> {
    let config = client_config(tls, present_certificate)?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|error| format!("connect {addr}: {error}"))?;
        let stream = TlsConnector::from(Arc::new(config))
            .connect(ServerName::IpAddress(addr.ip().into()), stream)
            .await
            .map_err(|error| format!("TLS handshake with {addr}: {error}"))?;
        get(stream, addr, path).await
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("GET {path} on {addr} timed out"))?
}

fn client_config(tls: &ClientTls, present_certificate: bool) -> Result<ClientConfig, String> {
    let text = |error: &dyn std::fmt::Display| error.to_string();
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots
            .add(ca.map_err(|error| text(&error))?)
            .map_err(|error| text(&error))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| text(&error))?
        .with_root_certificates(roots);
    if !present_certificate {
        return Ok(builder.with_no_client_auth());
    }
    let chain = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| text(&error))?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|error| text(&error))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|error| text(&error))
}

/// One `GET path` on an open connection, read to its end.
async fn get<S>(mut stream: S, addr: SocketAddr, path: &str) -> Result<(u16, String), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| error.to_string())?;
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes).await {
        Ok(_) => {}
        // A TLS peer that closes without close_notify after a whole
        // response: the response counts.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty() => {}
        Err(error) => return Err(error.to_string()),
    }
    let text = String::from_utf8(bytes).map_err(|error| error.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line in {head}"))?;
    Ok((code, body.to_string()))
}

/// Scrape `/metrics` and parse it with a Prometheus text-format parser.
pub async fn scrape(addr: SocketAddr) -> Result<Scraped, String> {
    parse_scrape(http_get(addr, "/metrics").await?)
}

/// Scrape `/metrics` of a node with TLS, presenting `tls`'s certificate.
pub async fn scrape_tls(addr: SocketAddr, tls: &ClientTls) -> Result<Scraped, String> {
    parse_scrape(https_get(addr, "/metrics", tls, true).await?)
}

/// A `/metrics` answer, parsed.
fn parse_scrape((code, body): (u16, String)) -> Result<Scraped, String> {
    if code != 200 {
        return Err(format!("/metrics answered {code}: {body}"));
    }
    let lines = body.lines().map(|line| Ok(line.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|error| error.to_string())?;
    let mut values = BTreeMap::new();
    for sample in scrape.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => value,
            _ => continue,
        };
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{value}\""))
            .collect();
        labels.sort();
        let key = if labels.is_empty() {
            sample.metric
        } else {
            format!("{}{{{}}}", sample.metric, labels.join(","))
        };
        values.insert(key, value);
    }
    Ok(values)
}

/// The value of `key` in a scrape; panics, listing what there is, when
/// it is missing.
pub fn value(metrics: &Scraped, key: &str) -> f64 {
    *metrics
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in the scrape: {:?}", metrics.keys()))
}

/// The value of `key`, 0 when the scrape has none (a labelled series
/// appears only once something was recorded under its labels).
pub fn value_or_zero(metrics: &Scraped, key: &str) -> f64 {
    metrics.get(key).copied().unwrap_or(0.0)
}
