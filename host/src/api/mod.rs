//! The gRPC API: the public `Cluster` service, the internal `Raft` service,
//! and the client the CLI uses. tonic is used nowhere else but
//! [`crate::consensus::network`], which calls the `Raft` service.

pub mod client;
pub mod cluster_service;
pub mod forward;
pub mod proto;
pub mod raft_codec;
pub mod raft_service;
