//! The internal `Raft` service: decode an openraft message, hand it to the
//! local Raft, encode the answer. Nodes only.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::cluster_service::read_index_here;
use super::proto;
use super::raft_codec;
use crate::consensus::snapshot::SnapshotBody;
use crate::consensus::types::{SnapshotMeta, TypeConfig, Vote};
use crate::node::NodeContext;

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotBody>;

/// The internal `Raft` service.
#[derive(Clone)]
pub struct RaftService {
    node: Arc<NodeContext>,
}

impl RaftService {
    /// Serve `node`.
    pub fn new(node: Arc<NodeContext>) -> Self {
        Self { node }
    }
}

fn raft_status<E: std::fmt::Display>(error: E) -> Status {
    Status::unavailable(error.to_string())
}

#[tonic::async_trait]
impl proto::raft_server::Raft for RaftService {
    async fn vote(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let vote = raft_codec::decode(request.get_ref(), self.node.node_id)?;
        let response = self.node.raft.vote(vote).await.map_err(raft_status)?;
        Ok(Response::new(raft_codec::encode_reply(&response)?))
    }

    async fn pre_vote(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let vote = raft_codec::decode(request.get_ref(), self.node.node_id)?;
        let response = self.node.raft.pre_vote(vote).await.map_err(raft_status)?;
        Ok(Response::new(raft_codec::encode_reply(&response)?))
    }

    async fn append_entries(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let append = raft_codec::decode(request.get_ref(), self.node.node_id)?;
        let response = self
            .node
            .raft
            .append_entries(append)
            .await
            .map_err(raft_status)?;
        Ok(Response::new(raft_codec::encode_reply(&response)?))
    }

    async fn install_snapshot(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let (vote, meta, body): (Vote, SnapshotMeta, SnapshotBody) =
            raft_codec::decode(request.get_ref(), self.node.node_id)?;
        let snapshot = Snapshot {
            meta,
            snapshot: body,
        };
        let response = self
            .node
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(raft_status)?;
        Ok(Response::new(raft_codec::encode_reply(&response)?))
    }

    async fn read_index(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let () = raft_codec::decode(request.get_ref(), self.node.node_id)?;
        let index = read_index_here(&self.node.raft).await?;
        Ok(Response::new(raft_codec::encode_reply(&index)?))
    }

    async fn transfer_leader(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let transfer = raft_codec::decode(request.get_ref(), self.node.node_id)?;
        let response = self
            .node
            .raft
            .handle_transfer_leader(transfer)
            .await
            .map_err(raft_status)?;
        Ok(Response::new(raft_codec::encode_reply(&response)?))
    }
}
