//! Serving a node's gRPC port: the public `Cluster` service, the internal
//! Raft service and reflection, on a listener the caller bound, until the
//! caller's shutdown future resolves. Every request is counted and timed
//! ([`super::grpc_metrics`]).

use std::future::Future;

use clusterhost_client::proto::{FILE_DESCRIPTOR_SET, cluster_server::ClusterServer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::ClusterService;
use super::grpc_metrics::GrpcMetricsLayer;
use crate::consensus::Consensus;
use crate::limits::{CLIENT_GRPC_MESSAGE_BYTES_MAX, CLIENT_GRPC_RESPONSE_BYTES_MAX};

/// The task serving gRPC; it ends when the server stops.
pub type ServerTask = JoinHandle<Result<(), tonic::transport::Error>>;

/// Serve `cluster` and `consensus`'s Raft service on `listener` until
/// `shutdown` resolves.
pub fn serve(
    listener: TcpListener,
    cluster: ClusterService,
    consensus: &Consensus,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ServerTask, String> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| format!("reflection: {error}"))?;
    let cluster = ClusterServer::new(cluster)
        .max_decoding_message_size(CLIENT_GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(CLIENT_GRPC_RESPONSE_BYTES_MAX);
    // Replies are small and latency-bound: no Nagle delay on any connection.
    // (tonic's own `tcp_nodelay` only covers listeners it binds itself.)
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    Ok(tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .layer(GrpcMetricsLayer::new(consensus.metrics().clone()))
            .add_service(cluster)
            .add_service(consensus.raft_service())
            .add_service(reflection)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .in_current_span(),
    ))
}
