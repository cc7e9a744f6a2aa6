//! The gRPC services: decode, call the node, map errors. No decisions here.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ReadPolicy;
use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};
use tonic::{Request, Response, Status};

use super::proto::{self, apply_response, query_response};
use super::raft_codec;
use crate::consensus::current_metrics;
use crate::consensus::snapshot::SnapshotBody;
use crate::consensus::types::{
    Request as RaftRequest, Response as RaftResponse, SnapshotMeta, Vote,
};
use crate::limits::{CLIENT_REQUEST_TIMEOUT_MS, COMMAND_BYTES_MAX, QUERY_BYTES_MAX};
use crate::node::NodeContext;
use crate::plugin::ApplyError;

type Snapshot = openraft::alias::SnapshotOf<crate::consensus::types::TypeConfig, SnapshotBody>;

const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_millis(CLIENT_REQUEST_TIMEOUT_MS);

/// The public `Cluster` service.
#[derive(Clone)]
pub struct ClusterService {
    node: Arc<NodeContext>,
}

impl ClusterService {
    /// Serve `node`.
    pub fn new(node: Arc<NodeContext>) -> Self {
        Self { node }
    }
}

/// Current wall-clock time in ms since the epoch: the leader stamps it on
/// every command it proposes.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[tonic::async_trait]
impl proto::cluster_server::Cluster for ClusterService {
    async fn apply(
        &self,
        request: Request<proto::ApplyRequest>,
    ) -> Result<Response<proto::ApplyResponse>, Status> {
        let command = request.into_inner().command;
        check_size("command", command.len(), COMMAND_BYTES_MAX)?;
        let proposal = RaftRequest::Command {
            time_ms: now_ms(),
            bytes: command,
        };
        let written = tokio::time::timeout(
            CLIENT_REQUEST_TIMEOUT,
            self.node.raft.client_write(proposal),
        )
        .await
        .map_err(|_| Status::unavailable("timed out waiting for the command to commit"))?
        .map_err(|error| self.write_error(error))?;
        let result = match written.data {
            RaftResponse::Command(Ok(bytes)) => apply_response::Result::Ok(bytes),
            RaftResponse::Command(Err(ApplyError::Rejected(message))) => {
                apply_response::Result::Rejected(message)
            }
            RaftResponse::Command(Err(ApplyError::Fault(fault))) => {
                apply_response::Result::Fault(fault.to_string())
            }
            other => {
                return Err(Status::internal(format!(
                    "unexpected response to a command: {other:?}"
                )));
            }
        };
        Ok(Response::new(proto::ApplyResponse {
            index: written.log_id.index,
            result: Some(result),
        }))
    }

    async fn query(
        &self,
        request: Request<proto::QueryRequest>,
    ) -> Result<Response<proto::QueryResponse>, Status> {
        let request = request.into_inner();
        check_size("query", request.request.len(), QUERY_BYTES_MAX)?;
        if request.consistency() == proto::Consistency::Linearizable {
            tokio::time::timeout(
                CLIENT_REQUEST_TIMEOUT,
                self.node.raft.ensure_linearizable(ReadPolicy::ReadIndex),
            )
            .await
            .map_err(|_| {
                Status::unavailable("timed out confirming leadership for a linearizable read")
            })?
            .map_err(|error| match error {
                RaftError::APIError(api) => not_leader_status(&api.to_string()),
                RaftError::Fatal(fatal) => {
                    Status::unavailable(format!("node is stopping: {fatal}"))
                }
            })?;
        }
        let applied_index = current_metrics(&self.node.raft)
            .last_applied
            .as_ref()
            .map_or(0, |log_id| log_id.index);
        let outcome = self
            .node
            .plugin
            .query(request.request)
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        let result = match outcome {
            Ok(Ok(bytes)) => query_response::Result::Ok(bytes),
            Ok(Err(message)) => query_response::Result::Rejected(message),
            Err(fault) => query_response::Result::Fault(fault.to_string()),
        };
        Ok(Response::new(proto::QueryResponse {
            applied_index,
            result: Some(result),
        }))
    }

    async fn status(
        &self,
        _request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        Ok(Response::new(self.node.status()))
    }

    async fn snapshot(
        &self,
        _request: Request<proto::SnapshotRequest>,
    ) -> Result<Response<proto::SnapshotResponse>, Status> {
        let target = current_metrics(&self.node.raft)
            .last_applied
            .as_ref()
            .map_or(0, |log_id| log_id.index);
        self.node
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        let snapshot = self
            .node
            .raft
            .wait(Some(CLIENT_REQUEST_TIMEOUT))
            .metrics(
                |metrics| {
                    metrics
                        .snapshot
                        .as_ref()
                        .is_some_and(|log_id| log_id.index >= target)
                },
                "snapshot requested by a client",
            )
            .await
            .map_err(|error| Status::unavailable(format!("snapshot did not complete: {error}")))?;
        let status = self.node.machine.borrow().clone();
        Ok(Response::new(proto::SnapshotResponse {
            index: snapshot.snapshot.as_ref().map_or(0, |log_id| log_id.index),
            size_bytes: status.snapshot_size_bytes.unwrap_or(0),
        }))
    }
}

impl ClusterService {
    fn write_error(
        &self,
        error: RaftError<
            crate::consensus::types::TypeConfig,
            ClientWriteError<crate::consensus::types::TypeConfig>,
        >,
    ) -> Status {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                let leader = match (&forward.leader_id, &forward.leader_node) {
                    (Some(id), Some(node)) => format!("node {id} at {}", node.rpc_addr),
                    (Some(id), None) => format!("node {id}"),
                    _ => "unknown (an election may be in progress)".to_string(),
                };
                Status::unavailable(format!(
                    "this node is not the leader; the leader is {leader}"
                ))
            }
            RaftError::APIError(other) => Status::failed_precondition(other.to_string()),
            RaftError::Fatal(fatal) => Status::unavailable(format!("node is stopping: {fatal}")),
        }
    }
}

fn not_leader_status(detail: &str) -> Status {
    Status::unavailable(format!("cannot serve a linearizable read here: {detail}"))
}

fn check_size(what: &str, bytes: usize, max: usize) -> Result<(), Status> {
    if bytes > max {
        return Err(Status::resource_exhausted(format!(
            "{what} is {bytes} bytes, larger than the {max} byte limit"
        )));
    }
    if bytes == 0 {
        return Err(Status::invalid_argument(format!("{what} is empty")));
    }
    Ok(())
}

/// Role name used in status output.
pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

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
        let vote = raft_codec::decode(request.get_ref())?;
        let response = self.node.raft.vote(vote).await.map_err(raft_status)?;
        Ok(Response::new(raft_codec::encode(&response)?))
    }

    async fn pre_vote(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let vote = raft_codec::decode(request.get_ref())?;
        let response = self.node.raft.pre_vote(vote).await.map_err(raft_status)?;
        Ok(Response::new(raft_codec::encode(&response)?))
    }

    async fn append_entries(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let append = raft_codec::decode(request.get_ref())?;
        let response = self
            .node
            .raft
            .append_entries(append)
            .await
            .map_err(raft_status)?;
        Ok(Response::new(raft_codec::encode(&response)?))
    }

    async fn install_snapshot(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let (vote, meta, body): (Vote, SnapshotMeta, SnapshotBody) =
            raft_codec::decode(request.get_ref())?;
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
        Ok(Response::new(raft_codec::encode(&response)?))
    }

    async fn transfer_leader(
        &self,
        request: Request<proto::RaftMessage>,
    ) -> Result<Response<proto::RaftMessage>, Status> {
        let transfer = raft_codec::decode(request.get_ref())?;
        let response = self
            .node
            .raft
            .handle_transfer_leader(transfer)
            .await
            .map_err(raft_status)?;
        Ok(Response::new(raft_codec::encode(&response)?))
    }
}
