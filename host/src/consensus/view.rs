//! What the rest of the node may know about Raft: a plain snapshot of this
//! node's Raft state, taken by [`super::Consensus::view`]. No openraft type
//! appears here, so status reports, routing and the membership autopilot are
//! pure functions of it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::types::NodeId;

/// A node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leads the cluster.
    Leader,
    /// Follows a leader (a voter, or a learner that Raft calls follower).
    Follower,
    /// Campaigning.
    Candidate,
    /// A non-voting member.
    Learner,
    /// Stopping.
    Shutdown,
}

impl Role {
    /// The name status output and gossip use.
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

/// A member of the Raft configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Its gRPC address as the membership records it.
    pub rpc_addr: String,
    /// Its node name as the membership records it (see
    /// [`super::types::Member::name`]).
    pub name: Option<String>,
    /// Voter or learner.
    pub voter: bool,
}

/// This node's Raft state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsensusView {
    /// This node.
    pub node_id: NodeId,
    /// Its role as Raft reports it.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Index of the last entry in the log (0: empty).
    pub last_log_index: u64,
    /// Highest index known committed.
    pub committed_index: u64,
    /// Highest index applied to the state machine.
    pub applied_index: u64,
    /// Index the newest snapshot includes.
    pub snapshot_index: Option<u64>,
    /// Entries up to this index have been purged.
    pub purged_index: u64,
    /// The membership (the newest configuration, committed or not).
    pub members: BTreeMap<NodeId, MemberView>,
    /// A membership change is not finished: a joint configuration, or one
    /// not committed yet.
    pub change_in_flight: bool,
    /// The membership is a committed joint configuration: the first step of
    /// a change committed and the second was never proposed (the leader
    /// changed, or whoever drove it gave up). It stays joint until someone
    /// finishes it.
    pub joint_committed: bool,
    /// On a leader: the highest index known replicated to each member.
    pub matched: BTreeMap<NodeId, Option<u64>>,
    /// On a leader: how long ago each member acknowledged a heartbeat
    /// (`None`: never).
    pub heartbeat_age: BTreeMap<NodeId, Option<Duration>>,
}

impl ConsensusView {
    /// The voters.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.members
            .iter()
            .filter(|(_, member)| member.voter)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether `node_id` votes.
    pub fn is_voter(&self, node_id: NodeId) -> bool {
        self.members
            .get(&node_id)
            .is_some_and(|member| member.voter)
    }

    /// Whether this node belongs to an initialized cluster.
    pub fn initialized(&self) -> bool {
        !self.members.is_empty()
    }

    /// The role shown to users: a follower that does not vote is a learner.
    pub fn displayed_role(&self) -> Role {
        if self.role == Role::Follower && !self.is_voter(self.node_id) {
            Role::Learner
        } else {
            self.role
        }
    }

    /// The recorded gRPC address of `node_id`.
    pub fn member_addr(&self, node_id: NodeId) -> Option<&str> {
        self.members
            .get(&node_id)
            .map(|member| member.rpc_addr.as_str())
    }
}

/// Voters needed for a majority of `voters`.
pub fn quorum_size(voters: usize) -> usize {
    voters / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_is_a_strict_majority() {
        assert_eq!(quorum_size(1), 1);
        assert_eq!(quorum_size(2), 2);
        assert_eq!(quorum_size(3), 2);
        assert_eq!(quorum_size(4), 3);
        assert_eq!(quorum_size(5), 3);
    }
}
