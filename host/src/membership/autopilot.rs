//! The membership loop every node runs: announce itself over gossip, and,
//! on the leader, turn gossip into Raft membership changes (decided by
//! [`super::reconcile`]). Also forms a cluster for `--bootstrap-expect`
//! (decided by [`super::bootstrap`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::watch;

use super::bootstrap;
use super::divergence::{self, Checkpoints};
use super::local::LocalMember;
use super::reconcile::{
    self, GossipView, Holding, MemberView, Observation, Policy, Tracker, membership_change,
};
use super::unknown::{Ignored, UnknownPeers};
use super::verified::IdentityCheck;
use crate::consensus::settings::{
    PROTOCOL_LEVEL_LEGACY, PROTOCOL_LEVEL_NAMES, PROTOCOL_LEVEL_SUPPORTED,
};
use crate::consensus::settings::{Setting, SettingsChange};
use crate::consensus::trusted_signers::{self, TrustedSigners};
use crate::consensus::{Consensus, ConsensusView, MachineStatus, NodeId, Role};
use crate::discovery::{Announcement, Discovery, Peer};
use crate::limits::{CHECKPOINTS_GOSSIPED, MEMBERSHIP_CHANGE_TIMEOUT, RECONCILE_INTERVAL};

/// What the loop publishes for status and `members`.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Peers as gossip sees them (without the members outside Raft that
    /// are left out: see [`super::unknown`]).
    pub peers: BTreeMap<NodeId, Peer>,
    /// Gossip members outside Raft left out: beyond the cap, or expired.
    pub ignored_unknown: usize,
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
    /// The plugin the first leader of a `--bootstrap-expect` cluster deploys.
    pub first_plugin: Option<Vec<u8>>,
    /// The settings (and plugin signers) the first leader of a
    /// `--bootstrap-expect` cluster proposes before its plugin.
    pub first_settings: SettingsChange,
    /// Cluster settings this node's flags name explicitly: (flag, setting,
    /// value), compared with the cluster's once it has them.
    pub flagged_settings: Vec<(&'static str, Setting, u64)>,
    /// `--plugin-signers`, compared with the cluster's `plugin_signers`.
    pub flag_signers: Option<TrustedSigners>,
}

/// What the loop works with.
pub struct Autopilot {
    /// This node.
    pub local: Arc<LocalMember>,
    /// Raft.
    pub consensus: Consensus,
    /// Gossip.
    pub discovery: Arc<Discovery>,
    /// What the state machine publishes.
    pub machine: watch::Receiver<MachineStatus>,
    /// Where the loop publishes what it sees.
    pub view: SharedView,
    /// Its settings.
    pub config: AutopilotConfig,
    /// Where the node names verified for members are kept.
    pub bindings_file: std::path::PathBuf,
}

/// What the loop carries from one round to the next.
struct Rounds {
    /// Liveness history of the other members, kept while this node leads.
    tracker: Tracker,
    was_leader: bool,
    /// Whether this node may stand for leader (not while its replica is
    /// known to differ from the others).
    electable: bool,
    /// Whether the flags that differ from the cluster's settings were
    /// reported.
    warned: bool,
    /// The gossip members outside Raft, bounded.
    unknown: UnknownPeers,
    /// How many of them the last round left out, to log changes only.
    ignored_unknown: usize,
    /// Which gossiped addresses proved the node they claim (with TLS).
    identity: IdentityCheck,
    /// Whether `--bootstrap-expect` is waiting for the unknown bound to
    /// leave nobody out (logged once per wait).
    bootstrap_held: bool,
}

impl Autopilot {
    /// Run the loop until the node is asked to stop.
    pub async fn run(self) {
        let mut rounds = Rounds {
            tracker: Tracker::default(),
            was_leader: false,
            electable: true,
            warned: false,
            unknown: UnknownPeers::default(),
            ignored_unknown: 0,
            bootstrap_held: false,
            identity: IdentityCheck::new(
                self.local.node_id,
                self.consensus.peer_tls().cloned().map(std::sync::Arc::new),
                self.consensus.metrics().clone(),
            )
            .with_bindings_file(self.bindings_file.clone())
            .publishing_to(self.consensus.vouched()),
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
                _ = self.local.announce_requested() => {}
                _ = self.local.stop_requested() => return,
            }
            self.round(&mut rounds).await;
        }
    }

    /// One round: announce this node, learn the peers' addresses, then lead
    /// membership (as leader) or help form the cluster (before it exists).
    async fn round(&self, rounds: &mut Rounds) {
        let consensus = self.consensus.view();
        let machine = self.machine.borrow().clone();
        let (peers, ignored) = self
            .exchange_announcements(
                &consensus,
                &machine,
                &mut rounds.identity,
                &mut rounds.unknown,
            )
            .await;
        if ignored.len() != rounds.ignored_unknown {
            rounds.ignored_unknown = ignored.len();
            tracing::warn!(
                over_cap = ignored.over_cap.len(),
                expired = ignored.expired.len(),
                "gossip members outside the cluster left out: more than {} at once, or silent too long",
                crate::limits::GOSSIP_UNKNOWN_MEMBERS_MAX
            );
        }
        let is_leader = consensus.role == Role::Leader;
        if is_leader && !rounds.was_leader {
            // A new leader starts its own liveness history: grace periods
            // restart rather than trusting another node's clock.
            rounds.tracker = Tracker::default();
        }
        rounds.was_leader = is_leader;
        rounds.electable = self
            .keep_corrupt_replica_from_leading(&machine, rounds.electable)
            .await;
        if !rounds.warned && machine.plugin_digest.is_some() {
            // Once a plugin runs, this node has applied the cluster's
            // settings (they come before the first deploy).
            rounds.warned = true;
            for warning in machine.settings.warnings_for(&self.config.flagged_settings) {
                tracing::warn!("{warning}");
            }
            let flag = self.config.flag_signers.as_ref();
            if let Some(warning) =
                trusted_signers::flag_warning(&machine.settings, &machine.signers, flag)
            {
                tracing::warn!("{warning}");
            }
        }
        let mut holding = Vec::new();
        if is_leader {
            let names = self.names_to_record(&machine, &rounds.identity, &peers);
            let seen = Seen {
                peers: &peers,
                names: &names,
            };
            holding = self
                .lead(&consensus, &machine, &seen, &mut rounds.tracker)
                .await;
        } else if !consensus.initialized() && self.config.bootstrap_expect > 0 {
            let left_out = ignored.over_cap.len();
            rounds.bootstrap_held = self
                .bootstrap_expect(&peers, left_out, rounds.bootstrap_held)
                .await;
        }
        self.view.set(ClusterView {
            peers,
            ignored_unknown: ignored.len(),
            holding,
        });
    }

    /// Announce this node's state by gossip and hand the live peers'
    /// addresses to Raft: only entries whose claims hold (see
    /// [`IdentityCheck::select`]), without the members outside Raft that
    /// `unknown` leaves out; returns those peers and the ones left out.
    async fn exchange_announcements(
        &self,
        consensus: &ConsensusView,
        machine: &MachineStatus,
        identity: &mut IdentityCheck,
        unknown: &mut UnknownPeers,
    ) -> (BTreeMap<NodeId, Peer>, Ignored) {
        let mut announcement = announcement(
            &self.local,
            consensus,
            machine,
            self.config.bootstrap_expect,
        );
        announcement.node_name = identity.own_name().unwrap_or_default().to_string();
        self.discovery.announce(&announcement).await;
        let candidates = self.discovery.candidates().await;
        identity.set_names_recorded(machine.settings.protocol_level >= PROTOCOL_LEVEL_NAMES);
        let mut peers = identity.select(candidates, &consensus.members);
        let ignored = leave_out_unknown(&mut peers, consensus, unknown, Instant::now());
        self.consensus.addresses().update(
            peers
                .values()
                .filter(|peer| peer.alive)
                .map(|peer| (peer.node_id, peer.announcement.rpc_addr.clone()))
                .collect(),
        );
        (peers, ignored)
    }

    /// The verified names of `peers` and of this node, to record in the
    /// membership: none below [`PROTOCOL_LEVEL_NAMES`] (a binary that would
    /// misread them may still be a member, see `Member`).
    fn names_to_record(
        &self,
        machine: &MachineStatus,
        identity: &IdentityCheck,
        peers: &BTreeMap<NodeId, Peer>,
    ) -> BTreeMap<NodeId, String> {
        if machine.settings.protocol_level < PROTOCOL_LEVEL_NAMES {
            return BTreeMap::new();
        }
        let mut names = identity.verified_names(peers);
        if let Some(own) = identity.own_name() {
            names.insert(self.local.node_id, own.to_string());
        }
        names
    }

    /// The leader's part of a round: deploy the first plugin, compare the
    /// replicas, and make at most one membership change. Returns why changes
    /// are held back.
    async fn lead(
        &self,
        consensus: &ConsensusView,
        machine: &MachineStatus,
        seen: &Seen<'_>,
        tracker: &mut Tracker,
    ) -> Vec<String> {
        let peers = seen.peers;
        if machine.plugin_digest.is_none() && machine.history.records.is_empty() {
            // Only while no deploy was ever attempted: a first deploy
            // that failed on every replica is not retried forever.
            self.deploy_first_plugin().await;
        }
        if machine.settings.protocol_level > PROTOCOL_LEVEL_LEGACY {
            self.compare_replicas(consensus, machine, peers).await;
        }
        let observation = observe(&self.local, consensus, machine, seen);
        tracker.observe(&observation);
        let (action, held) = reconcile::decide(&observation, tracker, &self.config.policy);
        if let Some(action) = action {
            self.change(peers, membership_change(&action)).await;
        }
        held.iter().map(describe_holding).collect()
    }

    async fn change(
        &self,
        peers: &BTreeMap<NodeId, Peer>,
        change: crate::consensus::MembershipChange,
    ) {
        tracing::info!(?change, "membership change");
        let action = action_name(&change);
        let outcome = match tokio::time::timeout(
            MEMBERSHIP_CHANGE_TIMEOUT,
            self.consensus.change_membership(change.clone()),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::info!(?change, "membership change committed");
                "ok"
            }
            Ok(Err(error)) => {
                tracing::warn!(
                    ?change,
                    known_peers = peers.len(),
                    "membership change failed: {error}"
                );
                "failed"
            }
            Err(_) => {
                tracing::warn!(?change, "membership change timed out");
                "timed_out"
            }
        };
        self.consensus.metrics().autopilot_action(action, outcome);
    }

    /// Form the cluster if this node is the one to. Returns whether the
    /// bound on unknown members holds it back (`held`: it did last round,
    /// so it was logged).
    async fn bootstrap_expect(
        &self,
        peers: &BTreeMap<NodeId, Peer>,
        left_out: usize,
        held: bool,
    ) -> bool {
        if left_out > 0 && !held {
            tracing::warn!(
                left_out,
                "bootstrap-expect waits: {left_out} gossip members are left out (more than {} outside a cluster), \
                 so the nodes may not agree on who forms it",
                crate::limits::GOSSIP_UNKNOWN_MEMBERS_MAX
            );
        }
        let Some(voters) = bootstrap::initial_voters(
            self.local.node_id,
            &self.local.rpc_addr,
            peers,
            self.config.bootstrap_expect,
            left_out,
        ) else {
            return left_out > 0;
        };
        if self.consensus.is_initialized().await != Ok(false) {
            return false;
        }
        tracing::info!(voters = ?voters.keys().collect::<Vec<_>>(), "bootstrap-expect reached: initializing the cluster");
        if let Err(error) = self.consensus.initialize(voters).await {
            tracing::warn!("bootstrap-expect initialize: {error}");
        }
        false
    }

    /// A corrupt replica must never lead: stop it campaigning (handing over
    /// leadership if it has it) while its alarm stands. Returns whether it
    /// may campaign now.
    async fn keep_corrupt_replica_from_leading(
        &self,
        machine: &MachineStatus,
        electable: bool,
    ) -> bool {
        let corrupt = machine.alarms.corrupt_since(self.local.node_id);
        if corrupt.is_some() == electable {
            self.consensus.set_electable(corrupt.is_none());
            match corrupt {
                Some(index) => tracing::error!(
                    index,
                    "this replica differs from the majority since index {index}: it serves nothing and will not lead until repaired"
                ),
                None => tracing::info!("this replica agrees with the majority again"),
            }
        }
        // Leadership can still reach it (a transfer does not ask whether a
        // node may campaign): hand it on every time.
        if corrupt.is_some() && self.consensus.view().role == Role::Leader {
            super::operations::step_down(&self.consensus).await;
        }
        corrupt.is_none()
    }

    /// On the leader: compare everyone's applied-digest checkpoints and
    /// raise (or clear) alarms through the log.
    async fn compare_replicas(
        &self,
        consensus: &ConsensusView,
        machine: &MachineStatus,
        peers: &BTreeMap<NodeId, Peer>,
    ) {
        let mut reports: BTreeMap<NodeId, Checkpoints> = peers
            .values()
            .filter(|peer| peer.alive && consensus.members.contains_key(&peer.node_id))
            .map(|peer| {
                (
                    peer.node_id,
                    divergence::decode_checkpoints(&peer.announcement.checkpoints),
                )
            })
            .collect();
        reports.insert(self.local.node_id, machine.checkpoints.clone());
        let verdict = divergence::compare(&consensus.voters(), self.local.node_id, &reports);
        for alarm in
            divergence::alarms_to_raise(&verdict, &machine.alarms, self.local.node_id, &reports)
        {
            tracing::warn!(?alarm, "replicas disagree; raising an alarm");
            if let Err(error) = self.consensus.propose_alarm(alarm).await {
                tracing::warn!(?alarm, "cannot raise the alarm: {error}");
            }
        }
    }

    /// A cluster formed by `--bootstrap-expect` has no plugin until its
    /// first leader deploys the one it was started with (after the settings
    /// the cluster starts with).
    async fn deploy_first_plugin(&self) {
        let Some(plugin) = &self.config.first_plugin else {
            return;
        };
        let initial = self.config.first_settings.clone();
        match self.consensus.propose_settings(initial).await {
            Ok((_, Ok(_))) => {}
            // Another leader set them first: the cluster keeps those.
            Ok((_, Err(reason))) => tracing::info!("{reason}"),
            Err(error) => {
                tracing::warn!("cannot set the first settings: {error}");
                return;
            }
        }
        match self.consensus.propose_deploy(plugin.clone()).await {
            Ok(receipt) => {
                tracing::info!(digest = %receipt.digest, "deployed the cluster's first plugin")
            }
            Err(error) => tracing::warn!("cannot deploy the first plugin: {error}"),
        }
    }
}

/// Remove from `peers` the members outside the Raft membership that
/// `unknown` does not consider now; returns them.
fn leave_out_unknown(
    peers: &mut BTreeMap<NodeId, Peer>,
    consensus: &ConsensusView,
    unknown: &mut UnknownPeers,
    now: Instant,
) -> Ignored {
    let outside: BTreeMap<NodeId, bool> = peers
        .values()
        .filter(|peer| !consensus.members.contains_key(&peer.node_id))
        .map(|peer| (peer.node_id, peer.alive))
        .collect();
    let ignored = unknown.observe(now, &outside);
    peers.retain(|id, _| !ignored.contains(id));
    ignored
}

fn announcement(
    local: &LocalMember,
    consensus: &ConsensusView,
    machine: &MachineStatus,
    bootstrap_expect: usize,
) -> Announcement {
    Announcement {
        rpc_addr: local.rpc_addr.clone(),
        role: consensus.role.name().to_string(),
        ready: machine.plugin_digest.is_some() && consensus.leader.is_some(),
        plugin_version: machine.history.cluster_version,
        plugin_digest: machine.plugin_digest.clone().unwrap_or_default(),
        applied_index: consensus.applied_index,
        leaving: local.is_leaving(),
        initialized: consensus.initialized(),
        bootstrap_expect,
        protocol_level: PROTOCOL_LEVEL_SUPPORTED,
        checkpoints: divergence::encode_checkpoints(&machine.checkpoints, CHECKPOINTS_GOSSIPED),
        node_name: String::new(),
    }
}

/// What gossip showed the leader this round.
struct Seen<'a> {
    /// The peers whose entries were believed.
    peers: &'a BTreeMap<NodeId, Peer>,
    /// The names their certificates presented, to record (empty below
    /// [`PROTOCOL_LEVEL_NAMES`]).
    names: &'a BTreeMap<NodeId, String>,
}

fn observe(
    local: &LocalMember,
    consensus: &ConsensusView,
    machine: &MachineStatus,
    seen: &Seen<'_>,
) -> Observation {
    let members = consensus
        .members
        .iter()
        .map(|(id, member)| {
            (
                *id,
                MemberView {
                    voter: member.voter,
                    rpc_addr: member.rpc_addr.clone(),
                    name: member.name.clone(),
                    matched_index: consensus.matched.get(id).copied().flatten(),
                    raft_heard_ago: consensus.heartbeat_age.get(id).copied().flatten(),
                },
            )
        })
        .collect();
    let mut gossip: BTreeMap<NodeId, GossipView> = seen
        .peers
        .iter()
        .map(|(id, peer)| {
            (
                *id,
                GossipView {
                    rpc_addr: peer.announcement.rpc_addr.clone(),
                    alive: peer.alive,
                    leaving: peer.announcement.leaving,
                    protocol_level: peer.announcement.protocol_level,
                    verified_name: seen.names.get(id).cloned(),
                },
            )
        })
        .collect();
    // The leader is alive at its own address; recording it keeps the
    // membership's address for the leader current too.
    gossip.insert(
        local.node_id,
        GossipView {
            rpc_addr: local.rpc_addr.clone(),
            alive: true,
            leaving: false,
            protocol_level: PROTOCOL_LEVEL_SUPPORTED,
            verified_name: seen.names.get(&local.node_id).cloned(),
        },
    );
    Observation {
        now: Instant::now(),
        leader_id: local.node_id,
        last_log_index: consensus.last_log_index,
        members,
        change_in_flight: consensus.change_in_flight,
        joint_committed: consensus.joint_committed,
        protocol_level: machine.settings.protocol_level,
        // The leader's own name is there only with TLS at the names level.
        names_recorded: seen.names.contains_key(&local.node_id),
        gossip,
    }
}

fn describe_holding(holding: &Holding) -> String {
    match holding {
        Holding::CannotRemoveDeadVoter { node_id, reason } => {
            format!("dead voter {node_id} is kept: {reason}")
        }
        Holding::TooOldToJoin {
            node_id,
            supported,
            active,
        } => format!(
            "node {node_id} is not added: its clusterhost supports protocol level {supported}, \
             the cluster runs at {active}; upgrade it"
        ),
    }
}

/// The `action` label of a membership change.
fn action_name(change: &crate::consensus::MembershipChange) -> &'static str {
    use crate::consensus::MembershipChange;
    match change {
        MembershipChange::AddLearner { .. } => "add_learner",
        MembershipChange::AddVoter(_) => "add_voter",
        MembershipChange::RemoveVoter(_) => "remove_voter",
        MembershipChange::RemoveNode(_) => "remove_node",
        MembershipChange::SetAddress { .. } => "set_address",
        MembershipChange::FinishJoint => "finish_joint",
    }
}
