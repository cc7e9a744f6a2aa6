//! Outgoing Raft RPCs: openraft's network traits over our internal gRPC
//! service. Connections are made lazily and re-made after failures.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use tonic::transport::Channel;

use super::snapshot::SnapshotBody;
use super::types::{Member, NodeId, TypeConfig, Vote};
use crate::api::proto::raft_client::RaftClient;
use crate::api::raft_codec;

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotBody>;

/// Shortest time a Raft RPC is given before it counts as failed.
const RAFT_RPC_TIMEOUT_MIN: Duration = Duration::from_secs(2);

/// Where peers are right now, as gossip last saw them. Gossip learns a
/// restarted node's new address before the Raft membership can record it
/// (recording it needs a leader, which may need that very node), so RPCs
/// prefer this book and fall back to the membership's address.
#[derive(Debug, Clone, Default)]
pub struct AddressBook(Arc<RwLock<HashMap<NodeId, String>>>);

impl AddressBook {
    /// Replace the known addresses.
    pub fn update(&self, addresses: HashMap<NodeId, String>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = addresses;
    }

    /// The address gossip last saw for `node_id`.
    pub fn get(&self, node_id: NodeId) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node_id)
            .cloned()
    }
}

/// Creates a client per peer.
#[derive(Debug, Clone, Default)]
pub struct PeerNetwork {
    addresses: AddressBook,
}

impl PeerNetwork {
    /// A network that looks peers up in `addresses` first.
    pub fn new(addresses: AddressBook) -> Self {
        Self { addresses }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient {
            target,
            membership_addr: node.rpc_addr.clone(),
            addresses: self.addresses.clone(),
            rpc_addr: String::new(),
            client: None,
        }
    }
}

/// The connection to one peer.
pub struct PeerClient {
    target: NodeId,
    membership_addr: String,
    addresses: AddressBook,
    rpc_addr: String,
    client: Option<RaftClient<Channel>>,
}

impl PeerClient {
    fn client(&mut self) -> Result<RaftClient<Channel>, Unreachable<TypeConfig>> {
        let current = self
            .addresses
            .get(self.target)
            .unwrap_or_else(|| self.membership_addr.clone());
        if current != self.rpc_addr {
            self.rpc_addr = current;
            self.client = None;
        }
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = raft_codec::raft_client(&self.rpc_addr).map_err(Unreachable::from_string)?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Send one request and decode the reply; transport failures drop the
    /// cached connection so the next call reconnects.
    async fn call<Req, Resp, F, Fut>(
        &mut self,
        request: &Req,
        timeout: Duration,
        send: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, tonic::Request<crate::api::proto::RaftMessage>) -> Fut,
        Fut:
            Future<Output = Result<tonic::Response<crate::api::proto::RaftMessage>, tonic::Status>>,
    {
        let message =
            raft_codec::encode(request, self.target).map_err(|status| network_error(&status))?;
        let client = self.client()?;
        // openraft's budgets are tight (a heartbeat interval for appends); a
        // floor keeps a busy but healthy peer from timing out, while a hung
        // peer still cannot hold replication forever. The peer gets the
        // deadline too, and this side does not wait past it.
        let timeout = timeout.max(RAFT_RPC_TIMEOUT_MIN);
        let mut grpc_request = tonic::Request::new(message);
        grpc_request.set_timeout(timeout);
        let reply = tokio::time::timeout(timeout, send(client, grpc_request))
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(format!(
                    "no reply within {timeout:?}"
                )))
            });
        match reply {
            Ok(response) => raft_codec::decode_reply(response.get_ref())
                .map_err(|status| network_error(&status)),
            Err(status) => {
                self.client = None;
                tracing::debug!(target = self.target, "raft rpc failed: {status}");
                Err(RPCError::Unreachable(Unreachable::from_string(format!(
                    "node {} at {}: {}",
                    self.target,
                    self.rpc_addr,
                    status.message()
                ))))
            }
        }
    }
}

fn network_error(status: &tonic::Status) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(status.message().to_string()))
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotBody;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            &request,
            option.soft_ttl(),
            |mut client, message| async move { client.append_entries(message).await },
        )
        .await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            &request,
            option.soft_ttl(),
            |mut client, message| async move { client.vote(message).await },
        )
        .await
    }

    async fn pre_vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            &request,
            option.soft_ttl(),
            |mut client, message| async move { client.pre_vote(message).await },
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = (vote, snapshot.meta, snapshot.snapshot);
        self.call(
            &request,
            option.soft_ttl(),
            |mut client, message| async move { client.install_snapshot(message).await },
        )
        .await
        .map_err(|error| match error {
            RPCError::Unreachable(unreachable) => StreamingError::Unreachable(unreachable),
            RPCError::Network(network) => StreamingError::Network(network),
            RPCError::Timeout(timeout) => StreamingError::Timeout(timeout),
            RPCError::RemoteError(remote) => {
                StreamingError::Network(NetworkError::from_string(remote.to_string()))
            }
        })
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            &request,
            option.soft_ttl(),
            |mut client, message| async move { client.transfer_leader(message).await },
        )
        .await
    }
}
