//! The ops listener (`run --metrics-listen ADDR`): a small HTTP/1.1 server
//! beside the gRPC port for what operators point tools at. When the node
//! has TLS (`--tls-*`), it serves HTTPS only, on every address loopback
//! included, and every client must present a certificate from the
//! cluster's CA (any role: Prometheus scrapes with a client certificate);
//! without TLS it serves plain HTTP, which `check_exposure`
//! (`crate::security::exposure`) allows only on loopback unless
//! `--insecure`.
//!
//! - `GET /metrics`: Prometheus metrics ([`crate::metrics`]).
//! - `GET /healthz`, `GET /readyz`: 200 or 503 ([`health`]).
//! - `GET /`: a status page that refreshes itself from `GET /status.json`
//!   ([`status`]); embedded in the binary, it loads nothing from elsewhere.
//!
//! hyper serves it (the one tonic already builds); nothing here is on the
//! write path. Handlers read Raft's view, gossip's and the state machine's
//! status, as the gRPC status call does.
//!
//! - [`health`]: the health and readiness decisions (pure).
//! - [`status`]: the status page's JSON and its rate history.

pub mod health;
pub mod status;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use clusterhost_client::ClientTls;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::api::report::{self, SelfInfo};
use crate::consensus::{Consensus, MachineStatus, Role};
use crate::discovery::DatagramCounters;
use crate::limits::{
    OPS_HTTP_CONNECTIONS_MAX, OPS_HTTP_HEADER_TIMEOUT, STATUS_SAMPLE_INTERVAL,
    TLS_HANDSHAKE_TIMEOUT,
};
use crate::membership::LocalMember;
use crate::membership::autopilot::SharedView;
use crate::metrics::{self, Metrics, Sample};
use crate::plugin::PluginHandle;
use crate::plugin::output_gate::OutputGate;
use status::{RateHistory, RatePoint};

/// The status page, served as it is.
const STATUS_PAGE: &str = include_str!("status_page.html");

/// What the handlers read.
#[derive(Clone)]
pub struct OpsSources {
    /// This node's membership state.
    pub local: Arc<LocalMember>,
    /// Raft.
    pub consensus: Consensus,
    /// What the state machine publishes.
    pub machine: watch::Receiver<MachineStatus>,
    /// What gossip sees.
    pub view: SharedView,
    /// The data dir, probed by `/healthz`.
    pub data_dir: PathBuf,
    /// The node's metrics.
    pub metrics: Metrics,
    /// The plugin, for its state's size.
    pub plugin: PluginHandle,
    /// Write and read counters over the last minutes.
    pub rates: RateHistory,
    /// Gossip datagrams the transport dropped or could not send.
    pub gossip: DatagramCounters,
    /// Plugin output dropped by the node's gate.
    pub plugin_output: OutputGate,
}

/// The running listener and its helper tasks. Dropping it does not stop
/// them; call [`OpsHandle::shutdown`].
pub struct OpsHandle {
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    leader_watch: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl OpsHandle {
    /// Stop serving and wait for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.leader_watch.abort();
        self.sampler.abort();
        let _ = self.server.await;
    }
}

/// The bound ops port, and the TLS it serves when the node has TLS.
pub struct OpsListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

/// Serve the ops endpoints on `listener` and count leader changes.
pub fn spawn(listener: OpsListener, sources: OpsSources) -> OpsHandle {
    let (stop, stopped) = watch::channel(false);
    let leader_watch = tokio::spawn(count_leader_changes(sources.clone()).in_current_span());
    let sampler = tokio::spawn(sample_rates(sources.clone()).in_current_span());
    let server = tokio::spawn(serve(listener, Arc::new(sources), stopped).in_current_span());
    OpsHandle {
        stop,
        server,
        leader_watch,
        sampler,
    }
}

/// Every [`STATUS_SAMPLE_INTERVAL`], record the counters the page's rates
/// come from.
async fn sample_rates(sources: OpsSources) {
    let mut ticks = tokio::time::interval(STATUS_SAMPLE_INTERVAL);
    loop {
        ticks.tick().await;
        sources.rates.push(RatePoint {
            time_ms: crate::consensus::now_ms(),
            applied_index: sources.consensus.view().applied_index,
            requests: sources.metrics.request_totals(),
        });
    }
}

/// Count every change of the leader this node knows to another known node.
async fn count_leader_changes(sources: OpsSources) {
    let consensus = &sources.consensus;
    let mut known = None;
    loop {
        let view = consensus.view();
        if view.role == Role::Shutdown {
            return;
        }
        if view.leader.is_some() && view.leader != known {
            sources.metrics.leader_changed();
        }
        if view.leader.is_some() {
            known = view.leader;
        }
        consensus
            .wait_leader_change(view.leader, crate::limits::REQUEST_TIMEOUT)
            .await;
    }
}

/// Accept connections until `stopped` turns true, at most
/// [`OPS_HTTP_CONNECTIONS_MAX`] served at once (a TLS handshake holds its
/// slot, for at most [`TLS_HANDSHAKE_TIMEOUT`]).
async fn serve(
    listener: OpsListener,
    sources: Arc<OpsSources>,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(OPS_HTTP_CONNECTIONS_MAX));
    loop {
        // Stopping is heard while every slot is taken, too.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        let Ok(slot) = slot else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.tcp.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!("ops listener: accept failed: {error}");
                continue;
            }
        };
        let (sources, tls) = (sources.clone(), listener.tls.clone());
        tokio::spawn(
            async move {
                match tls {
                    None => serve_connection(stream, sources).await,
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) => serve_connection(stream, sources).await,
                            // Plaintext, no certificate, another CA's.
                            Ok(Err(error)) => tracing::debug!("ops TLS handshake: {error}"),
                            Err(_) => tracing::debug!("ops TLS handshake timed out"),
                        }
                    }
                }
                drop(slot);
            }
            .in_current_span(),
        );
    }
}

/// Serve HTTP/1.1 requests on one connection, plain or TLS, until it ends.
async fn serve_connection<S>(stream: S, sources: Arc<OpsSources>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let sources = sources.clone();
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        async move { Ok::<_, Infallible>(route(&sources, &method, &path).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(OPS_HTTP_HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!("ops connection: {error}");
    }
}

/// Answer one request.
async fn route(sources: &OpsSources, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if *method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
    }
    match path {
        "/metrics" => match sources.metrics.encode(&sample(sources)) {
            Ok(body) => respond(StatusCode::OK, metrics::CONTENT_TYPE, body),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
        },
        "/healthz" => {
            let data_dir = sources.data_dir.clone();
            let storage = run_blocking(move || health::probe_storage(&data_dir)).await;
            verdict(health::healthz(&sources.consensus.view(), storage))
        }
        "/readyz" => verdict(health::readyz(&sources.consensus.view())),
        "/" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            STATUS_PAGE.to_string(),
        ),
        "/status.json" => {
            let data_dir = sources.data_dir.clone();
            let storage = run_blocking(move || health::probe_storage(&data_dir)).await;
            respond(
                StatusCode::OK,
                "application/json",
                status_json(sources, storage).to_string(),
            )
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The status page's JSON, from the same reports `status` and `members`
/// answer over gRPC.
fn status_json(sources: &OpsSources, storage: Result<(), String>) -> serde_json::Value {
    let me = SelfInfo {
        node_id: sources.local.node_id,
        rpc_addr: sources.local.rpc_addr.clone(),
        gossip_addr: sources.local.gossip_addr.to_string(),
        leaving: sources.local.is_leaving(),
    };
    let consensus = sources.consensus.view();
    let cluster = sources.view.get();
    let machine = sources.machine.borrow().clone();
    status::status_json(&status::StatusInput {
        status: &report::status(&me, &consensus, &cluster, &machine),
        members: &report::members(&me, &consensus, &cluster, &machine),
        history: &machine.history,
        healthy: &health::healthz(&consensus, storage),
        ready: &health::readyz(&consensus),
        points: &sources.rates.points(),
    })
}

/// Run blocking file I/O off the async threads.
async fn run_blocking(
    probe: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    tokio::task::spawn_blocking(probe)
        .await
        .unwrap_or_else(|error| Err(format!("the probe did not finish: {error}")))
}

/// What Raft, gossip and the state machine report now.
fn sample(sources: &OpsSources) -> Sample {
    let view = sources.consensus.view();
    let cluster = sources.view.get();
    let peers = cluster.peers;
    let alive = peers.values().filter(|peer| peer.alive).count() as u64;
    let machine = sources.machine.borrow();
    let plugin_output = sources.plugin_output.dropped();
    Sample {
        term: view.term,
        role: view.role.name(),
        leader: view.leader,
        last_log_index: view.last_log_index,
        committed_index: view.committed_index,
        applied_index: view.applied_index,
        snapshot_index: view.snapshot_index.unwrap_or(0),
        // Gossip lists peers; this node is alive as long as it answers.
        gossip_alive: alive + 1,
        gossip_dead: peers.len() as u64 - alive,
        gossip_ignored: cluster.ignored_unknown as u64,
        cluster_version: machine.history.cluster_version,
        deploys_failed: machine
            .history
            .records
            .iter()
            .filter(|record| record.version.is_none())
            .count() as u64,
        plugin_state_bytes: sources.plugin.state_size_bytes().unwrap_or(0),
        sessions_open: machine.sessions_open as u64,
        corrupt_replicas: machine.alarms.corrupt.len() as u64,
        no_majority_digest: machine.alarms.no_majority.is_some(),
        gossip_datagrams_dropped: sources.gossip.dropped(),
        gossip_datagrams_oversized: sources.gossip.oversized(),
        plugin_output_dropped_call_cap_bytes: plugin_output.call_cap_bytes,
        plugin_output_dropped_rate_bytes: plugin_output.rate_bytes,
    }
}

fn verdict(verdict: health::Verdict) -> Response<Full<Bytes>> {
    match verdict {
        Ok(detail) => text(StatusCode::OK, &format!("ok: {detail}\n")),
        Err(detail) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{detail}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// Bind the ops listener, serving mutual TLS when `tls` is given, with a
/// clear error when the port is taken or the TLS files are unusable.
pub async fn bind(
    addr: std::net::SocketAddr,
    tls: Option<&ClientTls>,
) -> Result<OpsListener, String> {
    let tls = tls
        .map(|tls| {
            crate::security::rustls_config::server_config(tls)
                .map(|config| TlsAcceptor::from(Arc::new(config)))
                .map_err(|error| format!("cannot serve metrics over TLS: {error}"))
        })
        .transpose()?;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|error| format!("cannot serve metrics on {addr}: {error}"))?;
    Ok(OpsListener { tcp, tls })
}
