//! Encoding of openraft messages inside the internal `Raft` service.
//!
//! The internal service carries openraft's own request and response types,
//! postcard-encoded, so this is the only place that knows their wire form.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

use tonic::transport::{Channel, Endpoint};

use super::proto::RaftMessage;
use super::proto::raft_client::RaftClient;
use crate::limits::RAFT_GRPC_MESSAGE_BYTES_MAX;

/// A lazily connecting client for the internal `Raft` service at
/// `rpc_addr`, with the Raft message size limits and no Nagle delay.
pub fn raft_client(rpc_addr: &str) -> Result<RaftClient<Channel>, String> {
    let endpoint = Endpoint::from_shared(format!("http://{rpc_addr}"))
        .map_err(|error| format!("bad address {rpc_addr}: {error}"))?
        .connect_timeout(RAFT_CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    Ok(RaftClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(RAFT_GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_GRPC_MESSAGE_BYTES_MAX))
}

/// How long to wait for a TCP connection to a peer.
const RAFT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Encode a Raft message for node `to_node` (a reply: for the sender).
pub fn encode<T: Serialize>(value: &T, to_node: u64) -> Result<RaftMessage, Status> {
    postcard::to_stdvec(value)
        .map(|payload| RaftMessage { payload, to_node })
        .map_err(|error| Status::internal(format!("cannot encode raft message: {error}")))
}

/// Encode a reply (its receiver is whoever asked).
pub fn encode_reply<T: Serialize>(value: &T) -> Result<RaftMessage, Status> {
    encode(value, 0)
}

/// Decode a reply.
pub fn decode_reply<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, Status> {
    postcard::from_bytes(&message.payload)
        .map_err(|error| Status::invalid_argument(format!("malformed raft reply: {error}")))
}

/// Decode a Raft message sent to node `self_id`; garbage or a message for
/// another node is refused, never a panic.
pub fn decode<T: DeserializeOwned>(message: &RaftMessage, self_id: u64) -> Result<T, Status> {
    if message.to_node != self_id {
        return Err(Status::failed_precondition(format!(
            "this is node {self_id}, not node {}: its address has changed",
            message.to_node
        )));
    }
    postcard::from_bytes(&message.payload)
        .map_err(|error| Status::invalid_argument(format!("malformed raft message: {error}")))
}
