//! [`Consensus`]: the node's Raft, behind our own small interface. The rest
//! of the node proposes, reads, waits and changes membership through it and
//! sees Raft's state as a plain [`ConsensusView`]; no openraft type crosses
//! this seam. `proposals` holds the typed proposals (commands, sessions,
//! deploys, settings, alarms) built on [`Consensus::propose`].

mod proposals;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clusterhost_client::ClientTls;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{ChangeMembers, ReadPolicy, ServerState};

use super::Raft;
use tokio::sync::watch;

use super::sessions::SessionRefusal;
use super::state_machine::MachineStatus;
use super::transport::proto::RaftCall;
use super::transport::proto::raft_server::RaftServer;
use super::transport::sender::Vouched;
use super::transport::{AddressBook, Connections, RaftService, peer};
use super::types::{Member, NodeId, Request, Response, TypeConfig};
use super::view::{ConsensusView, MemberView, Role};
use crate::limits::{RAFT_GRPC_MESSAGE_BYTES_MAX, REQUEST_TIMEOUT};
use crate::metrics::{Metrics, ProposalOutcome};
use crate::plugin::ApplyOutcome;

/// Why a proposal produced no response.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; nothing was proposed.
    #[error("this node is not the leader")]
    NotLeader,
    /// The entry may or may not have committed: no answer in time, or the
    /// leader lost it from its log (another may have committed it).
    #[error("{0}")]
    Ambiguous(String),
    /// Raft refused the proposal.
    #[error("{0}")]
    Refused(String),
}

/// A committed and applied proposal.
#[derive(Debug)]
pub struct Proposed {
    /// Its log index.
    pub index: u64,
    /// What applying it produced.
    pub response: Response,
}

/// What became of a session command.
#[derive(Debug)]
pub enum CommandAnswer {
    /// Applied now, at this index.
    Applied {
        /// Its log index.
        index: u64,
        /// The plugin's outcome.
        outcome: ApplyOutcome,
    },
    /// Applied before, at this index: the kept outcome.
    Replayed {
        /// The index it applied at.
        index: u64,
        /// The plugin's outcome then.
        outcome: ApplyOutcome,
    },
    /// Not applied, and why.
    Refused(SessionRefusal),
}

/// Why a deploy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Every replica tried and kept the running plugin (recorded in history).
    #[error("the deploy failed on every replica; the running plugin stays: {0}")]
    Failed(String),
    /// This node is not the leader; nothing was proposed.
    #[error("this node is not the leader")]
    NotLeader,
    /// No answer in time, or the node is stopping.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a read index could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ReadIndexError {
    /// This node is not the leader.
    #[error("not the leader")]
    NotLeader,
    /// Leadership could not be confirmed.
    #[error("{0}")]
    Unavailable(String),
}

/// One change to the Raft membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a non-voting member.
    AddLearner {
        /// Its id.
        node_id: NodeId,
        /// Its gRPC address.
        rpc_addr: String,
        /// Its verified node name, recorded with it.
        name: Option<String>,
    },
    /// Make a learner a voter.
    AddVoter(NodeId),
    /// Take a voter's vote (it stays a learner).
    RemoveVoter(NodeId),
    /// Remove a non-voting member.
    RemoveNode(NodeId),
    /// Record a member's new gRPC address.
    SetAddress {
        /// Its id.
        node_id: NodeId,
        /// Its new address.
        rpc_addr: String,
        /// Its verified node name, recorded with it.
        name: Option<String>,
    },
    /// Leave a committed joint configuration for its target (the second
    /// step of a change that was interrupted after the first).
    FinishJoint,
}

/// The node's Raft. Cloning shares it.
#[derive(Clone)]
pub struct Consensus {
    raft: Raft,
    node_id: NodeId,
    addresses: AddressBook,
    connections: Arc<Connections>,
    machine: watch::Receiver<MachineStatus>,
    metrics: Metrics,
    tls: Option<Arc<ClientTls>>,
    /// The names this node's identity checks verified, for the Raft
    /// service to check senders against.
    vouched: Arc<watch::Sender<Vouched>>,
}

impl Consensus {
    pub(super) fn new(
        raft: Raft,
        node_id: NodeId,
        addresses: AddressBook,
        machine: watch::Receiver<MachineStatus>,
        tls: Option<Arc<ClientTls>>,
    ) -> Self {
        Self {
            raft,
            node_id,
            addresses,
            connections: Arc::new(Connections::new(tls.clone())),
            machine,
            metrics: Metrics::default(),
            tls,
            vouched: Arc::new(watch::Sender::new(Vouched::default())),
        }
    }

    /// Count proposals in `metrics`.
    pub(super) fn recording_to(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where this node's metrics are recorded.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The certificate this node presents when it dials other nodes
    /// (Raft, forwarded requests); `None` without TLS.
    pub fn peer_tls(&self) -> Option<&ClientTls> {
        self.tls.as_deref()
    }

    /// What the state machine publishes.
    pub fn machine(&self) -> watch::Receiver<MachineStatus> {
        self.machine.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Where gossip says peers are (the autopilot keeps it current).
    pub fn addresses(&self) -> &AddressBook {
        &self.addresses
    }

    /// Where the identity checks publish the names they verified.
    pub fn vouched(&self) -> Arc<watch::Sender<Vouched>> {
        self.vouched.clone()
    }

    /// The internal gRPC service other nodes send Raft messages to.
    pub fn raft_service(&self) -> RaftServer<RaftService> {
        let vouched = self.vouched.subscribe();
        RaftServer::new(RaftService::new(self.raft.clone(), self.node_id, vouched))
            .max_decoding_message_size(RAFT_GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_GRPC_MESSAGE_BYTES_MAX)
    }

    /// Raft's state now.
    pub fn view(&self) -> ConsensusView {
        view_of(&super::current_metrics(&self.raft))
    }

    /// Propose `request` on this node (it must lead) and wait until it is
    /// committed and applied, at most `timeout`.
    pub async fn propose(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Proposed, ProposeError> {
        let written = self.write(request, timeout).await;
        self.metrics.proposal(match &written {
            Ok(_) => ProposalOutcome::Ok,
            Err(ProposeError::NotLeader) => ProposalOutcome::NotLeader,
            Err(ProposeError::Ambiguous(_)) => ProposalOutcome::Ambiguous,
            Err(ProposeError::Refused(_)) => ProposalOutcome::Refused,
        });
        written
    }

    async fn write(&self, request: Request, timeout: Duration) -> Result<Proposed, ProposeError> {
        let active = self.machine.borrow().settings.protocol_level;
        let needed = request.required_level();
        if needed > active {
            return Err(ProposeError::Refused(format!(
                "this needs protocol level {needed}; the cluster runs at {active}. Once every node runs a \
                 clusterhost that supports it: clusterhost config set protocol_level {needed}"
            )));
        }
        let written = tokio::time::timeout(timeout, self.raft.client_write(request))
            .await
            .map_err(|_| {
                ProposeError::Ambiguous("timed out waiting for the entry to commit".to_string())
            })?
            .map_err(|error| match error {
                RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                    ProposeError::NotLeader
                }
                RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
                    ProposeError::Ambiguous(
                        "this node lost the entry from its log after proposing it; another leader may have committed it"
                            .to_string(),
                    )
                }
                RaftError::APIError(other) => ProposeError::Refused(other.to_string()),
                // The core stopped after the entry may have been appended
                // and replicated.
                RaftError::Fatal(fatal) => ProposeError::Ambiguous(format!("node is stopping: {fatal}")),
            })?;
        Ok(Proposed {
            index: written.log_id.index,
            response: written.data,
        })
    }

    /// Let this node campaign for leadership, or not (a corrupt replica
    /// must never lead; it still votes and replicates).
    pub fn set_electable(&self, electable: bool) {
        self.raft.runtime_config().elect(electable);
    }

    /// Confirm leadership with a quorum; the log index a linearizable read
    /// must see applied.
    pub async fn read_index(&self) -> Result<u64, ReadIndexError> {
        read_index(&self.raft).await
    }

    /// The read index from the leader `leader_id` at `rpc_addr`.
    pub async fn read_index_from(&self, leader_id: NodeId, rpc_addr: &str) -> Result<u64, String> {
        let result = match self.connections.get(rpc_addr) {
            Ok(client) => {
                peer::call(client, leader_id, RaftCall::ReadIndex, &(), REQUEST_TIMEOUT).await
            }
            Err(status) => Err(status),
        };
        result.map_err(|status| {
            self.connections.forget(rpc_addr);
            status.message().to_string()
        })
    }

    /// Wait until this node has applied `index`, at most `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), String> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "applied index")
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// Wait at most `wait` for the leader to differ from `known`.
    pub async fn wait_leader_change(&self, known: Option<NodeId>, wait: Duration) {
        let _changed = self
            .raft
            .wait(Some(wait))
            .metrics(|metrics| metrics.current_leader != known, "leader change")
            .await;
    }

    /// Wait at most `timeout` until `leader` leads, as this node sees it.
    pub async fn wait_leader_is(&self, leader: NodeId, timeout: Duration) -> Result<(), String> {
        self.raft
            .wait(Some(timeout))
            .metrics(
                |metrics| metrics.current_leader == Some(leader),
                "leadership moved",
            )
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// Wait at most `timeout` until this node leads.
    pub async fn wait_leading(&self, timeout: Duration) -> Result<(), String> {
        self.raft
            .wait(Some(timeout))
            .state(ServerState::Leader, "leading")
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// Take a snapshot of everything applied so far; wait at most `timeout`
    /// for it and return the index it includes.
    pub async fn snapshot_now(&self, timeout: Duration) -> Result<u64, String> {
        let target = self.view().applied_index;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|error| error.to_string())?;
        let metrics = self
            .raft
            .wait(Some(timeout))
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
            .map_err(|error| format!("snapshot did not complete: {error}"))?;
        Ok(metrics.snapshot.as_ref().map_or(0, |log_id| log_id.index))
    }

    /// Make one membership change (on the leader) and wait until it commits.
    /// A record with a control character is refused (nothing proposed).
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), String> {
        let result = match change {
            MembershipChange::AddLearner {
                node_id,
                rpc_addr,
                name,
            } => {
                let member = checked_member(rpc_addr, name)?;
                self.raft.add_learner(node_id, member, false).await
            }
            MembershipChange::AddVoter(node_id) => {
                self.change(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])))
                    .await
            }
            MembershipChange::RemoveVoter(node_id) => {
                self.change(ChangeMembers::RemoveVoters(BTreeSet::from([node_id])))
                    .await
            }
            MembershipChange::RemoveNode(node_id) => {
                self.change(ChangeMembers::RemoveNodes(BTreeSet::from([node_id])))
                    .await
            }
            MembershipChange::FinishJoint => {
                self.change(ChangeMembers::AddVoterIds(BTreeSet::new()))
                    .await
            }
            MembershipChange::SetAddress {
                node_id,
                rpc_addr,
                name,
            } => {
                let nodes = BTreeMap::from([(node_id, checked_member(rpc_addr, name)?)]);
                self.change(ChangeMembers::SetNodes(nodes)).await
            }
        };
        result.map(|_| ()).map_err(|error| error.to_string())
    }

    async fn change(
        &self,
        change: ChangeMembers<NodeId, Member>,
    ) -> Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    > {
        self.raft.change_membership(change, false).await
    }

    /// Ask the leader (this node) to hand leadership to `to`.
    pub async fn start_transfer(&self, to: NodeId) -> Result<(), String> {
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|error| error.to_string())
    }

    /// Whether this node belongs to an initialized cluster.
    pub async fn is_initialized(&self) -> Result<bool, String> {
        self.raft
            .is_initialized()
            .await
            .map_err(|error| error.to_string())
    }

    /// Initialize a new cluster whose voters are `voters` (id → gRPC address).
    pub async fn initialize(&self, voters: BTreeMap<NodeId, String>) -> Result<(), String> {
        let members: BTreeMap<NodeId, Member> = voters
            .into_iter()
            .map(|(id, rpc_addr)| (id, Member::at(rpc_addr)))
            .collect();
        for member in members.values() {
            member.check().map_err(|error| error.to_string())?;
        }
        self.raft
            .initialize(members)
            .await
            .map_err(|error| error.to_string())
    }

    /// Resolves when Raft stopped by itself (a storage failure, a panic in
    /// its core), with the reason; never while it runs.
    pub async fn failure(&self) -> String {
        let stopped = self
            .raft
            .wait(None)
            .metrics(|metrics| metrics.running_state.is_err(), "a fatal error")
            .await;
        match stopped {
            Ok(metrics) => match &metrics.running_state {
                Err(fatal) => fatal.to_string(),
                Ok(()) => "raft stopped".to_string(),
            },
            Err(error) => error.to_string(),
        }
    }

    /// Stop Raft.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {error}");
        }
    }
}

/// Wall-clock time in ms since the epoch: the leader stamps it on every
/// entry it proposes.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Confirm leadership with a quorum and return the read index.
pub(super) async fn read_index(raft: &Raft) -> Result<u64, ReadIndexError> {
    let (read_log_id, _applied) =
        tokio::time::timeout(REQUEST_TIMEOUT, raft.get_read_log_id(ReadPolicy::ReadIndex))
            .await
            .map_err(|_| {
                ReadIndexError::Unavailable(
                    "timed out confirming leadership for a linearizable read".to_string(),
                )
            })?
            .map_err(|error| match error {
                RaftError::APIError(LinearizableReadError::ForwardToLeader(_)) => {
                    ReadIndexError::NotLeader
                }
                RaftError::APIError(other) => ReadIndexError::Unavailable(format!(
                    "cannot serve a linearizable read: {other}"
                )),
                RaftError::Fatal(fatal) => {
                    ReadIndexError::Unavailable(format!("node is stopping: {fatal}"))
                }
            })?;
    Ok(read_log_id.index())
}

/// The member record of `rpc_addr` and `name`, refused when either holds
/// a control character (nothing is proposed then).
fn checked_member(rpc_addr: String, name: Option<String>) -> Result<Member, String> {
    let member = Member { rpc_addr, name };
    member.check().map_err(|error| error.to_string())?;
    Ok(member)
}

/// The plain view of `metrics`.
fn view_of(metrics: &openraft::RaftMetrics<TypeConfig>) -> ConsensusView {
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, member)| {
            (
                *id,
                MemberView {
                    rpc_addr: member.rpc_addr.clone(),
                    name: member.name.clone(),
                    voter: voters.contains(id),
                },
            )
        })
        .collect();
    let now = <openraft::TokioInstant as openraft::Instant>::now();
    let heartbeat_age = metrics
        .heartbeat
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(id, at)| {
            let age = at.map(|at| openraft::Instant::saturating_duration_since(&now, *at));
            (id, age)
        })
        .collect();
    let joint = membership.get_joint_config().len() > 1;
    let committed =
        metrics.membership_config.log_id() == metrics.committed_membership_config.log_id();
    let matched = metrics
        .replication
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(id, log_id)| (id, log_id.map(|log_id| log_id.index)))
        .collect();
    ConsensusView {
        node_id: metrics.id,
        role: match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        },
        term: metrics.current_term,
        leader: metrics.current_leader,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        committed_index: metrics
            .local_committed
            .as_ref()
            .map_or(0, |log_id| log_id.index),
        applied_index: metrics
            .last_applied
            .as_ref()
            .map_or(0, |log_id| log_id.index),
        snapshot_index: metrics.snapshot.as_ref().map(|log_id| log_id.index),
        purged_index: metrics.purged.as_ref().map_or(0, |log_id| log_id.index),
        members,
        change_in_flight: joint || !committed,
        joint_committed: joint && committed,
        matched,
        heartbeat_age,
    }
}
