//! The internal `Raft` service: decode an openraft message, check that the
//! caller may speak for the node it claims (see [`super::sender`]), hand it
//! to the local Raft, encode the answer. Nodes only.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use openraft::EntryPayload;
use openraft::raft::AppendEntriesRequest;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::proto::{self, RaftCall, RaftReply, RaftRequest, SnapshotChunk};
use super::sender::{self, MessageKind, Record, Sender, Vouched};
use super::{codec, sizing};
use crate::consensus::Raft;
use crate::consensus::handle::read_index;
use crate::consensus::snapshot::SnapshotBody;
use crate::consensus::types::{Entry, NodeId, SnapshotMeta, TypeConfig, Vote};
use crate::limits::{RAFT_SNAPSHOT_BYTES_MAX, RAFT_SNAPSHOT_CHUNK_IDLE_TIMEOUT};
use crate::security::peer::identity_of;

/// The node name in a caller's certificate: `None` without TLS, `Some(None)`
/// for a certificate that names no node.
type CallerName = Option<Option<String>>;

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotBody>;

/// The internal `Raft` service of one node.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    node_id: NodeId,
    /// One snapshot received at a time: each is held whole in memory.
    installing: Arc<tokio::sync::Semaphore>,
    /// The names this node's identity checks verified.
    vouched: tokio::sync::watch::Receiver<Vouched>,
}

impl RaftService {
    /// Serve `raft`, which runs as node `node_id`, checking senders
    /// against its membership and the names `vouched` for.
    pub fn new(
        raft: Raft,
        node_id: NodeId,
        vouched: tokio::sync::watch::Receiver<Vouched>,
    ) -> Self {
        Self {
            raft,
            node_id,
            installing: Arc::new(tokio::sync::Semaphore::new(1)),
            vouched,
        }
    }

    /// Decode the request, run `handle`, encode its answer.
    async fn serve<Req, Resp, E, F, Fut>(
        &self,
        request: &RaftRequest,
        caller: &CallerName,
        handle: F,
    ) -> Result<RaftReply, Status>
    where
        Req: DeserializeOwned + Sender,
        Resp: Serialize,
        E: Display,
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Resp, E>>,
    {
        let message: Req = codec::decode_request(request, self.node_id)?;
        self.check_sender(message.kind(), message.sender(), caller)?;
        let response = handle(message)
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        codec::reply(&response)
    }

    /// AppendEntries, refused whole if an entry is larger than any leader
    /// proposes.
    async fn append_entries(
        &self,
        request: &RaftRequest,
        caller: &CallerName,
    ) -> Result<RaftReply, Status> {
        let append: AppendEntriesRequest<TypeConfig> =
            codec::decode_request(request, self.node_id)?;
        self.check_sender(append.kind(), append.sender(), caller)?;
        if let Some(refusal) = sizing::oversized_entry(&append.entries) {
            return Err(Status::invalid_argument(refusal));
        }
        if let Some(refusal) = unprintable_member(&append.entries) {
            return Err(Status::invalid_argument(refusal));
        }
        let response = self
            .raft
            .append_entries(append)
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        codec::reply(&response)
    }

    /// Refuse a message claiming `sender` from a caller that may not speak
    /// for it (see [`sender::check_sender`]). Nothing is changed. Without
    /// TLS (no caller name) every message is taken, as before.
    fn check_sender(
        &self,
        kind: MessageKind,
        sender: Option<NodeId>,
        caller: &CallerName,
    ) -> Result<(), Status> {
        let (Some(presented), Some(node_id)) = (caller, sender) else {
            return Ok(());
        };
        use openraft::async_runtime::WatchReceiver;
        let metrics = self.raft.metrics();
        let watched = metrics.borrow_watched();
        let membership = watched.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let records: Vec<Record<'_>> = membership
            .nodes()
            .map(|(id, member)| Record {
                node_id: *id,
                voter: voters.contains(id),
                name: member.name.as_deref(),
            })
            .collect();
        let vouched = self.vouched.borrow();
        sender::check_sender(kind, node_id, presented.as_deref(), &records, &vouched).map_err(
            |refusal| {
                tracing::warn!("{refusal}");
                Status::permission_denied(refusal.to_string())
            },
        )
    }
}

/// The node name in the certificate `request` came with.
fn caller_name<T>(request: &Request<T>) -> CallerName {
    let certificates = request.peer_certs()?;
    Some(
        certificates
            .first()
            .and_then(|leaf| identity_of(leaf).node_name),
    )
}

#[tonic::async_trait]
impl proto::raft_server::Raft for RaftService {
    async fn call(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let caller = &caller_name(&request);
        let request = request.into_inner();
        let raft = &self.raft;
        let reply = match RaftCall::try_from(request.call) {
            Ok(RaftCall::Vote) => self.serve(&request, caller, |vote| raft.vote(vote)).await,
            Ok(RaftCall::PreVote) => {
                self.serve(&request, caller, |vote| raft.pre_vote(vote))
                    .await
            }
            Ok(RaftCall::AppendEntries) => self.append_entries(&request, caller).await,
            Ok(RaftCall::TransferLeader) => {
                self.serve(&request, caller, |transfer| {
                    raft.handle_transfer_leader(transfer)
                })
                .await
            }
            Ok(RaftCall::ReadIndex) => self.serve(&request, caller, |()| read_index(raft)).await,
            Ok(RaftCall::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
                "unknown raft call {}",
                request.call
            ))),
        };
        reply.map(Response::new)
    }

    async fn install_snapshot(
        &self,
        request: Request<tonic::Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftReply>, Status> {
        let caller = caller_name(&request);
        let mut chunks = request.into_inner();
        // The sender is checked on the first chunk, before the one receiving
        // slot is taken: a caller that may not send snapshots holds nothing.
        let first = next_chunk(&mut chunks)
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty snapshot stream"))?;
        codec::check_addressee(first.to_node, self.node_id)?;
        codec::check_format(first.format)?;
        let (vote, meta): (Vote, SnapshotMeta) = codec::decode(&first.header)?;
        let leader = Some(sender::voted_for(&vote));
        self.check_sender(MessageKind::Replication, leader, &caller)?;
        let _one_at_a_time = self.installing.try_acquire().map_err(|_| {
            Status::resource_exhausted("a snapshot is already being received; try again")
        })?;
        tracing::info!(index = ?meta.last_log_id, ?leader, "receiving a snapshot");
        let mut body = Vec::new();
        append_chunk(&mut body, &first.data)?;
        while let Some(chunk) = next_chunk(&mut chunks).await? {
            append_chunk(&mut body, &chunk.data)?;
        }
        let snapshot = crate::consensus::snapshot::decode_body(&body)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        if let Some(refusal) = crate::consensus::snapshot::position_refusal(&meta, &snapshot) {
            return Err(Status::invalid_argument(refusal));
        }
        tracing::info!(bytes = body.len(), "installing a received snapshot");
        let response = self
            .raft
            .install_full_snapshot(vote, Snapshot { meta, snapshot })
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        Ok(Response::new(codec::reply(&response)?))
    }
}

/// Why `entries` are refused, if one records a member whose address or name
/// holds a control character (no leader of this binary proposes one).
pub(super) fn unprintable_member(entries: &[Entry]) -> Option<String> {
    entries.iter().find_map(|entry| {
        let EntryPayload::Membership(membership) = &entry.payload else {
            return None;
        };
        membership.nodes().find_map(|(node_id, member)| {
            let refusal = member.check().err()?;
            Some(format!(
                "entry {} records node {node_id}: {refusal}",
                entry.log_id.index
            ))
        })
    })
}

/// The next chunk of a snapshot stream, refused once the sender has been
/// silent for [`RAFT_SNAPSHOT_CHUNK_IDLE_TIMEOUT`].
async fn next_chunk(
    chunks: &mut tonic::Streaming<SnapshotChunk>,
) -> Result<Option<SnapshotChunk>, Status> {
    tokio::time::timeout(RAFT_SNAPSHOT_CHUNK_IDLE_TIMEOUT, chunks.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no snapshot chunk for {} s",
                RAFT_SNAPSHOT_CHUNK_IDLE_TIMEOUT.as_secs()
            ))
        })?
}

/// Add one received chunk to a snapshot being assembled, refusing one that
/// would take it past the largest snapshot a node accepts. Memory grows
/// only with bytes actually received, never with a length a peer claims.
pub(super) fn append_chunk(body: &mut Vec<u8>, data: &[u8]) -> Result<(), Status> {
    if body.len().saturating_add(data.len()) > RAFT_SNAPSHOT_BYTES_MAX {
        return Err(Status::resource_exhausted(format!(
            "a snapshot larger than {RAFT_SNAPSHOT_BYTES_MAX} bytes"
        )));
    }
    body.extend_from_slice(data);
    Ok(())
}
