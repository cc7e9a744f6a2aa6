//! The client side of the public API, as the CLI (and tests) use it.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::proto::{self, cluster_client::ClusterClient};
use crate::limits::{CLIENT_GRPC_MESSAGE_BYTES_MAX, CLIENT_REQUEST_TIMEOUT_MS};

/// How long to wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Extra time a client grants the server beyond its own request timeout, so
/// the server's clearer error arrives first.
const CLIENT_GRACE: Duration = Duration::from_secs(2);

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint could not be reached.
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// The address tried.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
}

/// A connection to one node's `Cluster` service.
#[derive(Clone)]
pub struct Client {
    inner: ClusterClient<Channel>,
}

impl Client {
    /// Connect to `endpoint` (`host:port`, or a full `http://` URL).
    pub async fn connect(endpoint: &str) -> Result<Self, ClientError> {
        let url = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        let unreachable = |reason: String| ClientError::Unreachable {
            endpoint: endpoint.to_string(),
            reason,
        };
        let channel = Endpoint::from_shared(url)
            .map_err(|error| unreachable(error.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_millis(CLIENT_REQUEST_TIMEOUT_MS) + CLIENT_GRACE)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|error| unreachable(source_chain(&error)))?;
        let inner = ClusterClient::new(channel)
            .max_decoding_message_size(CLIENT_GRPC_MESSAGE_BYTES_MAX * 4)
            .max_encoding_message_size(CLIENT_GRPC_MESSAGE_BYTES_MAX * 4);
        Ok(Self { inner })
    }

    /// Propose a command.
    pub async fn apply(&mut self, command: Vec<u8>) -> Result<proto::ApplyResponse, ClientError> {
        Ok(self
            .inner
            .apply(proto::ApplyRequest { command })
            .await?
            .into_inner())
    }

    /// Run a query.
    pub async fn query(
        &mut self,
        request: Vec<u8>,
        consistency: proto::Consistency,
    ) -> Result<proto::QueryResponse, ClientError> {
        let request = proto::QueryRequest {
            request,
            consistency: consistency as i32,
        };
        Ok(self.inner.query(request).await?.into_inner())
    }

    /// The node's status.
    pub async fn status(&mut self) -> Result<proto::StatusResponse, ClientError> {
        Ok(self
            .inner
            .status(proto::StatusRequest {})
            .await?
            .into_inner())
    }

    /// Trigger a snapshot.
    pub async fn snapshot(&mut self) -> Result<proto::SnapshotResponse, ClientError> {
        Ok(self
            .inner
            .snapshot(proto::SnapshotRequest {})
            .await?
            .into_inner())
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
