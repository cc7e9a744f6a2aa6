//! The wire form of openraft messages inside the internal `Raft` service:
//! postcard, addressed to one node. The only place that knows it.

use clusterhost_client::ClientTls;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use super::proto::raft_client::RaftClient;
use super::proto::{RaftCall, RaftReply, RaftRequest};
use crate::limits::{RAFT_CONNECT_TIMEOUT, RAFT_GRPC_MESSAGE_BYTES_MAX};

/// A lazily connecting client for the internal `Raft` service at
/// `rpc_addr`, with the Raft message size limits and no Nagle delay; over
/// mutual TLS with this node's certificate when `tls` is given (the peer's
/// certificate must then be valid for the address dialed).
pub fn raft_client(rpc_addr: &str, tls: Option<&ClientTls>) -> Result<RaftClient<Channel>, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{rpc_addr}"))
        .map_err(|error| format!("bad address {rpc_addr}: {error}"))?
        .connect_timeout(RAFT_CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(clusterhost_client::tonic_tls_config(tls))
            .map_err(|error| format!("TLS for {rpc_addr}: {error}"))?;
    }
    Ok(RaftClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(RAFT_GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_GRPC_MESSAGE_BYTES_MAX))
}

/// The encoding of Raft messages this binary writes: postcard of openraft's
/// messages over our type configuration. Bumped whenever that changes
/// incompatibly; a node refuses newer formats instead of misreading them.
pub const WIRE_FORMAT: u32 = 1;

/// Encode `value` as a `call` for node `to_node`.
pub fn request<T: Serialize>(
    call: RaftCall,
    value: &T,
    to_node: u64,
) -> Result<RaftRequest, Status> {
    Ok(RaftRequest {
        call: call as i32,
        payload: encode(value)?,
        to_node,
        format: WIRE_FORMAT,
    })
}

/// Refuse a message in a format newer than this binary reads.
pub fn check_format(format: u32) -> Result<(), Status> {
    if format > WIRE_FORMAT {
        return Err(Status::failed_precondition(format!(
            "a peer sent raft messages in format {format}; this node ({}) reads up to {WIRE_FORMAT}: upgrade it",
            env!("CARGO_PKG_VERSION")
        )));
    }
    Ok(())
}

/// Encode a reply.
pub fn reply<T: Serialize>(value: &T) -> Result<RaftReply, Status> {
    encode(value).map(|payload| RaftReply { payload })
}

/// Decode a reply.
pub fn decode_reply<T: DeserializeOwned>(reply: &RaftReply) -> Result<T, Status> {
    postcard::from_bytes(&reply.payload)
        .map_err(|error| Status::invalid_argument(format!("malformed raft reply: {error}")))
}

/// Decode the payload of a request sent to node `self_id`; garbage or a
/// message for another node is refused, never a panic.
pub fn decode_request<T: DeserializeOwned>(
    request: &RaftRequest,
    self_id: u64,
) -> Result<T, Status> {
    check_addressee(request.to_node, self_id)?;
    check_format(request.format)?;
    decode(&request.payload)
}

/// Refuse a message meant for another node.
pub fn check_addressee(to_node: u64, self_id: u64) -> Result<(), Status> {
    if to_node != self_id {
        return Err(Status::failed_precondition(format!(
            "this is node {self_id}, not node {to_node}: its address has changed"
        )));
    }
    Ok(())
}

/// Decode bytes from a peer; garbage is refused, never a panic.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    postcard::from_bytes(bytes)
        .map_err(|error| Status::invalid_argument(format!("malformed raft message: {error}")))
}

/// The wire bytes of `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    postcard::to_stdvec(value)
        .map_err(|error| Status::internal(format!("cannot encode raft message: {error}")))
}
