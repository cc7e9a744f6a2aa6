//! The client side of a clusterhost cluster: the public gRPC API
//! ([`proto`], from `proto/clusterhost.proto`) and [`Client`], a connection
//! to one node's `Cluster` service.
//!
//! Every node serves the whole API: writes sent to a follower are forwarded
//! to the leader, linearizable reads are confirmed with a quorum wherever they
//! are served.
//!
//! [`Cluster`] is the client of a whole cluster most programs want: it
//! follows the leader, moves on from nodes that are down, and applies each
//! write exactly once by retrying it within a client session.
//!
//! ```no_run
//! use clusterhost_client::{Cluster, Consistency, Error};
//!
//! # async fn example() -> Result<(), Error> {
//! let mut cluster = Cluster::connect(["127.0.0.1:7400", "127.0.0.1:7410"]).await?;
//! let applied = cluster
//!     .apply(br#"{"put":{"key":"a","value":"1"}}"#.to_vec())
//!     .await?;
//! println!("applied at index {}", applied.index);
//! let value = cluster
//!     .query(br#"{"get":{"key":"a"}}"#.to_vec(), Consistency::Linearizable)
//!     .await?;
//! println!("{}", String::from_utf8_lossy(&value));
//! match cluster.apply(b"not a command".to_vec()).await {
//!     Err(Error::Rejected(reason)) => println!("the plugin refused: {reason}"),
//!     Err(Error::Ambiguous(reason)) => println!("may or may not have applied: {reason}"),
//!     Err(Error::Unavailable(reason)) => println!("surely not applied: {reason}"),
//!     other => println!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```

mod client;
pub mod cluster;
mod endpoints;
pub mod headers;
pub mod limits;
mod tls;

pub use client::{Client, ClientError, connect_channel, connect_channel_with, upload_chunks};
pub use cluster::{Applied, Cluster, Consistency, Error, Options};
pub use tls::{ClientTls, TlsFileError, tonic_tls_config};

/// Generated gRPC types, the `Cluster` client and the server trait nodes implement.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("clusterhost.v1");

    /// Encoded file descriptors, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("clusterhost_descriptor");
}
