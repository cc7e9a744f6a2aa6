//! Generated gRPC types and services (from `proto/clusterhost.proto`).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("clusterhost.v1");

/// Encoded file descriptors, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("clusterhost_descriptor");
