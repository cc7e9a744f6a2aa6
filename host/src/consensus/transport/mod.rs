//! How Raft messages travel between nodes: the internal gRPC service
//! (`proto/raft.proto`), its wire encoding, the service that hands incoming
//! messages to the local Raft, and the clients that send them.
//!
//! - [`codec`]: the wire form (postcard inside one generic call).
//! - [`service`]: incoming messages to the local Raft.
//! - [`sender`]: whether a message may claim the node it claims.
//! - [`peer`]: outgoing messages (openraft's network traits), peer addresses.
//! - [`sizing`]: how much fits in one message, and how long it may take.

pub mod codec;
pub mod peer;
pub mod sender;
pub mod service;
pub mod sizing;

#[cfg(test)]
mod crafted;

/// Generated types of the internal Raft service.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("clusterhost.raft.v1");
}

pub use peer::{AddressBook, Connections, PeerNetwork};
pub use service::RaftService;
