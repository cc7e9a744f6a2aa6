//! The client side of a clusterhost cluster: the public gRPC API
//! ([`proto`], from `proto/clusterhost.proto`) and [`Client`], a connection
//! to one node's `Cluster` service.
//!
//! Every node serves the whole API: writes sent to a follower are forwarded
//! to the leader, linearizable reads are confirmed with a quorum wherever they
//! are served.

mod client;
pub mod cluster;
pub mod headers;
pub mod limits;
mod tls;

pub use client::{Client, ClientError, connect_channel, connect_channel_with, upload_chunks};
pub use cluster::{Applied, Cluster, Consistency, Error, Options};
pub use tls::{ClientTls, TlsFileError};

/// Generated gRPC types, the `Cluster` client and the server trait nodes implement.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("clusterhost.v1");

    /// Encoded file descriptors, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("clusterhost_descriptor");
}
