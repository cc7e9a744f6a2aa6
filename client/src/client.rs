//! [`Client`]: one connection to one node's `Cluster` service.

use tonic::transport::{Channel, Endpoint};

use crate::limits::{
    CLIENT_GRACE, CLIENT_GRPC_RESPONSE_BYTES_MAX, CONNECT_TIMEOUT, DEPLOY_TIMEOUT,
    PLUGIN_UPLOAD_CHUNK_BYTES,
};
use crate::proto::{self, cluster_client::ClusterClient};
use crate::tls::ClientTls;

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

/// A connection to one node's `Cluster` service. Cloning shares the
/// connection.
#[derive(Clone)]
pub struct Client {
    inner: ClusterClient<Channel>,
}

impl Client {
    /// Connect to `endpoint` (`host:port`, or a full `http://` URL).
    pub async fn connect(endpoint: &str) -> Result<Self, ClientError> {
        Self::connect_with(endpoint, None).await
    }

    /// Connect to `endpoint`, over mutual TLS when `tls` is given.
    pub async fn connect_with(
        endpoint: &str,
        tls: Option<&ClientTls>,
    ) -> Result<Self, ClientError> {
        let channel = connect_channel_with(endpoint, tls).await?;
        Ok(Self::from_channel(channel))
    }

    /// A client over an already configured channel.
    pub fn from_channel(channel: Channel) -> Self {
        let inner = ClusterClient::new(channel)
            .max_decoding_message_size(CLIENT_GRPC_RESPONSE_BYTES_MAX)
            .max_encoding_message_size(CLIENT_GRPC_RESPONSE_BYTES_MAX);
        Self { inner }
    }

    /// Propose a command.
    pub async fn apply(&mut self, command: Vec<u8>) -> Result<proto::ApplyResponse, ClientError> {
        let request = proto::ApplyRequest { command };
        answer(self.inner.apply(request).await)
    }

    /// Open a client session (`timeout_ms` 0: the cluster's default).
    pub async fn open_session(
        &mut self,
        timeout_ms: u64,
    ) -> Result<proto::OpenSessionResponse, ClientError> {
        let request = proto::OpenSessionRequest { timeout_ms };
        answer(self.inner.open_session(request).await)
    }

    /// Propose a command within a session: a retry with the same stamp is
    /// answered with the first outcome (`replayed` set) instead of applying
    /// again.
    pub async fn apply_stamped(
        &mut self,
        command: Vec<u8>,
        stamp: proto::SessionStamp,
    ) -> Result<proto::ApplyResponse, ClientError> {
        let request = proto::SessionApplyRequest {
            command,
            session: Some(stamp),
        };
        answer(self.inner.apply_in_session(request).await)
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
        answer(self.inner.query(request).await)
    }

    /// The node's status.
    pub async fn status(&mut self) -> Result<proto::StatusResponse, ClientError> {
        answer(self.inner.status(proto::StatusRequest {}).await)
    }

    /// Trigger a snapshot.
    pub async fn snapshot(&mut self) -> Result<proto::SnapshotResponse, ClientError> {
        answer(self.inner.snapshot(proto::SnapshotRequest {}).await)
    }

    /// A backup from the serving node (it must lead): the file's chunks,
    /// in order.
    pub async fn backup(&mut self) -> Result<tonic::Streaming<proto::BackupChunk>, ClientError> {
        answer(self.inner.backup(proto::BackupRequest {}).await)
    }

    /// Every node the serving node knows of.
    pub async fn members(&mut self) -> Result<proto::MembersResponse, ClientError> {
        answer(self.inner.members(proto::MembersRequest {}).await)
    }

    /// Remove a node from the membership.
    pub async fn remove_member(&mut self, node_id: u64) -> Result<(), ClientError> {
        let request = proto::RemoveMemberRequest { node_id };
        answer(self.inner.remove_member(request).await).map(|_| ())
    }

    /// Move leadership to `to`; returns the new leader.
    pub async fn transfer_leader(&mut self, to: u64) -> Result<u64, ClientError> {
        let request = proto::TransferLeaderRequest { to };
        answer(self.inner.transfer_leader(request).await).map(|response| response.leader_id)
    }

    /// Upload `plugin` and switch the cluster to it.
    pub async fn deploy_plugin(
        &mut self,
        plugin: Vec<u8>,
    ) -> Result<proto::DeployResponse, ClientError> {
        let mut request = tonic::Request::new(futures::stream::iter(upload_chunks(&plugin)));
        request.set_timeout(DEPLOY_TIMEOUT);
        answer(self.inner.deploy_plugin(request).await)
    }

    /// Deploy the previous plugin version again.
    pub async fn rollback_plugin(&mut self) -> Result<proto::DeployResponse, ClientError> {
        let mut request = tonic::Request::new(proto::RollbackRequest {});
        request.set_timeout(DEPLOY_TIMEOUT);
        answer(self.inner.rollback_plugin(request).await)
    }

    /// The replicated deploy history.
    pub async fn plugin_history(&mut self) -> Result<proto::PluginHistoryResponse, ClientError> {
        answer(
            self.inner
                .plugin_history(proto::PluginHistoryRequest {})
                .await,
        )
    }

    /// The cluster settings.
    pub async fn settings(&mut self) -> Result<proto::SettingsResponse, ClientError> {
        answer(self.inner.get_settings(proto::GetSettingsRequest {}).await)
    }

    /// Change one cluster setting through the log.
    pub async fn set_setting(
        &mut self,
        name: &str,
        value: &str,
    ) -> Result<proto::SettingsResponse, ClientError> {
        let request = proto::SetSettingRequest {
            name: name.to_string(),
            value: value.to_string(),
        };
        answer(self.inner.set_setting(request).await)
    }

    /// Ask the serving node to leave the cluster and stop.
    pub async fn leave(&mut self) -> Result<(), ClientError> {
        answer(self.inner.leave(proto::LeaveRequest {}).await).map(|_| ())
    }
}

/// A plugin cut into upload messages.
pub fn upload_chunks(plugin: &[u8]) -> Vec<proto::PluginChunk> {
    plugin
        .chunks(PLUGIN_UPLOAD_CHUNK_BYTES)
        .map(|chunk| proto::PluginChunk {
            data: chunk.to_vec(),
        })
        .collect()
}

/// A connected channel to `endpoint` with the client's timeouts: the
/// longest request (a deploy: a snapshot and restore on every replica) plus
/// a grace period, so the node's own, clearer timeout error arrives first.
pub async fn connect_channel(endpoint: &str) -> Result<Channel, ClientError> {
    connect_channel_with(endpoint, None).await
}

/// [`connect_channel`], over mutual TLS when `tls` is given.
pub async fn connect_channel_with(
    endpoint: &str,
    tls: Option<&ClientTls>,
) -> Result<Channel, ClientError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("{scheme}://{endpoint}")
    };
    let unreachable = |reason: String| ClientError::Unreachable {
        endpoint: endpoint.to_string(),
        reason,
    };
    let mut builder = Endpoint::from_shared(url).map_err(|error| unreachable(error.to_string()))?;
    if let Some(tls) = tls {
        builder = builder
            .tls_config(crate::tls::tonic_tls_config(tls))
            .map_err(|error| unreachable(source_chain(&error)))?;
    }
    builder
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DEPLOY_TIMEOUT + CLIENT_GRACE)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|error| unreachable(source_chain(&error)))
}

fn answer<T>(reply: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ClientError> {
    Ok(reply?.into_inner())
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
