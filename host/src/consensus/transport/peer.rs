//! Outgoing Raft RPCs: openraft's network traits over the internal gRPC
//! service. Connections are made lazily and re-made after failures.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use clusterhost_client::ClientTls;
use futures::StreamExt as _;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::proto::raft_client::RaftClient;
use super::proto::{RaftCall, RaftRequest, SnapshotChunk};
use super::{codec, sizing};
use crate::consensus::snapshot::SnapshotBody;
use crate::consensus::types::{Member, NodeId, TypeConfig, Vote};
use crate::limits::{RAFT_APPEND_ENTRIES_BYTES_MAX, RAFT_SNAPSHOT_CHUNK_BYTES};
use crate::metrics::Metrics;

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotBody>;

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

/// Send one `call` to `target` over `client`, allowing `timeout` or more
/// (see [`sizing::transfer_timeout`]), and decode the reply. The peer gets
/// the deadline too, and this side does not wait past it.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    client: RaftClient<Channel>,
    target: NodeId,
    call: RaftCall,
    request: &Req,
    timeout: Duration,
) -> Result<Resp, tonic::Status> {
    let message = codec::request(call, request, target)?;
    call_encoded(client, message, timeout).await
}

/// [`call`] with the request already encoded.
async fn call_encoded<Resp: DeserializeOwned>(
    mut client: RaftClient<Channel>,
    message: RaftRequest,
    timeout: Duration,
) -> Result<Resp, tonic::Status> {
    // openraft's budgets are tight (a heartbeat interval for appends); a
    // floor keeps a busy but healthy peer from timing out, while a hung
    // peer still cannot hold replication forever.
    let timeout = sizing::transfer_timeout(message.payload.len(), timeout);
    let mut grpc_request = tonic::Request::new(message);
    grpc_request.set_timeout(timeout);
    let reply = tokio::time::timeout(timeout, client.call(grpc_request))
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!(
                "no reply within {timeout:?}"
            )))
        })?;
    codec::decode_reply(reply.get_ref())
}

/// Cached clients by address, for calls outside replication (reading the
/// leader's read index).
#[derive(Default)]
pub struct Connections {
    clients: Mutex<HashMap<String, RaftClient<Channel>>>,
    tls: Option<Arc<ClientTls>>,
}

impl Connections {
    /// No connections yet; new ones use `tls` when given.
    pub fn new(tls: Option<Arc<ClientTls>>) -> Self {
        Self {
            clients: Mutex::default(),
            tls,
        }
    }

    /// A client for the node at `rpc_addr`.
    pub fn get(&self, rpc_addr: &str) -> Result<RaftClient<Channel>, tonic::Status> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(rpc_addr) {
            return Ok(client.clone());
        }
        let client =
            codec::raft_client(rpc_addr, self.tls.as_deref()).map_err(tonic::Status::internal)?;
        clients.insert(rpc_addr.to_string(), client.clone());
        Ok(client)
    }

    /// Drop a connection that failed.
    pub fn forget(&self, rpc_addr: &str) {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(rpc_addr);
    }
}

/// Creates a client per peer.
#[derive(Debug, Clone, Default)]
pub struct PeerNetwork {
    addresses: AddressBook,
    metrics: Metrics,
    tls: Option<Arc<ClientTls>>,
}

impl PeerNetwork {
    /// A network that looks peers up in `addresses` first, counts what it
    /// sends in `metrics`, and dials peers over mutual TLS when `tls` is
    /// given.
    pub fn new(addresses: AddressBook, metrics: Metrics, tls: Option<Arc<ClientTls>>) -> Self {
        Self {
            addresses,
            metrics,
            tls,
        }
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
            metrics: self.metrics.clone(),
            tls: self.tls.clone(),
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
    metrics: Metrics,
    tls: Option<Arc<ClientTls>>,
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
        let client = codec::raft_client(&self.rpc_addr, self.tls.as_deref())
            .map_err(Unreachable::from_string)?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Send one request; transport failures drop the cached connection so
    /// the next call reconnects.
    async fn send<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: RaftCall,
        request: &Req,
        option: RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let client = self.client()?;
        let label = call_label(kind);
        // An encoding failure ends like a transport failure: counted, the
        // connection dropped, the peer named.
        let answer = match codec::request(kind, request, self.target) {
            Ok(message) => {
                self.metrics
                    .raft_sent_bytes(self.target, label, message.payload.len());
                call_encoded(client, message, option.soft_ttl()).await
            }
            Err(status) => Err(status),
        };
        self.metrics.raft_rpc(self.target, label, answer.is_ok());
        answer.map_err(|status| {
            self.client = None;
            tracing::debug!(target = self.target, "raft rpc failed: {status}");
            RPCError::Unreachable(Unreachable::from_string(format!(
                "node {} at {}: {}",
                self.target,
                self.rpc_addr,
                status.message()
            )))
        })
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotBody;

    async fn append_entries(
        &mut self,
        mut request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // A batch over the byte budget goes in parts: this call sends the
        // first and tells openraft how far it got, and openraft sends the rest.
        let part = sizing::first_part_len(&request.entries, RAFT_APPEND_ENTRIES_BYTES_MAX);
        self.metrics.raft_entries_sent(self.target, part);
        if part == request.entries.len() {
            return self.send(RaftCall::AppendEntries, &request, option).await;
        }
        request.entries.truncate(part);
        let sent = request.entries.last().map(|entry| entry.log_id);
        let response = self.send(RaftCall::AppendEntries, &request, option).await?;
        Ok(match response {
            AppendEntriesResponse::Success => AppendEntriesResponse::PartialSuccess(sent),
            other => other,
        })
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.send(RaftCall::Vote, &request, option).await
    }

    async fn pre_vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.send(RaftCall::PreVote, &request, option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let client = self.client()?;
        let (metrics, target) = (self.metrics.clone(), self.target);
        // Counted chunk by chunk as the stream hands them to the transport,
        // so a transfer cut short counts only what went.
        let sent = move |bytes| metrics.raft_sent_bytes(target, INSTALL_SNAPSHOT, bytes);
        let reply = match snapshot_chunks(self.target, &vote, &snapshot) {
            Ok(chunks) => tokio::select! {
                reply = stream_snapshot(client, chunks, option.soft_ttl(), sent) => reply,
                closed = cancel => return Err(StreamingError::Closed(closed)),
            },
            // Like a failed transfer: counted, the connection dropped.
            Err(status) => Err(status),
        };
        self.metrics
            .raft_rpc(self.target, INSTALL_SNAPSHOT, reply.is_ok());
        reply.map_err(|status| {
            self.client = None;
            tracing::debug!(target = self.target, "snapshot transfer failed: {status}");
            StreamingError::Unreachable(Unreachable::from_string(format!(
                "node {} at {}: {}",
                self.target,
                self.rpc_addr,
                status.message()
            )))
        })
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.send(RaftCall::TransferLeader, &request, option).await
    }
}

/// The `call` label of a snapshot transfer (a stream, not a [`RaftCall`]).
const INSTALL_SNAPSHOT: &str = "INSTALL_SNAPSHOT";

/// The `call` label of `kind`: its protobuf name without the enum's prefix
/// (`APPEND_ENTRIES`, `VOTE`, ...), like [`INSTALL_SNAPSHOT`].
fn call_label(kind: RaftCall) -> &'static str {
    let name = kind.as_str_name();
    name.strip_prefix("RAFT_CALL_").unwrap_or(name)
}

/// `snapshot` for `target` as a header chunk and body chunks of
/// [`RAFT_SNAPSHOT_CHUNK_BYTES`].
fn snapshot_chunks(
    target: NodeId,
    vote: &Vote,
    snapshot: &Snapshot,
) -> Result<Vec<SnapshotChunk>, tonic::Status> {
    let header = codec::encode(&(vote, &snapshot.meta))?;
    let body = crate::consensus::snapshot::encode_body(&snapshot.snapshot)
        .map_err(|error| tonic::Status::internal(error.to_string()))?;
    let first = SnapshotChunk {
        to_node: target,
        header,
        data: Vec::new(),
        format: codec::WIRE_FORMAT,
    };
    let rest = body
        .chunks(RAFT_SNAPSHOT_CHUNK_BYTES)
        .map(|data| SnapshotChunk {
            to_node: 0,
            header: Vec::new(),
            data: data.to_vec(),
            format: 0,
        });
    Ok(std::iter::once(first).chain(rest).collect())
}

/// Stream `chunks` (see [`snapshot_chunks`]), allowing time in proportion
/// to their size; the answer comes once the peer has installed the
/// snapshot.
async fn stream_snapshot(
    mut client: RaftClient<Channel>,
    chunks: Vec<SnapshotChunk>,
    timeout: Duration,
    sent: impl Fn(usize) + Send + Sync + 'static,
) -> Result<SnapshotResponse<TypeConfig>, tonic::Status> {
    let body_bytes = chunks.iter().map(|chunk| chunk.data.len()).sum();
    let timeout = sizing::transfer_timeout(body_bytes, timeout);
    let chunks = futures::stream::iter(chunks)
        .inspect(move |chunk| sent(chunk.header.len() + chunk.data.len()));
    let mut request = tonic::Request::new(chunks);
    request.set_timeout(timeout);
    let reply = tokio::time::timeout(timeout, client.install_snapshot(request))
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!(
                "snapshot not installed within {timeout:?}"
            )))
        })?;
    codec::decode_reply(reply.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_labels_are_the_protobuf_names_without_the_enum_prefix() {
        assert_eq!(call_label(RaftCall::AppendEntries), "APPEND_ENTRIES");
        assert_eq!(call_label(RaftCall::PreVote), "PRE_VOTE");
    }
}
