//! What `status`, `members` and `health` report, as pure functions of what
//! this node knows: Raft's state ([`ConsensusView`]), gossip's
//! ([`ClusterView`]) and the state machine's ([`MachineStatus`]).

use std::collections::BTreeSet;

use clusterhost_client::proto;

use crate::consensus::{ConsensusView, MachineStatus, NodeId, quorum_size};
use crate::limits::HEALTH_CONTACT_WINDOW;
use crate::membership::autopilot::ClusterView;

/// This node, as reports name it.
#[derive(Debug, Clone)]
pub struct SelfInfo {
    /// Its id.
    pub node_id: NodeId,
    /// Its gRPC address.
    pub rpc_addr: String,
    /// Its gossip address.
    pub gossip_addr: String,
    /// Whether it is leaving the cluster.
    pub leaving: bool,
}

/// Whether the cluster can take writes, as this node sees it: "ok", or why
/// not.
pub fn health(consensus: &ConsensusView, cluster: &ClusterView) -> String {
    let voters = consensus.voters();
    if voters.is_empty() {
        return "not initialized: waiting to be added to a cluster".to_string();
    }
    // Raft's own evidence counts as well as gossip's, which lags on a node
    // that just started: the leader this node follows, and (on the leader)
    // voters that acknowledged a heartbeat recently.
    let heard_recently = |id: &NodeId| {
        consensus
            .heartbeat_age
            .get(id)
            .copied()
            .flatten()
            .is_some_and(|age| age < HEALTH_CONTACT_WINDOW)
    };
    let alive = voters
        .iter()
        .filter(|id| {
            **id == consensus.node_id
                || consensus.leader == Some(**id)
                || heard_recently(id)
                || cluster.peers.get(id).is_some_and(|peer| peer.alive)
        })
        .count();
    let quorum = quorum_size(voters.len());
    // A leader that lost its quorum still calls itself leader: check the
    // quorum first.
    if alive < quorum {
        return format!(
            "unavailable: no quorum ({alive} of {} voters alive, {quorum} needed)",
            voters.len()
        );
    }
    if consensus.leader.is_none() {
        return "unavailable: electing a leader".to_string();
    }
    if let Some(holding) = cluster.holding.first() {
        return format!("ok ({holding})");
    }
    "ok".to_string()
}

/// This node's status.
pub fn status(
    me: &SelfInfo,
    consensus: &ConsensusView,
    cluster: &ClusterView,
    machine: &MachineStatus,
) -> proto::StatusResponse {
    let members = consensus
        .members
        .iter()
        .map(|(id, member)| proto::Member {
            id: *id,
            rpc_addr: member.rpc_addr.clone(),
            suffrage: if member.voter { "voter" } else { "learner" }.to_string(),
        })
        .collect();
    let leader_addr = consensus
        .leader
        .and_then(|leader| consensus.member_addr(leader))
        .unwrap_or_default()
        .to_string();
    proto::StatusResponse {
        node_id: me.node_id,
        rpc_addr: me.rpc_addr.clone(),
        role: consensus.displayed_role().name().to_string(),
        term: consensus.term,
        leader_id: consensus.leader,
        leader_addr,
        last_log_index: consensus.last_log_index,
        commit_index: consensus.committed_index,
        applied_index: consensus.applied_index,
        snapshot_index: consensus.snapshot_index,
        snapshot_size_bytes: machine.snapshot_size_bytes.unwrap_or(0),
        purged_index: consensus.purged_index,
        plugin_digest: machine.plugin_digest.clone().unwrap_or_default(),
        plugin_size_bytes: machine.plugin_size_bytes as u64,
        members,
        version: env!("CARGO_PKG_VERSION").to_string(),
        health: health(consensus, cluster),
        cluster_version: machine.history.cluster_version,
        applied_digest: machine.applied_digest.0.clone(),
        applied_digest_index: machine.applied_digest.1,
        corrupt_since: machine.alarms.corrupt_since(me.node_id),
        sessions_open: machine.sessions_open as u64,
        membership_changing: consensus.change_in_flight,
    }
}

/// Every node known from Raft membership and gossip, this one included.
pub fn members(
    me: &SelfInfo,
    consensus: &ConsensusView,
    cluster: &ClusterView,
    machine: &MachineStatus,
) -> proto::MembersResponse {
    let ids: BTreeSet<NodeId> = consensus
        .members
        .keys()
        .chain(cluster.peers.keys())
        .copied()
        .chain([me.node_id])
        .collect();
    let members = ids
        .into_iter()
        .map(|id| member(me, consensus, cluster, machine, id))
        .collect();
    proto::MembersResponse {
        members,
        holding: cluster.holding.clone(),
    }
}

fn member(
    me: &SelfInfo,
    consensus: &ConsensusView,
    cluster: &ClusterView,
    machine: &MachineStatus,
    id: NodeId,
) -> proto::MemberInfo {
    let member = consensus.members.get(&id);
    let peer = cluster.peers.get(&id);
    let is_self = id == me.node_id;
    let raft_role = match member {
        _ if consensus.leader == Some(id) => "leader",
        Some(member) if member.voter => "follower",
        Some(_) => "learner",
        None => "none",
    };
    let liveness = match (is_self, peer) {
        (true, _) => "alive",
        (false, Some(peer)) if peer.alive => "alive",
        (false, Some(_)) => "dead",
        (false, None) => "unknown",
    };
    let (gossip_addr, applied_index, plugin_digest, leaving) = if is_self {
        (
            me.gossip_addr.clone(),
            consensus.applied_index,
            machine.plugin_digest.clone().unwrap_or_default(),
            me.leaving,
        )
    } else {
        (
            peer.map(|peer| peer.gossip_addr.to_string())
                .unwrap_or_default(),
            peer.map_or(0, |peer| peer.announcement.applied_index),
            peer.map(|peer| peer.announcement.plugin_digest.clone())
                .unwrap_or_default(),
            peer.is_some_and(|peer| peer.announcement.leaving),
        )
    };
    proto::MemberInfo {
        id,
        rpc_addr: member
            .map(|member| member.rpc_addr.clone())
            .or_else(|| peer.map(|peer| peer.announcement.rpc_addr.clone()))
            .unwrap_or_default(),
        gossip_addr,
        raft_role: raft_role.to_string(),
        liveness: liveness.to_string(),
        last_contact_ms: consensus
            .heartbeat_age
            .get(&id)
            .copied()
            .flatten()
            .map(|age| age.as_millis() as u64),
        applied_index,
        plugin_digest,
        leaving,
        corrupt_since: machine.alarms.corrupt_since(id),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::consensus::Role;
    use crate::consensus::view::MemberView;
    use crate::discovery::{Announcement, Peer};

    fn consensus(node_id: NodeId, leader: Option<NodeId>, voters: &[NodeId]) -> ConsensusView {
        ConsensusView {
            node_id,
            role: if leader == Some(node_id) {
                Role::Leader
            } else {
                Role::Follower
            },
            term: 3,
            leader,
            last_log_index: 10,
            committed_index: 10,
            applied_index: 9,
            snapshot_index: None,
            purged_index: 0,
            members: voters
                .iter()
                .map(|id| {
                    (
                        *id,
                        MemberView {
                            rpc_addr: format!("n{id}:1"),
                            name: None,
                            voter: true,
                        },
                    )
                })
                .collect(),
            change_in_flight: false,
            joint_committed: false,
            matched: BTreeMap::new(),
            heartbeat_age: BTreeMap::new(),
        }
    }

    fn gossip(peers: &[(NodeId, bool)]) -> ClusterView {
        ClusterView {
            peers: peers
                .iter()
                .map(|(id, alive)| {
                    (
                        *id,
                        Peer {
                            node_id: *id,
                            gossip_addr: "127.0.0.1:9".parse().expect("address"),
                            alive: *alive,
                            generation: 1,
                            announcement: Announcement {
                                rpc_addr: format!("n{id}:1"),
                                applied_index: 7,
                                ..Announcement::default()
                            },
                            version: String::new(),
                        },
                    )
                })
                .collect(),
            ignored_unknown: 0,
            holding: Vec::new(),
        }
    }

    fn me(node_id: NodeId) -> SelfInfo {
        SelfInfo {
            node_id,
            rpc_addr: format!("n{node_id}:1"),
            gossip_addr: "127.0.0.1:8".to_string(),
            leaving: false,
        }
    }

    #[test]
    fn health_names_a_missing_quorum_before_anything_else() {
        let view = consensus(1, Some(1), &[1, 2, 3]);
        assert_eq!(
            health(&view, &gossip(&[(2, false), (3, false)])),
            "unavailable: no quorum (1 of 3 voters alive, 2 needed)"
        );
        assert_eq!(health(&view, &gossip(&[(2, true), (3, false)])), "ok");
    }

    #[test]
    fn raft_evidence_counts_when_gossip_lags() {
        let mut view = consensus(1, Some(1), &[1, 2, 3]);
        view.heartbeat_age
            .insert(2, Some(Duration::from_millis(100)));
        assert_eq!(
            health(&view, &gossip(&[])),
            "ok",
            "node 2 acked a heartbeat"
        );
        let follower = consensus(2, Some(1), &[1, 2, 3]);
        assert_eq!(
            health(&follower, &gossip(&[])),
            "ok",
            "the followed leader is alive"
        );
        let stale = consensus(2, None, &[1, 2, 3]);
        assert_eq!(
            health(&stale, &gossip(&[(1, true)])),
            "unavailable: electing a leader"
        );
        let empty = consensus(2, None, &[]);
        assert!(health(&empty, &gossip(&[])).starts_with("not initialized"));
    }

    #[test]
    fn holding_changes_show_in_health() {
        let view = consensus(1, Some(1), &[1, 2, 3]);
        let mut cluster = gossip(&[(2, true), (3, true)]);
        cluster.holding.push("dead voter 3 is kept".to_string());
        assert_eq!(health(&view, &cluster), "ok (dead voter 3 is kept)");
    }

    #[test]
    fn status_shows_a_non_voting_follower_as_learner() {
        let mut view = consensus(4, Some(1), &[1, 2, 3]);
        view.members.insert(
            4,
            MemberView {
                rpc_addr: "n4:1".to_string(),
                name: None,
                voter: false,
            },
        );
        let status = status(&me(4), &view, &gossip(&[]), &MachineStatus::default());
        assert_eq!(status.role, "learner");
        assert_eq!(status.leader_addr, "n1:1");
        assert_eq!(status.members.len(), 4);
        assert_eq!(status.applied_index, 9);
    }

    #[test]
    fn members_merge_raft_and_gossip() {
        let view = consensus(1, Some(1), &[1, 2]);
        let report = members(
            &me(1),
            &view,
            &gossip(&[(2, false), (5, true)]),
            &MachineStatus::default(),
        );
        let rows: Vec<(u64, &str, &str)> = report
            .members
            .iter()
            .map(|member| {
                (
                    member.id,
                    member.raft_role.as_str(),
                    member.liveness.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (1, "leader", "alive"),
                (2, "follower", "dead"),
                (5, "none", "alive")
            ]
        );
        assert_eq!(report.members[2].applied_index, 7, "from gossip");
        assert_eq!(report.members[0].applied_index, 9, "from Raft, for itself");
    }
}
