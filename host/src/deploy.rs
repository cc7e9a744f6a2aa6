//! Deploying a plugin through the log: validate on the leader, propose, and
//! report the outcome every replica reached at the same index.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};

use crate::api::cluster_service::now_ms;
use crate::consensus::types::{DeployReceipt, Raft, Request, Response};
use crate::plugin::{LoadError, PluginEngine};

/// How long a deploy may take from proposal to applied (restore included).
pub const DEPLOY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a deploy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The bytes are not a plugin this host can run; nothing was proposed.
    #[error("not a valid plugin: {0}")]
    Invalid(#[from] LoadError),
    /// Every replica tried and kept the running plugin (recorded in history).
    #[error("the deploy failed on every replica; the running plugin stays: {0}")]
    Failed(String),
    /// This node is not the leader; nothing was proposed.
    #[error("this node is not the leader")]
    NotLeader,
    /// No answer in time or the node is stopping.
    #[error("{0}")]
    Unavailable(String),
}

/// Validate `bytes` under this node's engine (which also fills the compiled
/// cache), then propose the deploy and wait for its outcome.
pub async fn deploy(
    raft: &Raft,
    engine: &PluginEngine,
    bytes: Vec<u8>,
) -> Result<DeployReceipt, DeployError> {
    engine.load_off_thread(bytes.clone()).await?;
    propose(raft, bytes).await
}

/// Propose an already validated plugin.
pub async fn propose(raft: &Raft, bytes: Vec<u8>) -> Result<DeployReceipt, DeployError> {
    let proposal = Request::Deploy {
        time_ms: now_ms(),
        plugin: bytes,
    };
    let written = tokio::time::timeout(DEPLOY_TIMEOUT, raft.client_write(proposal))
        .await
        .map_err(|_| {
            DeployError::Unavailable("timed out waiting for the deploy to apply".to_string())
        })?
        .map_err(|error| match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => DeployError::NotLeader,
            other => DeployError::Unavailable(other.to_string()),
        })?;
    match written.data {
        Response::Deploy(Ok(receipt)) => Ok(receipt),
        Response::Deploy(Err(reason)) => Err(DeployError::Failed(reason)),
        other => Err(DeployError::Unavailable(format!(
            "unexpected response to a deploy: {other:?}"
        ))),
    }
}
