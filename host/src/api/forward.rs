//! Reaching the leader from any node: where requests go, and cached
//! connections to leaders' gRPC ports.

use std::collections::HashMap;
use std::sync::Mutex;

use openraft::ServerState;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use super::client::{Client, ClientError};
use super::proto::raft_client::RaftClient;
use crate::consensus::network::AddressBook;
use crate::consensus::types::{NodeId, Raft};

/// Metadata key marking a request a node forwarded: the receiver must not
/// forward it again (the origin retries instead), so requests never loop.
pub const FORWARDED_HEADER: &str = "x-clusterhost-forwarded";
/// Metadata key on a refusal meaning "I am not the leader; nothing was
/// proposed": the only failure after which a forward is safely retried.
pub const NOT_LEADER_HEADER: &str = "x-clusterhost-not-leader";

/// Where a request that needs the leader should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node is the leader.
    Local,
    /// Forward to the leader at this gRPC address.
    Forward {
        /// Leader id.
        leader_id: NodeId,
        /// Leader gRPC address.
        rpc_addr: String,
    },
    /// No leader is known right now (an election may be in progress).
    NoLeader,
    /// This node is shutting down: nothing more will be served.
    Stopping,
}

/// Decide where a leader-only request goes. Pure.
pub fn route(
    self_id: NodeId,
    state: ServerState,
    leader: Option<NodeId>,
    leader_addr: Option<String>,
) -> Route {
    match (state, leader, leader_addr) {
        (ServerState::Shutdown, _, _) => Route::Stopping,
        (ServerState::Leader, _, _) => Route::Local,
        (_, Some(leader_id), _) if leader_id == self_id => Route::NoLeader,
        (_, Some(leader_id), Some(rpc_addr)) => Route::Forward {
            leader_id,
            rpc_addr,
        },
        _ => Route::NoLeader,
    }
}

/// Current route for `raft`; the leader's address comes from gossip when
/// known (it is fresher), else from the membership.
pub fn current_route(self_id: NodeId, raft: &Raft, addresses: &AddressBook) -> Route {
    let metrics = crate::consensus::current_metrics(raft);
    let leader_addr = metrics.current_leader.and_then(|leader| {
        addresses.get(leader).or_else(|| {
            metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|member| member.rpc_addr.clone())
        })
    });
    route(self_id, metrics.state, metrics.current_leader, leader_addr)
}

/// Whether a request arrived forwarded from another node.
pub fn was_forwarded(metadata: &MetadataMap) -> bool {
    metadata.contains_key(FORWARDED_HEADER)
}

/// Whether a status is a clean "not the leader, nothing proposed".
pub fn is_not_leader(status: &tonic::Status) -> bool {
    status.metadata().contains_key(NOT_LEADER_HEADER)
}

/// Whether a call failed to connect at all, so nothing reached the server
/// and a retry cannot apply a command twice.
pub fn is_connect_failure(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut text = status.message().to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        text.push_str(&error.to_string());
        source = error.source();
    }
    // hyper's connector words every failure before a request is written so.
    text.contains("connect error") || text.contains("Connection refused")
}

/// A "not the leader" refusal that the origin may retry.
pub fn not_leader(message: impl Into<String>) -> tonic::Status {
    let mut status = tonic::Status::unavailable(message);
    status.metadata_mut().insert(
        NOT_LEADER_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

/// Cached connections to leaders.
#[derive(Default)]
pub struct Forwarder {
    clients: Mutex<HashMap<String, Client>>,
    raft_clients: Mutex<HashMap<String, RaftClient<Channel>>>,
}

impl Forwarder {
    /// A client for the leader at `rpc_addr`, connected on first use.
    pub async fn client(&self, rpc_addr: &str) -> Result<Client, ClientError> {
        if let Some(client) = self.lock_clients().get(rpc_addr) {
            return Ok(client.clone());
        }
        let client = Client::connect(rpc_addr).await?.forwarding();
        self.lock_clients()
            .insert(rpc_addr.to_string(), client.clone());
        Ok(client)
    }

    /// Forget a connection that failed.
    pub fn forget(&self, rpc_addr: &str) {
        self.lock_clients().remove(rpc_addr);
        self.raft_clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(rpc_addr);
    }

    /// A client for the internal Raft service of the node at `rpc_addr`.
    pub fn raft_client(&self, rpc_addr: &str) -> Result<RaftClient<Channel>, tonic::Status> {
        let mut clients = self
            .raft_clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(rpc_addr) {
            return Ok(client.clone());
        }
        let client = super::raft_codec::raft_client(rpc_addr).map_err(tonic::Status::internal)?;
        clients.insert(rpc_addr.to_string(), client.clone());
        Ok(client)
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, Client>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaders_serve_followers_forward_and_unknown_waits() {
        assert_eq!(route(1, ServerState::Leader, Some(1), None), Route::Local);
        assert_eq!(
            route(2, ServerState::Follower, Some(1), Some("a:1".to_string())),
            Route::Forward {
                leader_id: 1,
                rpc_addr: "a:1".to_string()
            }
        );
        assert_eq!(
            route(2, ServerState::Candidate, None, None),
            Route::NoLeader
        );
        assert_eq!(
            route(2, ServerState::Follower, Some(1), None),
            Route::NoLeader
        );
        assert_eq!(
            route(1, ServerState::Shutdown, Some(1), None),
            Route::Stopping
        );
        // Stale metrics naming this node while it is not leader: wait.
        assert_eq!(
            route(2, ServerState::Follower, Some(2), Some("b:1".to_string())),
            Route::NoLeader
        );
    }
}
