//! Serving a node's gRPC port: the public `Cluster` service, the internal
//! Raft service and (when asked for) reflection, on a listener the caller
//! bound, until the caller's shutdown future resolves. Every request is
//! counted and timed ([`super::grpc_metrics`]). With TLS, every connection
//! must present a certificate from the cluster's CA and every call passes
//! [`super::authorize`].

use std::future::Future;

use clusterhost_client::ClientTls;
use clusterhost_client::proto::{FILE_DESCRIPTOR_SET, cluster_server::ClusterServer};
use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::Instrument;

use super::ClusterService;
use super::authorize::AuthorizeLayer;
use super::cut_connections::{Cutter, cuttable};
use super::grpc_metrics::GrpcMetricsLayer;
use crate::consensus::Consensus;
use crate::limits::{
    CLIENT_GRPC_MESSAGE_BYTES_MAX, CLIENT_GRPC_RESPONSE_BYTES_MAX, GRPC_CALL_TIMEOUT,
    GRPC_HEADER_LIST_BYTES_MAX, GRPC_KEEPALIVE_INTERVAL, GRPC_KEEPALIVE_TIMEOUT,
    GRPC_STREAMS_PER_CONNECTION_MAX, GRPC_TCP_KEEPALIVE, REFLECTION_REQUEST_BYTES_MAX,
    SERVER_DRAIN_TIMEOUT, TLS_HANDSHAKE_TIMEOUT,
};

/// The task serving gRPC, which ends when the server stops, and the means
/// to cut the connections it serves.
pub struct ServerTask {
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    cutter: Cutter,
}

impl ServerTask {
    /// Once the server was told to stop (it accepts no more): wait for its
    /// connections to finish their calls and close, at most
    /// [`SERVER_DRAIN_TIMEOUT`]; then cut those still open and wait as
    /// long again; then give up on the task (logged; it is aborted).
    pub async fn stopped(self) -> Result<Result<(), tonic::transport::Error>, JoinError> {
        let Self { mut task, cutter } = self;
        if let Ok(served) = tokio::time::timeout(SERVER_DRAIN_TIMEOUT, &mut task).await {
            return served;
        }
        tracing::warn!(
            "the gRPC server still had calls open {SERVER_DRAIN_TIMEOUT:?} after it was told to \
             stop: cutting their connections"
        );
        cutter.cut();
        if let Ok(served) = tokio::time::timeout(SERVER_DRAIN_TIMEOUT, &mut task).await {
            return served;
        }
        tracing::warn!(
            "the gRPC server had not stopped {SERVER_DRAIN_TIMEOUT:?} after its connections were \
             cut: aborting it"
        );
        task.abort();
        // Cancelled, or it ended just now: either way it is done.
        let _ = task.await;
        Ok(Ok(()))
    }
}

/// How the port is served.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Mutual TLS: the CA clients must chain to, and this node's identity.
    pub tls: Option<ClientTls>,
    /// Serve gRPC server reflection.
    pub reflection: bool,
}

/// Serve `cluster` and `consensus`'s Raft service on `listener` until
/// `shutdown` resolves.
pub fn serve(
    listener: TcpListener,
    cluster: ClusterService,
    consensus: &Consensus,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ServerTask, String> {
    let reflection = if options.reflection {
        let service = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|error| format!("reflection: {error}"))?
            // Reflection requests name a symbol or a file: tiny.
            .max_decoding_message_size(REFLECTION_REQUEST_BYTES_MAX);
        Some(service)
    } else {
        None
    };
    let cluster = ClusterServer::new(cluster)
        .max_decoding_message_size(CLIENT_GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(CLIENT_GRPC_RESPONSE_BYTES_MAX);
    // Replies are small and latency-bound: no Nagle delay on any connection.
    // (tonic's own `tcp_nodelay` only covers listeners it binds itself.)
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(GRPC_TCP_KEEPALIVE));
    let (incoming, cutter) = cuttable(incoming);
    let mut builder = bounded(tonic::transport::Server::builder());
    if let Some(tls) = &options.tls {
        // A client certificate is required (not optional) once a CA is
        // given: plaintext and foreign certificates fail the handshake.
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
            .client_ca_root(Certificate::from_pem(&tls.ca_pem))
            // A peer that connects and never finishes the handshake must
            // not hold its task and socket for good.
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        builder = builder
            .tls_config(config)
            .map_err(|error| format!("TLS: {error}"))?;
    }
    let task = tokio::spawn(
        builder
            // Outermost, so refusals are counted too.
            .layer(GrpcMetricsLayer::new(consensus.metrics().clone()))
            .layer(AuthorizeLayer {
                enabled: options.tls.is_some(),
            })
            .add_service(cluster)
            .add_service(consensus.raft_service())
            .add_optional_service(reflection)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .in_current_span(),
    );
    Ok(ServerTask { task, cutter })
}

/// The server with every per-connection and per-call bound set: a peer can
/// hold only so many calls open on one connection, no call outlives the
/// longest legitimate one, and connections to peers that vanished are
/// closed by keepalive instead of holding their calls forever.
fn bounded(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder
        .tcp_nodelay(true)
        .max_concurrent_streams(GRPC_STREAMS_PER_CONNECTION_MAX)
        .timeout(GRPC_CALL_TIMEOUT)
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT))
        .http2_max_header_list_size(GRPC_HEADER_LIST_BYTES_MAX)
}
