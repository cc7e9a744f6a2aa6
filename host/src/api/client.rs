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
    forwarded: bool,
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
            // Deploys (a snapshot and restore on every replica) take longest.
            .timeout(
                crate::deploy::DEPLOY_TIMEOUT.max(Duration::from_millis(CLIENT_REQUEST_TIMEOUT_MS))
                    + CLIENT_GRACE,
            )
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|error| unreachable(source_chain(&error)))?;
        let inner = ClusterClient::new(channel)
            .max_decoding_message_size(CLIENT_GRPC_MESSAGE_BYTES_MAX * 4)
            .max_encoding_message_size(CLIENT_GRPC_MESSAGE_BYTES_MAX * 4);
        Ok(Self {
            inner,
            forwarded: false,
        })
    }

    /// The same connection, marking every request as forwarded by a node.
    pub fn forwarding(mut self) -> Self {
        self.forwarded = true;
        self
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if self.forwarded {
            request.metadata_mut().insert(
                super::forward::FORWARDED_HEADER,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        request
    }

    /// Propose a command.
    pub async fn apply(&mut self, command: Vec<u8>) -> Result<proto::ApplyResponse, ClientError> {
        let request = self.request(proto::ApplyRequest { command });
        Ok(self.inner.apply(request).await?.into_inner())
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

    /// Every node the serving node knows of.
    pub async fn members(&mut self) -> Result<proto::MembersResponse, ClientError> {
        Ok(self
            .inner
            .members(proto::MembersRequest {})
            .await?
            .into_inner())
    }

    /// Remove a node from the membership.
    pub async fn remove_member(&mut self, node_id: u64) -> Result<(), ClientError> {
        let request = self.request(proto::RemoveMemberRequest { node_id });
        self.inner.remove_member(request).await?;
        Ok(())
    }

    /// Move leadership to `to`; returns the new leader.
    pub async fn transfer_leader(&mut self, to: u64) -> Result<u64, ClientError> {
        let request = self.request(proto::TransferLeaderRequest { to });
        Ok(self
            .inner
            .transfer_leader(request)
            .await?
            .into_inner()
            .leader_id)
    }

    /// Upload `plugin` and switch the cluster to it.
    pub async fn deploy_plugin(
        &mut self,
        plugin: Vec<u8>,
    ) -> Result<proto::DeployResponse, ClientError> {
        let chunks: Vec<proto::PluginChunk> = plugin
            .chunks(crate::limits::PLUGIN_UPLOAD_CHUNK_BYTES)
            .map(|chunk| proto::PluginChunk {
                data: chunk.to_vec(),
            })
            .collect();
        let mut request = tonic::Request::new(futures::stream::iter(chunks));
        if self.forwarded {
            request.metadata_mut().insert(
                super::forward::FORWARDED_HEADER,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        request.set_timeout(crate::deploy::DEPLOY_TIMEOUT);
        Ok(self.inner.deploy_plugin(request).await?.into_inner())
    }

    /// Deploy the previous plugin version again.
    pub async fn rollback_plugin(&mut self) -> Result<proto::DeployResponse, ClientError> {
        let mut request = self.request(proto::RollbackRequest {});
        request.set_timeout(crate::deploy::DEPLOY_TIMEOUT);
        Ok(self.inner.rollback_plugin(request).await?.into_inner())
    }

    /// The replicated deploy history.
    pub async fn plugin_history(&mut self) -> Result<proto::PluginHistoryResponse, ClientError> {
        Ok(self
            .inner
            .plugin_history(proto::PluginHistoryRequest {})
            .await?
            .into_inner())
    }

    /// Ask the serving node to leave the cluster and stop.
    pub async fn leave(&mut self) -> Result<(), ClientError> {
        self.inner.leave(proto::LeaveRequest {}).await?;
        Ok(())
    }
}

/// The error and its causes, skipping causes whose text the message
/// already contains (transport errors often repeat their source).
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
