//! The membership decisions, as pure code: given what gossip sees and what
//! Raft's membership is, what (if anything) the leader should change next.
//!
//! Rules (as Consul's autopilot):
//! - A node alive in gossip and not a member is added as a learner.
//! - A learner that is caught up and has stayed alive for the stabilization
//!   time is promoted to voter, up to the voter cap.
//! - The failure detector alone never removes a voter. A member dead past
//!   the grace period is removed only if the voters still alive form a
//!   quorum of the current configuration (so the change can commit and the
//!   cluster stays writable), and never below the minimum voter count.
//! - Gossip alone never removes a member as dead: the leader must also have
//!   had no Raft response from it for the grace period. Gossip is only as
//!   trustworthy as its shared key (a key holder can make a member look
//!   dead); a member that answers Raft is alive whatever gossip says.
//! - A node announcing that it is leaving is never (re-)added. A learner
//!   announcing it is removed only once it has announced it, and been
//!   silent on Raft, for the grace period (a forged `leaving` entry alone
//!   must not remove a live learner; a real `clusterhost leave` removes
//!   itself through the leader at once).
//! - With TLS, a member is recorded with the name its certificate presents
//!   (see [`crate::consensus::types::Member`]): a new node when it is
//!   added, an older record without a name when its certificate is read at
//!   the address recorded for it.
//!
//! One change at a time: Raft serializes membership changes anyway, and a
//! single step is easy to reason about.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::consensus::{MembershipChange, NodeId, quorum_size};

/// What the reconciler may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Most voters; further nodes stay learners (read replicas).
    pub voter_cap: usize,
    /// How long a learner must stay alive and caught up before promotion.
    pub stabilization: Duration,
    /// How long a member must be dead before it may be removed.
    pub dead_grace: Duration,
    /// Never remove voters below this many.
    pub min_voters: usize,
    /// A learner within this many entries of the leader counts as caught up.
    pub caught_up_lag_entries: u64,
}

/// A member of the Raft configuration as the reconciler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Voter or learner.
    pub voter: bool,
    /// gRPC address recorded in the membership.
    pub rpc_addr: String,
    /// Node name recorded in the membership.
    pub name: Option<String>,
    /// Highest log index the leader knows it replicated to the node.
    pub matched_index: Option<u64>,
    /// How long ago the node last answered the leader's Raft heartbeats or
    /// replication (`None`: not since this node leads).
    pub raft_heard_ago: Option<Duration>,
}

/// A node as gossip reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipView {
    /// gRPC address to add it with.
    pub rpc_addr: String,
    /// Alive according to the failure detector.
    pub alive: bool,
    /// Announced that it is leaving.
    pub leaving: bool,
    /// The highest protocol level its binary supports.
    pub protocol_level: u32,
    /// The node name the certificate at its address presents, when names
    /// are recorded (TLS on, and the cluster's protocol level allows it).
    pub verified_name: Option<String>,
}

/// Everything the decision looks at, observed at `now`.
#[derive(Debug, Clone)]
pub struct Observation {
    /// When this was observed.
    pub now: Instant,
    /// The leader (this node).
    pub leader_id: NodeId,
    /// The leader's last log index.
    pub last_log_index: u64,
    /// Current Raft members.
    pub members: BTreeMap<NodeId, MemberView>,
    /// Whether a membership change is still in flight (joint config or
    /// uncommitted): then nothing new is proposed.
    pub change_in_flight: bool,
    /// Whether the membership is a committed joint configuration whose
    /// second step nobody proposed: then the change must be finished.
    pub joint_committed: bool,
    /// The protocol level the cluster runs at: a node whose binary
    /// supports less is not added.
    pub protocol_level: u32,
    /// Whether names are recorded (TLS, protocol level 4): then a member
    /// recorded without a name is not moved (see `record_moved_member`).
    pub names_recorded: bool,
    /// Nodes gossip knows of (the leader included, at its own address).
    pub gossip: BTreeMap<NodeId, GossipView>,
}

/// One membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add a node as a learner.
    AddLearner {
        /// Its id.
        node_id: NodeId,
        /// Its gRPC address.
        rpc_addr: String,
        /// Its verified node name.
        name: Option<String>,
    },
    /// Make a learner a voter.
    Promote {
        /// Its id.
        node_id: NodeId,
    },
    /// Remove a dead voter.
    RemoveVoter {
        /// Its id.
        node_id: NodeId,
    },
    /// Remove a dead or departed learner.
    RemoveLearner {
        /// Its id.
        node_id: NodeId,
    },
    /// Finish a membership change left in a committed joint configuration.
    FinishChange,
    /// Record a member's new gRPC address (it restarted elsewhere), or
    /// its verified name.
    UpdateAddress {
        /// Its id.
        node_id: NodeId,
        /// Its new gRPC address.
        rpc_addr: String,
        /// Its node name.
        name: Option<String>,
    },
}

/// Why the reconciler is holding back, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// Dead voters exist but removing one would break quorum or the minimum.
    CannotRemoveDeadVoter {
        /// The dead voter.
        node_id: NodeId,
        /// Why.
        reason: String,
    },
    /// A node's binary is too old for the cluster's protocol level.
    TooOldToJoin {
        /// The node.
        node_id: NodeId,
        /// The level it supports.
        supported: u32,
        /// The level the cluster runs at.
        active: u32,
    },
}

/// Liveness history the reconciler keeps between observations: since when
/// each node has been continuously alive or dead.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    alive_since: BTreeMap<NodeId, Instant>,
    dead_since: BTreeMap<NodeId, Instant>,
    leaving_since: BTreeMap<NodeId, Instant>,
}

impl Tracker {
    /// Fold an observation into the history.
    pub fn observe(&mut self, observation: &Observation) {
        let known: BTreeSet<NodeId> = observation
            .members
            .keys()
            .chain(observation.gossip.keys())
            .copied()
            .filter(|id| *id != observation.leader_id)
            .collect();
        for node_id in known {
            let alive = observation
                .gossip
                .get(&node_id)
                .is_some_and(|gossip| gossip.alive);
            let leaving = observation
                .gossip
                .get(&node_id)
                .is_some_and(|gossip| gossip.leaving);
            if leaving {
                self.leaving_since.entry(node_id).or_insert(observation.now);
            } else {
                self.leaving_since.remove(&node_id);
            }
            if alive {
                self.dead_since.remove(&node_id);
                self.alive_since.entry(node_id).or_insert(observation.now);
            } else {
                self.alive_since.remove(&node_id);
                self.dead_since.entry(node_id).or_insert(observation.now);
            }
        }
    }

    fn alive_for(&self, node_id: NodeId, now: Instant) -> Option<Duration> {
        self.alive_since
            .get(&node_id)
            .map(|since| now.saturating_duration_since(*since))
    }

    fn dead_for(&self, node_id: NodeId, now: Instant) -> Option<Duration> {
        self.dead_since
            .get(&node_id)
            .map(|since| now.saturating_duration_since(*since))
    }

    fn leaving_for(&self, node_id: NodeId, now: Instant) -> Option<Duration> {
        self.leaving_since
            .get(&node_id)
            .map(|since| now.saturating_duration_since(*since))
    }
}

/// The next change to make, if any, and what is being held back. The rules
/// are tried in order; the first that wants a change wins.
pub fn decide(
    observation: &Observation,
    tracker: &Tracker,
    policy: &Policy,
) -> (Option<Action>, Vec<Holding>) {
    let mut holding = Vec::new();
    if observation.change_in_flight {
        // A change cut off between its two steps would otherwise hold the
        // cluster in a joint configuration, and this loop, forever.
        let finish = observation.joint_committed.then_some(Action::FinishChange);
        return (finish, holding);
    }
    let action = record_moved_member(observation)
        .or_else(|| record_member_name(observation))
        .or_else(|| remove_departed_learner(observation, tracker, policy))
        .or_else(|| remove_dead_voter(observation, tracker, policy, &mut holding))
        .or_else(|| add_new_node(observation, &mut holding))
        .or_else(|| promote_learner(observation, tracker, policy));
    (action, holding)
}

/// Whether `node_id` is alive as the leader sees it (the leader always is).
fn is_alive(observation: &Observation, node_id: NodeId) -> bool {
    node_id == observation.leader_id
        || observation
            .gossip
            .get(&node_id)
            .is_some_and(|gossip| gossip.alive)
}

/// Whether gossip says `node_id` is leaving.
fn is_leaving(observation: &Observation, node_id: NodeId) -> bool {
    observation
        .gossip
        .get(&node_id)
        .is_some_and(|gossip| gossip.leaving)
}

/// Whether `node_id` answered Raft within the grace period: then it is
/// never removed as dead, and counts as alive for quorum.
fn answers_raft(observation: &Observation, node_id: NodeId, policy: &Policy) -> bool {
    observation
        .members
        .get(&node_id)
        .and_then(|member| member.raft_heard_ago)
        .is_some_and(|ago| ago < policy.dead_grace)
}

/// Dead past the grace period both in gossip and for Raft.
fn dead_past_grace(
    observation: &Observation,
    tracker: &Tracker,
    policy: &Policy,
    node_id: NodeId,
) -> bool {
    let gossip_dead = tracker
        .dead_for(node_id, observation.now)
        .is_some_and(|dead| dead >= policy.dead_grace);
    gossip_dead && !answers_raft(observation, node_id, policy)
}

/// Leaving past the grace period in gossip, and silent for Raft as long:
/// a node that still answers Raft has not left, whatever gossip says.
fn departed_past_grace(
    observation: &Observation,
    tracker: &Tracker,
    policy: &Policy,
    node_id: NodeId,
) -> bool {
    let leaving_long = is_leaving(observation, node_id)
        && tracker
            .leaving_for(node_id, observation.now)
            .is_some_and(|leaving| leaving >= policy.dead_grace);
    leaving_long && !answers_raft(observation, node_id, policy)
}

fn voters(observation: &Observation) -> BTreeSet<NodeId> {
    observation
        .members
        .iter()
        .filter(|(_, member)| member.voter)
        .map(|(id, _)| *id)
        .collect()
}

/// A member that came back at a new address is unreachable until the
/// membership says where it is. Once names are recorded, not a member
/// recorded without one: its name is recorded only where it was read at
/// the address recorded before any move (a name read at the new address
/// would be believed for good); the operator removes and re-adds it.
fn record_moved_member(observation: &Observation) -> Option<Action> {
    observation.members.iter().find_map(|(node_id, member)| {
        if observation.names_recorded && member.name.is_none() {
            return None;
        }
        let gossip = observation.gossip.get(node_id)?;
        (gossip.alive && gossip.rpc_addr != member.rpc_addr).then(|| Action::UpdateAddress {
            node_id: *node_id,
            rpc_addr: gossip.rpc_addr.clone(),
            name: member.name.clone(),
        })
    })
}

/// A member recorded without a name (added by an older binary, or before
/// the cluster's level allowed names) gets the one its certificate presents
/// at its recorded address: from then on every replica binds it from the
/// log, not on first use.
fn record_member_name(observation: &Observation) -> Option<Action> {
    observation.members.iter().find_map(|(node_id, member)| {
        let gossip = observation.gossip.get(node_id)?;
        let name = gossip.verified_name.as_ref()?;
        let unnamed_here = member.name.is_none() && gossip.rpc_addr == member.rpc_addr;
        (gossip.alive && unnamed_here).then(|| Action::UpdateAddress {
            node_id: *node_id,
            rpc_addr: member.rpc_addr.clone(),
            name: Some(name.clone()),
        })
    })
}

/// Departed and long-dead learners cost nothing to remove.
fn remove_departed_learner(
    observation: &Observation,
    tracker: &Tracker,
    policy: &Policy,
) -> Option<Action> {
    observation
        .members
        .iter()
        .filter(|(node_id, member)| !member.voter && **node_id != observation.leader_id)
        .find(|(node_id, _)| {
            dead_past_grace(observation, tracker, policy, **node_id)
                || departed_past_grace(observation, tracker, policy, **node_id)
        })
        .map(|(node_id, _)| Action::RemoveLearner { node_id: *node_id })
}

/// Dead voters past the grace period, if quorum and the minimum allow;
/// the ones held back are noted in `holding`.
fn remove_dead_voter(
    observation: &Observation,
    tracker: &Tracker,
    policy: &Policy,
    holding: &mut Vec<Holding>,
) -> Option<Action> {
    let voters = voters(observation);
    let alive_voters = voters
        .iter()
        .filter(|id| is_alive(observation, **id) || answers_raft(observation, **id, policy))
        .count();
    let quorum = quorum_size(voters.len());
    for node_id in &voters {
        if *node_id == observation.leader_id {
            continue;
        }
        if !dead_past_grace(observation, tracker, policy, *node_id) {
            continue;
        }
        if alive_voters < quorum {
            holding.push(Holding::CannotRemoveDeadVoter {
                node_id: *node_id,
                reason: format!(
                    "only {alive_voters} of {} voters are alive; a change needs {quorum}",
                    voters.len()
                ),
            });
            continue;
        }
        if voters.len() <= policy.min_voters {
            holding.push(Holding::CannotRemoveDeadVoter {
                node_id: *node_id,
                reason: format!("{} voters is the configured minimum", policy.min_voters),
            });
            continue;
        }
        return Some(Action::RemoveVoter { node_id: *node_id });
    }
    None
}

/// New live nodes become learners (never one that is leaving).
fn add_new_node(observation: &Observation, holding: &mut Vec<Holding>) -> Option<Action> {
    let candidates = observation.gossip.iter().filter(|(node_id, gossip)| {
        gossip.alive && !gossip.leaving && !observation.members.contains_key(node_id)
    });
    for (node_id, gossip) in candidates {
        if gossip.protocol_level < observation.protocol_level {
            holding.push(Holding::TooOldToJoin {
                node_id: *node_id,
                supported: gossip.protocol_level,
                active: observation.protocol_level,
            });
            continue;
        }
        return Some(Action::AddLearner {
            node_id: *node_id,
            rpc_addr: gossip.rpc_addr.clone(),
            name: gossip.verified_name.clone(),
        });
    }
    None
}

/// Healthy, caught-up learners become voters, up to the cap.
fn promote_learner(
    observation: &Observation,
    tracker: &Tracker,
    policy: &Policy,
) -> Option<Action> {
    if voters(observation).len() >= policy.voter_cap {
        return None;
    }
    observation
        .members
        .iter()
        .filter(|(_, member)| !member.voter)
        .find(|(node_id, member)| {
            let stable = tracker
                .alive_for(**node_id, observation.now)
                .is_some_and(|alive| alive >= policy.stabilization);
            let caught_up = member.matched_index.is_some_and(|matched| {
                matched + policy.caught_up_lag_entries >= observation.last_log_index
            });
            stable && caught_up && !is_leaving(observation, **node_id)
        })
        .map(|(node_id, _)| Action::Promote { node_id: *node_id })
}

/// The Raft membership change that carries out `action`.
pub fn membership_change(action: &Action) -> MembershipChange {
    match action {
        Action::AddLearner {
            node_id,
            rpc_addr,
            name,
        } => MembershipChange::AddLearner {
            node_id: *node_id,
            rpc_addr: rpc_addr.clone(),
            name: name.clone(),
        },
        Action::Promote { node_id } => MembershipChange::AddVoter(*node_id),
        Action::RemoveVoter { node_id } => MembershipChange::RemoveVoter(*node_id),
        Action::RemoveLearner { node_id } => MembershipChange::RemoveNode(*node_id),
        Action::FinishChange => MembershipChange::FinishJoint,
        Action::UpdateAddress {
            node_id,
            rpc_addr,
            name,
        } => MembershipChange::SetAddress {
            node_id: *node_id,
            rpc_addr: rpc_addr.clone(),
            name: name.clone(),
        },
    }
}

#[cfg(test)]
mod tests;
