//! Encoding of openraft messages inside the internal `Raft` service.
//!
//! The internal service carries openraft's own request and response types,
//! postcard-encoded, so this is the only place that knows their wire form.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

use super::proto::RaftMessage;

/// Encode a Raft message.
pub fn encode<T: Serialize>(value: &T) -> Result<RaftMessage, Status> {
    postcard::to_stdvec(value)
        .map(|payload| RaftMessage { payload })
        .map_err(|error| Status::internal(format!("cannot encode raft message: {error}")))
}

/// Decode a Raft message; garbage is an `invalid_argument`, never a panic.
pub fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, Status> {
    postcard::from_bytes(&message.payload)
        .map_err(|error| Status::invalid_argument(format!("malformed raft message: {error}")))
}
