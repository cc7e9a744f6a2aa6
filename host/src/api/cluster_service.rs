//! The public `Cluster` service. Any node takes any request: writes and
//! membership operations are forwarded to the leader; linearizable reads
//! get a read index from the leader and are served locally.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::ReadPolicy;
use openraft::ServerState;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use tonic::{Request, Response, Status};

use super::client::{Client, ClientError};
use super::forward::{self, Route};
use super::proto::{self, apply_response, query_response};
use super::raft_codec;
use crate::consensus::current_metrics;
use crate::consensus::types::{NodeId, Raft, Request as RaftRequest, Response as RaftResponse};
use crate::deploy;
use crate::limits::{
    CLIENT_REQUEST_TIMEOUT_MS, COMMAND_BYTES_MAX, PLUGIN_BYTES_MAX, QUERY_BYTES_MAX,
};
use crate::membership::operations::{self, OperationError};
use crate::node::NodeContext;
use crate::plugin::ApplyError;

const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_millis(CLIENT_REQUEST_TIMEOUT_MS);

/// Longest pause between attempts to reach a leader.
const LEADER_RETRY_INTERVAL: Duration = Duration::from_millis(100);

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

#[tonic::async_trait]
impl proto::cluster_server::Cluster for ClusterService {
    async fn apply(
        &self,
        request: Request<proto::ApplyRequest>,
    ) -> Result<Response<proto::ApplyResponse>, Status> {
        let forwarded = forward::was_forwarded(request.metadata());
        let command = request.into_inner().command;
        check_size("command", command.len(), COMMAND_BYTES_MAX)?;
        let deadline = Instant::now() + CLIENT_REQUEST_TIMEOUT;
        loop {
            match forward::current_route(self.node.node_id, &self.node.raft, &self.node.addresses) {
                Route::Local => match self.propose(command.clone()).await {
                    Err(ProposeError::NotLeader) => {}
                    Err(ProposeError::Status(status)) => return Err(status),
                    Ok(response) => return Ok(Response::new(response)),
                },
                // A forwarded request reached a node that is not the leader:
                // refuse cleanly; the origin waits for the leader and retries.
                Route::Forward { .. } if forwarded => {
                    return Err(forward::not_leader("this node is no longer the leader"));
                }
                Route::Forward { rpc_addr, .. } => {
                    match self.forward_apply(&rpc_addr, command.clone()).await {
                        Ok(response) => return Ok(Response::new(response)),
                        Err(ForwardError::Retry) => {}
                        Err(ForwardError::Final(status)) => return Err(status),
                    }
                }
                Route::NoLeader => {}
                Route::Stopping => return Err(stopping()),
            }
            wait_for_leader_change(&self.node.raft, deadline).await?;
        }
    }

    async fn query(
        &self,
        request: Request<proto::QueryRequest>,
    ) -> Result<Response<proto::QueryResponse>, Status> {
        let request = request.into_inner();
        check_size("query", request.request.len(), QUERY_BYTES_MAX)?;
        if request.consistency() == proto::Consistency::Linearizable {
            self.read_barrier().await?;
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

    async fn members(
        &self,
        _request: Request<proto::MembersRequest>,
    ) -> Result<Response<proto::MembersResponse>, Status> {
        Ok(Response::new(self.node.members()))
    }

    async fn remove_member(
        &self,
        request: Request<proto::RemoveMemberRequest>,
    ) -> Result<Response<proto::RemoveMemberResponse>, Status> {
        let forwarded = forward::was_forwarded(request.metadata());
        let node_id = request.into_inner().node_id;
        match self.leader_route(forwarded).await? {
            None => operations::remove_member(&self.node.raft, node_id)
                .await
                .map_err(operation_status)?,
            Some(mut leader) => leader.remove_member(node_id).await.map_err(client_status)?,
        }
        Ok(Response::new(proto::RemoveMemberResponse {}))
    }

    async fn transfer_leader(
        &self,
        request: Request<proto::TransferLeaderRequest>,
    ) -> Result<Response<proto::TransferLeaderResponse>, Status> {
        let forwarded = forward::was_forwarded(request.metadata());
        let to = request.into_inner().to;
        let leader_id = match self.leader_route(forwarded).await? {
            None => {
                operations::transfer_leader(&self.node.raft, to)
                    .await
                    .map_err(operation_status)?;
                to
            }
            Some(mut leader) => leader.transfer_leader(to).await.map_err(client_status)?,
        };
        Ok(Response::new(proto::TransferLeaderResponse { leader_id }))
    }

    async fn leave(
        &self,
        _request: Request<proto::LeaveRequest>,
    ) -> Result<Response<proto::LeaveResponse>, Status> {
        // Announce first, and wait until the leader's gossip has heard it, so
        // its reconciler does not add this node back once it is removed (a
        // dead node's last gossip state, `leaving`, outlives it).
        self.node.leaving.store(true, Ordering::SeqCst);
        self.node.announce_now.notify_one();
        operations::step_down(&self.node.raft, self.node.node_id).await;
        let node_id = self.node.node_id;
        let deadline = Instant::now() + CLIENT_REQUEST_TIMEOUT;
        self.wait_until_leader_sees_leaving(deadline).await?;
        loop {
            let result = match self.leader_route(false).await {
                Ok(None) => operations::remove_member(&self.node.raft, node_id)
                    .await
                    .map_err(operation_status),
                Ok(Some(mut leader)) => leader.remove_member(node_id).await.map_err(client_status),
                Err(status) => Err(status),
            };
            match result {
                Ok(()) => break,
                Err(status)
                    if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
                {
                    wait_for_leader_change(&self.node.raft, deadline).await?;
                }
                Err(status) => return Err(status),
            }
        }
        tracing::info!("left the cluster; stopping");
        self.node.request_stop();
        Ok(Response::new(proto::LeaveResponse {}))
    }

    async fn deploy_plugin(
        &self,
        request: Request<tonic::Streaming<proto::PluginChunk>>,
    ) -> Result<Response<proto::DeployResponse>, Status> {
        let forwarded = forward::was_forwarded(request.metadata());
        let mut chunks = request.into_inner();
        let mut plugin = Vec::new();
        while let Some(chunk) = chunks.message().await? {
            if plugin.len() + chunk.data.len() > PLUGIN_BYTES_MAX {
                return Err(Status::resource_exhausted(format!(
                    "plugin is larger than the {PLUGIN_BYTES_MAX} byte limit"
                )));
            }
            plugin.extend_from_slice(&chunk.data);
        }
        if plugin.is_empty() {
            return Err(Status::invalid_argument("the uploaded plugin is empty"));
        }
        let receipt = match self.leader_route(forwarded).await? {
            None => deploy::deploy(&self.node.raft, &self.node.engine, plugin)
                .await
                .map_err(deploy_status)?
                .into(),
            Some(mut leader) => leader.deploy_plugin(plugin).await.map_err(client_status)?,
        };
        Ok(Response::new(receipt))
    }

    async fn rollback_plugin(
        &self,
        request: Request<proto::RollbackRequest>,
    ) -> Result<Response<proto::DeployResponse>, Status> {
        let forwarded = forward::was_forwarded(request.metadata());
        let receipt = match self.leader_route(forwarded).await? {
            None => {
                let previous = self.node.machine.borrow().rollback_plugin.clone();
                let Some(previous) = previous else {
                    return Err(Status::failed_precondition(
                        "there is no previous plugin version to roll back to",
                    ));
                };
                deploy::propose(&self.node.raft, previous.as_ref().clone())
                    .await
                    .map_err(deploy_status)?
                    .into()
            }
            Some(mut leader) => leader.rollback_plugin().await.map_err(client_status)?,
        };
        Ok(Response::new(receipt))
    }

    async fn plugin_history(
        &self,
        _request: Request<proto::PluginHistoryRequest>,
    ) -> Result<Response<proto::PluginHistoryResponse>, Status> {
        let history = self.node.machine.borrow().history.clone();
        Ok(Response::new(proto::PluginHistoryResponse {
            cluster_version: history.cluster_version,
            records: history
                .records
                .into_iter()
                .map(|record| proto::DeployRecord {
                    version: record.version,
                    digest: record.digest,
                    size_bytes: record.size_bytes,
                    index: record.index,
                    time_ms: record.time_ms,
                    failure: record.failure.unwrap_or_default(),
                })
                .collect(),
        }))
    }
}

fn deploy_status(error: deploy::DeployError) -> Status {
    match error {
        deploy::DeployError::Invalid(_) => Status::invalid_argument(error.to_string()),
        deploy::DeployError::Failed(_) => Status::failed_precondition(error.to_string()),
        deploy::DeployError::NotLeader => forward::not_leader("this node is no longer the leader"),
        deploy::DeployError::Unavailable(message) => Status::unavailable(message),
    }
}

impl From<crate::consensus::types::DeployReceipt> for proto::DeployResponse {
    fn from(receipt: crate::consensus::types::DeployReceipt) -> Self {
        Self {
            version: receipt.version,
            digest: receipt.digest,
            index: receipt.index,
        }
    }
}

/// Why a local proposal did not produce a response.
enum ProposeError {
    /// Leadership moved before the proposal was accepted: retry.
    NotLeader,
    /// Anything else, for the client.
    Status(Status),
}

/// Why a forward did not produce a response.
enum ForwardError {
    /// Nothing was proposed: safe to retry once a leader is known.
    Retry,
    /// The leader's answer (or an ambiguous failure) for the client.
    Final(Status),
}

impl ClusterService {
    /// Propose `command` on this node, the leader, stamping the time.
    async fn propose(&self, command: Vec<u8>) -> Result<proto::ApplyResponse, ProposeError> {
        let proposal = RaftRequest::Command {
            time_ms: now_ms(),
            bytes: command,
        };
        let written = tokio::time::timeout(
            CLIENT_REQUEST_TIMEOUT,
            self.node.raft.client_write(proposal),
        )
        .await
        .map_err(|_| {
            ProposeError::Status(Status::unavailable(
                "timed out waiting for the command to commit",
            ))
        })?
        .map_err(|error| match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ProposeError::NotLeader,
            RaftError::APIError(other) => {
                ProposeError::Status(Status::failed_precondition(other.to_string()))
            }
            RaftError::Fatal(fatal) => {
                ProposeError::Status(Status::unavailable(format!("node is stopping: {fatal}")))
            }
        })?;
        let result = match written.data {
            RaftResponse::Command(Ok(bytes)) => apply_response::Result::Ok(bytes),
            RaftResponse::Command(Err(ApplyError::Rejected(message))) => {
                apply_response::Result::Rejected(message)
            }
            RaftResponse::Command(Err(ApplyError::Fault(fault))) => {
                apply_response::Result::Fault(fault.to_string())
            }
            other => {
                return Err(ProposeError::Status(Status::internal(format!(
                    "unexpected response to a command: {other:?}"
                ))));
            }
        };
        Ok(proto::ApplyResponse {
            index: written.log_id.index,
            result: Some(result),
        })
    }

    async fn forward_apply(
        &self,
        rpc_addr: &str,
        command: Vec<u8>,
    ) -> Result<proto::ApplyResponse, ForwardError> {
        let Ok(mut leader) = self.node.forwarder.client(rpc_addr).await else {
            // Could not connect: nothing was sent.
            return Err(ForwardError::Retry);
        };
        match leader.apply(command).await {
            Ok(response) => Ok(response),
            Err(ClientError::Status(status)) if forward::is_not_leader(&status) => {
                Err(ForwardError::Retry)
            }
            Err(ClientError::Status(status)) if forward::is_connect_failure(&status) => {
                self.node.forwarder.forget(rpc_addr);
                Err(ForwardError::Retry)
            }
            Err(ClientError::Status(status)) => {
                if status.code() == tonic::Code::Unavailable {
                    self.node.forwarder.forget(rpc_addr);
                }
                Err(ForwardError::Final(status))
            }
            Err(ClientError::Unreachable { .. }) => {
                self.node.forwarder.forget(rpc_addr);
                Err(ForwardError::Retry)
            }
        }
    }

    /// Wait until the leader's view marks this node as leaving.
    async fn wait_until_leader_sees_leaving(&self, deadline: Instant) -> Result<(), Status> {
        let node_id = self.node.node_id;
        loop {
            let seen = match self.leader_route(false).await? {
                // The leader (this node, when it could not hand over) knows.
                None => true,
                Some(mut leader) => leader
                    .members()
                    .await
                    .map(|members| {
                        members
                            .members
                            .iter()
                            .any(|member| member.id == node_id && member.leaving)
                    })
                    .unwrap_or(false),
            };
            if seen {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Status::unavailable(
                    "the leader did not learn that this node is leaving in time; nothing was changed",
                ));
            }
            self.node.announce_now.notify_one();
            wait_for_leader_change(&self.node.raft, deadline).await?;
        }
    }

    /// `None` when this node leads; otherwise a client to the leader.
    async fn leader_route(&self, forwarded: bool) -> Result<Option<Client>, Status> {
        let deadline = Instant::now() + CLIENT_REQUEST_TIMEOUT;
        loop {
            match forward::current_route(self.node.node_id, &self.node.raft, &self.node.addresses) {
                Route::Local => return Ok(None),
                Route::Forward { .. } if forwarded => {
                    return Err(forward::not_leader("this node is no longer the leader"));
                }
                Route::Forward { rpc_addr, .. } => {
                    match self.node.forwarder.client(&rpc_addr).await {
                        Ok(client) => return Ok(Some(client)),
                        Err(_) => self.node.forwarder.forget(&rpc_addr),
                    }
                }
                Route::NoLeader => {}
                Route::Stopping => return Err(stopping()),
            }
            wait_for_leader_change(&self.node.raft, deadline).await?;
        }
    }

    /// Wait until this node's state includes every write acknowledged
    /// before the call: the leader confirms its leadership with a quorum
    /// (read index), and this node waits to apply up to that index.
    async fn read_barrier(&self) -> Result<(), Status> {
        let deadline = Instant::now() + CLIENT_REQUEST_TIMEOUT;
        let read_index = loop {
            match forward::current_route(self.node.node_id, &self.node.raft, &self.node.addresses) {
                Route::Local => match read_index_here(&self.node.raft).await {
                    Ok(index) => break index,
                    Err(status) if forward::is_not_leader(&status) => {}
                    Err(status) => return Err(status),
                },
                Route::Forward {
                    leader_id,
                    rpc_addr,
                } => match self.read_index_from(leader_id, &rpc_addr).await {
                    Ok(index) => break index,
                    Err(_) => self.node.forwarder.forget(&rpc_addr),
                },
                Route::NoLeader => {}
                Route::Stopping => return Err(stopping()),
            }
            wait_for_leader_change(&self.node.raft, deadline).await?;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.node
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(read_index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|error| {
                Status::unavailable(format!(
                    "this node did not catch up for a linearizable read: {error}"
                ))
            })
    }

    async fn read_index_from(&self, leader_id: NodeId, rpc_addr: &str) -> Result<u64, Status> {
        let mut client = self.node.forwarder.raft_client(rpc_addr)?;
        let mut request = Request::new(raft_codec::encode(&(), leader_id)?);
        request.set_timeout(CLIENT_REQUEST_TIMEOUT);
        let response = client.read_index(request).await?;
        raft_codec::decode_reply(response.get_ref())
    }
}

/// Confirm leadership with a quorum and return the read index.
pub async fn read_index_here(raft: &Raft) -> Result<u64, Status> {
    let (read_log_id, _applied) = tokio::time::timeout(
        CLIENT_REQUEST_TIMEOUT,
        raft.get_read_log_id(ReadPolicy::ReadIndex),
    )
    .await
    .map_err(|_| Status::unavailable("timed out confirming leadership for a linearizable read"))?
    .map_err(|error| match error {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(_)) => {
            forward::not_leader("not the leader")
        }
        RaftError::APIError(other) => {
            Status::unavailable(format!("cannot serve a linearizable read: {other}"))
        }
        RaftError::Fatal(fatal) => Status::unavailable(format!("node is stopping: {fatal}")),
    })?;
    Ok(read_log_id.index())
}

/// Wait (bounded by `deadline`) for the leader to change or appear; fail
/// with `unavailable` naming the reason once the deadline has passed.
async fn wait_for_leader_change(raft: &Raft, deadline: Instant) -> Result<(), Status> {
    let now = Instant::now();
    let known = current_metrics(raft).current_leader;
    if now >= deadline {
        return Err(Status::unavailable(match known {
            None => "no leader: the cluster is electing one or has lost its quorum".to_string(),
            Some(leader) => {
                format!("the leader (node {leader}) did not accept the request in time")
            }
        }));
    }
    let wait = LEADER_RETRY_INTERVAL.min(deadline - now);
    // Wake as soon as the leader changes, or retry after a short pause.
    let _changed = raft
        .wait(Some(wait))
        .metrics(|metrics| metrics.current_leader != known, "leader change")
        .await;
    Ok(())
}

/// The answer to requests that arrive while the node shuts down; clients
/// retry elsewhere.
fn stopping() -> Status {
    Status::unavailable("this node is shutting down")
}

fn operation_status(error: OperationError) -> Status {
    match error {
        OperationError::UnknownNode(_) => Status::not_found(error.to_string()),
        OperationError::Invalid(message) => Status::invalid_argument(message),
        OperationError::Unavailable(message) => Status::unavailable(message),
    }
}

fn client_status(error: ClientError) -> Status {
    match error {
        ClientError::Status(status) => status,
        ClientError::Unreachable { .. } => Status::unavailable(error.to_string()),
    }
}
