//! A running node: waiting on it, and taking it down in order (Raft steps
//! down, the server stops, the plugin store is checkpointed, gossip leaves,
//! and the files and ports it held are released before `shutdown` returns).

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::server::ServerTask;
use crate::consensus::{Consensus, NodeId, StopCheckpoint};
use crate::discovery::Discovery;
use crate::limits::{GOSSIP_RELEASE_TIMEOUT, LOG_RELEASE_TIMEOUT, RELEASE_POLL_INTERVAL};
use crate::membership::{LocalMember, operations};
use crate::ops::OpsHandle;
use crate::storage::LogRelease;

/// A running node. Dropping it does not stop it; call [`NodeHandle::shutdown`].
pub struct NodeHandle {
    pub(super) local: Arc<LocalMember>,
    pub(super) consensus: Consensus,
    pub(super) server: ServerTask,
    pub(super) stop_server: oneshot::Sender<()>,
    pub(super) discovery: Arc<Discovery>,
    pub(super) autopilot: JoinHandle<()>,
    /// Tells when the Raft log's file is closed after shutdown.
    pub(super) log_released: LogRelease,
    pub(super) ops: Option<OpsHandle>,
    /// The plugin store's final checkpoint, written once Raft has stopped.
    pub(super) stop_checkpoint: StopCheckpoint,
}

impl NodeHandle {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.local.node_id
    }

    /// Wait until this node has applied `index`, at most `timeout`.
    pub async fn wait_applied(
        &self,
        index: u64,
        timeout: std::time::Duration,
    ) -> Result<(), String> {
        self.consensus.wait_applied(index, timeout).await
    }

    /// Stop gracefully: hand leadership over if leading, then stop the
    /// membership loop, gossip, serving and Raft.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        operations::step_down(&self.consensus).await;
        self.local.request_stop();
        let _ = self.autopilot.await;
        if let Some(ops) = self.ops {
            ops.shutdown().await;
        }
        let _ = self.stop_server.send(());
        self.consensus.shutdown().await;
        // Raft applies nothing more: make the state file durable at the
        // last applied entry before the worker and the process stop.
        self.stop_checkpoint.write().await;
        // Bounded: a peer holding a call open cannot hold shutdown.
        self.server.stopped().await??;
        drop(self.consensus);
        drop(self.local);
        // Gossip stops last, once nothing serving holds it; its socket
        // closes as its tasks wind down, and the port is free for another
        // node in this process once it has.
        let gossip_socket = self.discovery.public_socket();
        match Arc::try_unwrap(self.discovery) {
            Ok(discovery) => {
                discovery.shutdown().await;
                if !wait_for_condition(GOSSIP_RELEASE_TIMEOUT, || gossip_socket.is_closed()).await {
                    tracing::warn!(
                        "the gossip socket was still open {GOSSIP_RELEASE_TIMEOUT:?} after shutdown"
                    );
                }
            }
            // Nothing was stopped, so there is nothing to wait for.
            Err(_) => tracing::warn!("gossip is still in use at shutdown; it stops when released"),
        }
        // Raft's tasks drop their log handles as they wind down; the data
        // dir is free for another node in this process once they have.
        let released = self.log_released;
        let closed = wait_for_condition(LOG_RELEASE_TIMEOUT, || released.is_released()).await;
        if !closed {
            tracing::warn!("the raft log was still open {LOG_RELEASE_TIMEOUT:?} after shutdown");
        }
        tracing::info!("node stopped");
        Ok(())
    }

    /// Serve until `signal` fires or the node is asked to stop (`leave`),
    /// then shut down gracefully.
    pub async fn serve_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let consensus = self.consensus.clone();
        tokio::select! {
            () = signal => tracing::info!("shutdown requested"),
            () = self.local.stop_requested() => tracing::info!("stopping after leaving the cluster"),
            reason = consensus.failure() => {
                // Raft refuses to go on (it could not write its log, say):
                // serving stale state or taking writes it cannot keep
                // would be worse than stopping.
                tracing::error!(%reason, "raft stopped on a fatal error; stopping the node");
                self.shutdown().await?;
                anyhow::bail!("raft stopped on a fatal error: {reason}");
            }
        }
        self.shutdown().await
    }
}

/// Poll `condition` until it holds or `timeout` passes; whether it held.
pub(super) async fn wait_for_condition(
    timeout: std::time::Duration,
    condition: impl Fn() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(RELEASE_POLL_INTERVAL).await;
    }
    true
}
