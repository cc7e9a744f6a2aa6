//! The public `Cluster` service: decode, call, map errors. Any node takes
//! any request; leader-only ones go through [`LeaderRunner`], linearizable
//! reads get a read index from the leader and are served locally.

use std::sync::Arc;

use clusterhost_client::ClientError;
use clusterhost_client::proto::{self, query_response};
use clusterhost_client::upload_chunks;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::convert;
use super::leader::{Attempt, Leader, LeaderRunner, forwarded, was_forwarded};
use super::report::{self, SelfInfo};
use super::settings_change;
use super::writes::{AnswerStream, Writer};
use crate::consensus::settings::ClusterSettings;
use crate::consensus::snapshot::Snapshots;
use crate::consensus::trusted_signers::{self, TrustedSigners};
use crate::consensus::{Consensus, MachineStatus, ProposeError, ReadIndexError};
use std::time::Duration;

use crate::limits::{
    FORWARD_BATCH_COMMANDS_MAX, PLUGIN_BYTES_MAX, QUERY_BYTES_MAX, REQUEST_TIMEOUT,
    SESSION_TIMEOUT_DEFAULT,
};
use crate::membership::autopilot::SharedView;
use crate::membership::leave::{self, LeaderCalls};
use crate::membership::{LocalMember, operations};
use crate::plugin::{PluginEngine, PluginHandle};

/// What the `Cluster` service works with.
pub struct ClusterService {
    /// This node's membership state.
    pub local: Arc<LocalMember>,
    /// Raft.
    pub consensus: Consensus,
    /// Leader-only requests from any node.
    pub leader: Arc<LeaderRunner>,
    /// Client commands (sharing [`Self::leader`]).
    pub writer: Writer,
    /// The plugin, for queries.
    pub plugin: PluginHandle,
    /// The engine uploads are validated with.
    pub engine: PluginEngine,
    /// What the state machine publishes.
    pub machine: watch::Receiver<MachineStatus>,
    /// What gossip sees.
    pub view: SharedView,
    /// The node's snapshot file, for backups.
    pub snapshots: Snapshots,
    /// `--plugin-signers`: checked only while the cluster cannot hold them.
    pub flag_signers: Option<TrustedSigners>,
    /// Plugin uploads being received ([`crate::limits::DEPLOY_UPLOADS_MAX`]).
    pub uploads: Arc<tokio::sync::Semaphore>,
}

pub(super) fn check_size(what: &str, bytes: usize, max: usize) -> Result<(), Status> {
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

fn answer<T>(reply: Result<tonic::Response<T>, Status>) -> Result<T, ClientError> {
    Ok(reply?.into_inner())
}

#[tonic::async_trait]
impl proto::cluster_server::Cluster for ClusterService {
    type BackupStream = super::backup::BackupStream;
    type ForwardBatchStream = AnswerStream;

    async fn forward_batch(
        &self,
        request: Request<proto::ForwardBatchRequest>,
    ) -> Result<Response<AnswerStream>, Status> {
        if !was_forwarded(request.metadata()) {
            return Err(Status::invalid_argument(
                "ForwardBatch carries commands forwarded between nodes only",
            ));
        }
        let commands = request.into_inner().commands;
        if commands.len() > FORWARD_BATCH_COMMANDS_MAX {
            return Err(Status::invalid_argument(format!(
                "a forwarded batch holds at most {FORWARD_BATCH_COMMANDS_MAX} commands"
            )));
        }
        Ok(Response::new(self.writer.answer_batch(commands)))
    }

    async fn backup(
        &self,
        _request: Request<proto::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        super::backup::backup_stream(&self.consensus, &self.snapshots)
            .await
            .map(Response::new)
    }

    async fn apply(
        &self,
        request: Request<proto::ApplyRequest>,
    ) -> Result<Response<proto::ApplyResponse>, Status> {
        let forwarded_here = was_forwarded(request.metadata());
        let command = request.into_inner().command;
        let response = self.writer.apply_command(forwarded_here, command, None);
        Ok(Response::new(response.await?))
    }

    async fn apply_in_session(
        &self,
        request: Request<proto::SessionApplyRequest>,
    ) -> Result<Response<proto::ApplyResponse>, Status> {
        let forwarded_here = was_forwarded(request.metadata());
        let proto::SessionApplyRequest { command, session } = request.into_inner();
        let stamp =
            session.ok_or_else(|| Status::invalid_argument("the session stamp is missing"))?;
        let response = self
            .writer
            .apply_command(forwarded_here, command, Some(stamp));
        Ok(Response::new(response.await?))
    }

    async fn open_session(
        &self,
        request: Request<proto::OpenSessionRequest>,
    ) -> Result<Response<proto::OpenSessionResponse>, Status> {
        let forwarded_here = was_forwarded(request.metadata());
        let timeout_ms = request.into_inner().timeout_ms;
        let timeout = match timeout_ms {
            0 => SESSION_TIMEOUT_DEFAULT,
            millis => Duration::from_millis(millis),
        };
        self.check_serving(&self.machine.borrow().clone())?;
        let here = || async {
            match self.consensus.open_session(timeout).await {
                Ok((client_id, timeout_ms)) => Ok(proto::OpenSessionResponse {
                    client_id,
                    timeout_ms,
                }),
                Err(ProposeError::NotLeader) => Err(Attempt::NotLeader),
                Err(error) => Err(Attempt::Final(convert::propose_status(error))),
            }
        };
        let there = |mut leader: Leader| async move {
            let request = forwarded(proto::OpenSessionRequest { timeout_ms });
            answer(leader.client.open_session(request).await)
        };
        let response = self.leader.run(forwarded_here, here, there).await?;
        Ok(Response::new(response))
    }

    async fn query(
        &self,
        request: Request<proto::QueryRequest>,
    ) -> Result<Response<proto::QueryResponse>, Status> {
        let request = request.into_inner();
        check_size("query", request.request.len(), QUERY_BYTES_MAX)?;
        self.check_serving(&self.machine.borrow().clone())?;
        if request.consistency() == proto::Consistency::Linearizable {
            self.read_barrier().await?;
        }
        let applied_index = self.consensus.view().applied_index;
        let outcome = self
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
        let machine = self.machine.borrow().clone();
        Ok(Response::new(report::status(
            &self.self_info(),
            &self.consensus.view(),
            &self.view.get(),
            &machine,
        )))
    }

    async fn snapshot(
        &self,
        _request: Request<proto::SnapshotRequest>,
    ) -> Result<Response<proto::SnapshotResponse>, Status> {
        let index = self
            .consensus
            .snapshot_now(REQUEST_TIMEOUT)
            .await
            .map_err(Status::unavailable)?;
        let size_bytes = self.machine.borrow().snapshot_size_bytes.unwrap_or(0);
        Ok(Response::new(proto::SnapshotResponse { index, size_bytes }))
    }

    async fn members(
        &self,
        _request: Request<proto::MembersRequest>,
    ) -> Result<Response<proto::MembersResponse>, Status> {
        let machine = self.machine.borrow().clone();
        Ok(Response::new(report::members(
            &self.self_info(),
            &self.consensus.view(),
            &self.view.get(),
            &machine,
        )))
    }

    async fn remove_member(
        &self,
        request: Request<proto::RemoveMemberRequest>,
    ) -> Result<Response<proto::RemoveMemberResponse>, Status> {
        let forwarded_here = was_forwarded(request.metadata());
        let node_id = request.into_inner().node_id;
        self.remove_through_leader(forwarded_here, node_id).await?;
        Ok(Response::new(proto::RemoveMemberResponse {}))
    }

    async fn transfer_leader(
        &self,
        request: Request<proto::TransferLeaderRequest>,
    ) -> Result<Response<proto::TransferLeaderResponse>, Status> {
        let forwarded_here = was_forwarded(request.metadata());
        let to = request.into_inner().to;
        let here = || async {
            operations::transfer_leader(&self.consensus, to)
                .await
                .map_err(|error| Attempt::Final(convert::operation_status(error)))?;
            Ok(to)
        };
        let there = |mut leader: Leader| async move {
            let request = forwarded(proto::TransferLeaderRequest { to });
            answer(leader.client.transfer_leader(request).await).map(|reply| reply.leader_id)
        };
        let leader_id = self.leader.run(forwarded_here, here, there).await?;
        Ok(Response::new(proto::TransferLeaderResponse { leader_id }))
    }

    async fn leave(
        &self,
        _request: Request<proto::LeaveRequest>,
    ) -> Result<Response<proto::LeaveResponse>, Status> {
        leave::leave(&self.local, &self.consensus, self).await?;
        Ok(Response::new(proto::LeaveResponse {}))
    }

    async fn deploy_plugin(
        &self,
        request: Request<tonic::Streaming<proto::PluginChunk>>,
    ) -> Result<Response<proto::DeployResponse>, Status> {
        let forwarded_here = was_forwarded(request.metadata());
        self.check_not_native()?;
        // Refused before any byte is read: each upload is buffered whole.
        let _receiving = self.uploads.try_acquire().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} plugin uploads are already being received; try again",
                crate::limits::DEPLOY_UPLOADS_MAX
            ))
        })?;
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
        let here = || async {
            // The cluster's setting (below level 3, this node's flag), which
            // the apply checks again on every replica: refused here, the log
            // stays unchanged.
            let signers = {
                let machine = self.machine.borrow();
                let flag = self.flag_signers.as_ref();
                trusted_signers::for_proposals(&machine.settings, &machine.signers, flag)
            };
            signers.verify(&plugin).map_err(|error| {
                Attempt::Final(Status::permission_denied(format!(
                    "deploy refused: {error}"
                )))
            })?;
            // Validated under this node's engine (which also fills its
            // compiled cache) before anything enters the log.
            self.engine
                .load_off_thread(plugin.clone())
                .await
                .map_err(|error| {
                    Attempt::Final(Status::invalid_argument(format!(
                        "not a valid plugin: {error}"
                    )))
                })?;
            self.consensus
                .propose_deploy(plugin.clone())
                .await
                .map(convert::deploy_response)
                .map_err(convert::deploy_attempt)
        };
        let there = |mut leader: Leader| {
            let mut request = forwarded(futures::stream::iter(upload_chunks(&plugin)));
            request.set_timeout(crate::limits::DEPLOY_TIMEOUT);
            async move { answer(leader.client.deploy_plugin(request).await) }
        };
        let receipt = self.leader.run(forwarded_here, here, there).await?;
        Ok(Response::new(receipt))
    }

    async fn rollback_plugin(
        &self,
        request: Request<proto::RollbackRequest>,
    ) -> Result<Response<proto::DeployResponse>, Status> {
        let forwarded_here = was_forwarded(request.metadata());
        self.check_not_native()?;
        let here = || async {
            let previous = self.machine.borrow().rollback_plugin.clone();
            let Some(previous) = previous else {
                return Err(Attempt::Final(Status::failed_precondition(
                    "there is no previous plugin version to roll back to",
                )));
            };
            self.consensus
                .propose_deploy(previous.as_ref().clone())
                .await
                .map(convert::deploy_response)
                .map_err(convert::deploy_attempt)
        };
        let there = |mut leader: Leader| {
            let mut request = forwarded(proto::RollbackRequest {});
            request.set_timeout(crate::limits::DEPLOY_TIMEOUT);
            async move { answer(leader.client.rollback_plugin(request).await) }
        };
        let receipt = self.leader.run(forwarded_here, here, there).await?;
        Ok(Response::new(receipt))
    }

    async fn get_settings(
        &self,
        _request: Request<proto::GetSettingsRequest>,
    ) -> Result<Response<proto::SettingsResponse>, Status> {
        let machine = self.machine.borrow();
        let response = convert::settings_response(&machine.settings, &machine.signers, 0);
        Ok(Response::new(response))
    }

    async fn set_setting(
        &self,
        request: Request<proto::SetSettingRequest>,
    ) -> Result<Response<proto::SettingsResponse>, Status> {
        let forwarded_here = was_forwarded(request.metadata());
        let change = request.into_inner();
        let here = || async {
            let current = self.machine.borrow().settings;
            let (request, changed) =
                settings_change::proposal(&current, &change.name, &change.value)
                    .map_err(Attempt::Final)?;
            self.check_setting_fits(&changed).map_err(Attempt::Final)?;
            match self.consensus.propose_settings(request).await {
                Ok((index, Ok(applied))) => {
                    // Published before the proposer hears back.
                    let signers = self.machine.borrow().signers.clone();
                    Ok(convert::settings_response(&applied, &signers, index))
                }
                Ok((_, Err(reason))) => Err(Attempt::Final(Status::failed_precondition(reason))),
                Err(ProposeError::NotLeader) => Err(Attempt::NotLeader),
                Err(error) => Err(Attempt::Final(convert::propose_status(error))),
            }
        };
        let there = |mut leader: Leader| {
            let request = forwarded(change.clone());
            async move { answer(leader.client.set_setting(request).await) }
        };
        let response = self.leader.run(forwarded_here, here, there).await?;
        Ok(Response::new(response))
    }

    async fn plugin_history(
        &self,
        _request: Request<proto::PluginHistoryRequest>,
    ) -> Result<Response<proto::PluginHistoryResponse>, Status> {
        let history = self.machine.borrow().history.clone();
        Ok(Response::new(convert::history_response(history)))
    }
}

impl ClusterService {
    /// A cluster of a native state machine takes no plugins: refused
    /// before anything is proposed (every replica would stop at the entry).
    fn check_not_native(&self) -> Result<(), Status> {
        match &self.machine.borrow().native {
            Some(name) => Err(Status::failed_precondition(format!(
                "this cluster runs the native state machine {name}: plugins cannot be deployed to it"
            ))),
            None => Ok(()),
        }
    }

    /// Refuse clients when this replica must not serve them: it is
    /// corrupt, or the replicas have no majority.
    fn check_serving(&self, machine: &MachineStatus) -> Result<(), Status> {
        self.writer.check_serving(machine)
    }

    /// Refuse settings the running cluster cannot take: a level some member
    /// does not support.
    fn check_setting_fits(&self, changed: &ClusterSettings) -> Result<(), Status> {
        let peers = self.view.get().peers;
        let members = self.consensus.view().members;
        let others = members.keys().filter(|id| **id != self.local.node_id);
        settings_change::behind_members(
            changed,
            others.map(|id| {
                let level = peers
                    .get(id)
                    .map_or(0, |peer| peer.announcement.protocol_level);
                (*id, level)
            }),
        )
    }

    fn self_info(&self) -> SelfInfo {
        SelfInfo {
            node_id: self.local.node_id,
            rpc_addr: self.local.rpc_addr.clone(),
            gossip_addr: self.local.gossip_addr.to_string(),
            leaving: self.local.is_leaving(),
        }
    }

    async fn remove_through_leader(
        &self,
        forwarded_here: bool,
        node_id: u64,
    ) -> Result<(), Status> {
        let here = || async {
            operations::remove_member(&self.consensus, node_id)
                .await
                .map_err(|error| Attempt::Final(convert::operation_status(error)))
        };
        let there = |mut leader: Leader| async move {
            let request = forwarded(proto::RemoveMemberRequest { node_id });
            answer(leader.client.remove_member(request).await).map(|_| ())
        };
        self.leader.run(forwarded_here, here, there).await
    }

    /// Wait until this node's state includes every write acknowledged
    /// before the call: the leader confirms its leadership with a quorum
    /// (read index), and this node waits to apply up to that index.
    async fn read_barrier(&self) -> Result<(), Status> {
        let started = std::time::Instant::now();
        let here = || async {
            self.consensus
                .read_index()
                .await
                .map_err(|error| match error {
                    ReadIndexError::NotLeader => Attempt::NotLeader,
                    ReadIndexError::Unavailable(message) => {
                        Attempt::Final(Status::unavailable(message))
                    }
                })
        };
        let there = |leader: Leader| async move {
            self.consensus
                .read_index_from(leader.leader_id, &leader.rpc_addr)
                .await
                .map_err(|reason| ClientError::Unreachable {
                    endpoint: leader.rpc_addr.clone(),
                    reason,
                })
        };
        let read_index = self.leader.run(false, here, there).await?;
        let remaining = REQUEST_TIMEOUT.saturating_sub(started.elapsed());
        let caught_up = self
            .consensus
            .wait_applied(read_index, remaining)
            .await
            .map_err(|error| {
                Status::unavailable(format!(
                    "this node did not catch up for a linearizable read: {error}"
                ))
            });
        self.consensus
            .metrics()
            .read_wait(caught_up.is_ok(), started.elapsed());
        caught_up
    }
}

/// Leaving goes through the leader like any other leader-only request.
impl LeaderCalls for ClusterService {
    type Error = Status;

    async fn sees_leaving(&self, node_id: u64) -> Result<bool, Status> {
        let here = || async { Ok(true) };
        let there = |mut leader: Leader| async move {
            // An answer that cannot be had counts as "not yet".
            Ok(
                answer(leader.client.members(proto::MembersRequest {}).await)
                    .map(|members| {
                        members
                            .members
                            .iter()
                            .any(|member| member.id == node_id && member.leaving)
                    })
                    .unwrap_or(false),
            )
        };
        self.leader.run(false, here, there).await
    }

    async fn remove(&self, node_id: u64) -> Result<(), Status> {
        self.remove_through_leader(false, node_id).await
    }

    fn retryable(error: &Status) -> bool {
        error.code() == tonic::Code::Unavailable
    }

    fn timed_out(message: &str) -> Status {
        Status::unavailable(message)
    }
}
