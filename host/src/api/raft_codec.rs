//! Encoding of openraft messages inside the internal `Raft` service.
//!
//! The internal service carries openraft's own request and response types,
//! postcard-encoded, so this is the only place that knows their wire form.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

use super::proto::RaftMessage;

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
