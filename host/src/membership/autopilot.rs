//! The membership loop every node runs: announce itself over gossip, and,
//! on the leader, turn gossip into Raft membership changes (decided by
//! [`super::reconcile`]). Also forms a cluster for `--bootstrap-expect`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use openraft::ServerState;
use tokio::sync::watch;

use super::reconcile::{
    self, Action, GossipView, Holding, MemberView, Observation, Policy, Tracker,
};
use crate::consensus::current_metrics;
use crate::consensus::types::{Member, NodeId};
use crate::discovery::{Announcement, Discovery, Peer};
use crate::node::NodeContext;

/// How often the loop runs.
pub const RECONCILE_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a single membership change may take before the loop moves on.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the loop publishes for status and `members`.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Peers as gossip sees them.
    pub peers: BTreeMap<NodeId, Peer>,
    /// Changes the leader is holding back, and why.
    pub holding: Vec<String>,
}

/// Shared, latest cluster view.
#[derive(Clone, Default)]
pub struct SharedView(Arc<Mutex<ClusterView>>);

impl SharedView {
    /// A copy of the latest view.
    pub fn get(&self) -> ClusterView {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, view: ClusterView) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = view;
    }
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct AutopilotConfig {
    /// Membership policy.
    pub policy: Policy,
    /// `--bootstrap-expect`: form a cluster once this many nodes are seen.
    pub bootstrap_expect: usize,
}

/// Run the loop until `stop` changes.
pub async fn run(
    context: Arc<NodeContext>,
    discovery: Arc<Discovery>,
    view: SharedView,
    config: AutopilotConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut tracker = Tracker::default();
    let mut was_leader = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            _ = context.announce_now.notified() => {}
            _ = stop.changed() => return,
        }
        let metrics = current_metrics(&context.raft);
        let announcement = announcement(&context, &metrics, config.bootstrap_expect);
        discovery.announce(&announcement).await;
        let peers = discovery.peers().await;
        context.addresses.update(
            peers
                .values()
                .filter(|peer| peer.alive)
                .map(|peer| (peer.node_id, peer.announcement.rpc_addr.clone()))
                .collect(),
        );

        let is_leader = metrics.state == ServerState::Leader;
        if is_leader && !was_leader {
            // A new leader starts its own liveness history: grace periods
            // restart rather than trusting another node's clock.
            tracker = Tracker::default();
        }
        was_leader = is_leader;

        let mut holding = Vec::new();
        if is_leader
            && context.machine.borrow().plugin_digest.is_none()
            && let Some(plugin) = &context.pending_plugin
        {
            deploy_first_plugin(&context, plugin.clone()).await;
        }
        if is_leader {
            let observation = observe(&context, &metrics, &peers);
            tracker.observe(&observation);
            let (action, held) = reconcile::decide(&observation, &tracker, &config.policy);
            holding = held.iter().map(describe_holding).collect();
            if let Some(action) = action {
                execute(&context, &peers, action).await;
            }
        } else if !announcement.initialized && config.bootstrap_expect > 0 {
            bootstrap_expect(&context, &peers, config.bootstrap_expect).await;
        }
        view.set(ClusterView { peers, holding });
    }
}

fn announcement(
    context: &NodeContext,
    metrics: &openraft::RaftMetrics<crate::consensus::types::TypeConfig>,
    bootstrap_expect: usize,
) -> Announcement {
    let machine = context.machine.borrow().clone();
    let initialized = metrics
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_some();
    Announcement {
        rpc_addr: context.rpc_addr.clone(),
        role: crate::api::cluster_service::role_name(metrics.state).to_string(),
        ready: machine.plugin_digest.is_some() && metrics.current_leader.is_some(),
        plugin_version: machine.history.cluster_version,
        plugin_digest: machine.plugin_digest.unwrap_or_default(),
        applied_index: metrics
            .last_applied
            .as_ref()
            .map_or(0, |log_id| log_id.index),
        leaving: context.leaving.load(std::sync::atomic::Ordering::SeqCst),
        initialized,
        bootstrap_expect,
    }
}

fn observe(
    context: &NodeContext,
    metrics: &openraft::RaftMetrics<crate::consensus::types::TypeConfig>,
    peers: &BTreeMap<NodeId, Peer>,
) -> Observation {
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let matched = metrics.replication.clone().unwrap_or_default();
    let members = membership
        .nodes()
        .map(|(id, member)| {
            (
                *id,
                MemberView {
                    voter: voters.contains(id),
                    rpc_addr: member.rpc_addr.clone(),
                    matched_index: matched
                        .get(id)
                        .cloned()
                        .flatten()
                        .map(|log_id| log_id.index),
                },
            )
        })
        .collect();
    let change_in_flight = membership.get_joint_config().len() > 1
        || metrics.membership_config.log_id() != metrics.committed_membership_config.log_id();
    let mut gossip: BTreeMap<NodeId, GossipView> = peers
        .iter()
        .map(|(id, peer)| {
            (
                *id,
                GossipView {
                    rpc_addr: peer.announcement.rpc_addr.clone(),
                    alive: peer.alive,
                    leaving: peer.announcement.leaving,
                },
            )
        })
        .collect();
    // The leader is alive at its own address; recording it keeps the
    // membership's address for the leader current too.
    gossip.insert(
        context.node_id,
        GossipView {
            rpc_addr: context.rpc_addr.clone(),
            alive: true,
            leaving: false,
        },
    );
    Observation {
        now: Instant::now(),
        leader_id: context.node_id,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        members,
        change_in_flight,
        gossip,
    }
}

fn describe_holding(holding: &Holding) -> String {
    match holding {
        Holding::CannotRemoveDeadVoter { node_id, reason } => {
            format!("dead voter {node_id} is kept: {reason}")
        }
    }
}

async fn execute(context: &NodeContext, peers: &BTreeMap<NodeId, Peer>, action: Action) {
    let raft = &context.raft;
    tracing::info!(?action, "membership change");
    let result = match &action {
        Action::AddLearner { node_id, rpc_addr } => {
            let member = Member {
                rpc_addr: rpc_addr.clone(),
            };
            tokio::time::timeout(CHANGE_TIMEOUT, raft.add_learner(*node_id, member, false))
                .await
                .map(|result| result.map(|_| ()).map_err(|error| error.to_string()))
        }
        Action::Promote { node_id } => tokio::time::timeout(
            CHANGE_TIMEOUT,
            raft.change_membership(
                ChangeMembers::AddVoterIds(BTreeSet::from([*node_id])),
                false,
            ),
        )
        .await
        .map(|result| result.map(|_| ()).map_err(|error| error.to_string())),
        Action::RemoveVoter { node_id } => tokio::time::timeout(
            CHANGE_TIMEOUT,
            raft.change_membership(
                ChangeMembers::RemoveVoters(BTreeSet::from([*node_id])),
                false,
            ),
        )
        .await
        .map(|result| result.map(|_| ()).map_err(|error| error.to_string())),
        Action::UpdateAddress { node_id, rpc_addr } => {
            let nodes = BTreeMap::from([(
                *node_id,
                Member {
                    rpc_addr: rpc_addr.clone(),
                },
            )]);
            tokio::time::timeout(
                CHANGE_TIMEOUT,
                raft.change_membership(ChangeMembers::SetNodes(nodes), false),
            )
            .await
            .map(|result| result.map(|_| ()).map_err(|error| error.to_string()))
        }
        Action::RemoveLearner { node_id } => tokio::time::timeout(
            CHANGE_TIMEOUT,
            raft.change_membership(
                ChangeMembers::RemoveNodes(BTreeSet::from([*node_id])),
                false,
            ),
        )
        .await
        .map(|result| result.map(|_| ()).map_err(|error| error.to_string())),
    };
    match result {
        Ok(Ok(())) => tracing::info!(?action, "membership change committed"),
        Ok(Err(error)) => tracing::warn!(
            ?action,
            known_peers = peers.len(),
            "membership change failed: {error}"
        ),
        Err(_) => tracing::warn!(?action, "membership change timed out"),
    }
}

/// `--bootstrap-expect N`: once N uninitialized expecting nodes (this one
/// included) are alive and none of them belongs to a cluster, the one with
/// the smallest id initializes Raft with all N as voters. Exactly one node
/// initializes, so there are never two clusters.
async fn bootstrap_expect(context: &NodeContext, peers: &BTreeMap<NodeId, Peer>, expect: usize) {
    if peers
        .values()
        .any(|peer| peer.alive && peer.announcement.initialized)
    {
        // A cluster exists: its leader will add this node.
        return;
    }
    let mut candidates: BTreeMap<NodeId, String> = peers
        .values()
        .filter(|peer| peer.alive && peer.announcement.bootstrap_expect > 0)
        .map(|peer| (peer.node_id, peer.announcement.rpc_addr.clone()))
        .collect();
    candidates.insert(context.node_id, context.rpc_addr.clone());
    if candidates.len() < expect {
        return;
    }
    let chosen: BTreeMap<NodeId, Member> = candidates
        .into_iter()
        .take(expect)
        .map(|(id, rpc_addr)| (id, Member { rpc_addr }))
        .collect();
    if chosen.keys().next() != Some(&context.node_id) {
        return;
    }
    match context.raft.is_initialized().await {
        Ok(false) => {}
        _ => return,
    }
    tracing::info!(voters = ?chosen.keys().collect::<Vec<_>>(), "bootstrap-expect reached: initializing the cluster");
    if let Err(error) = context.raft.initialize(chosen).await {
        tracing::warn!("bootstrap-expect initialize: {error}");
    }
}

/// A cluster formed by `--bootstrap-expect` has no plugin until its first
/// leader deploys the one it was started with.
async fn deploy_first_plugin(context: &NodeContext, plugin: Vec<u8>) {
    match crate::deploy::propose(&context.raft, plugin).await {
        Ok(receipt) => {
            tracing::info!(digest = %receipt.digest, "deployed the cluster's first plugin")
        }
        Err(error) => tracing::warn!("cannot deploy the first plugin: {error}"),
    }
}
