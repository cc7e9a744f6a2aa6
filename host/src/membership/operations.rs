//! Membership operations run on the leader on an operator's request:
//! remove a member, transfer leadership, and the leader's part of leaving.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use crate::consensus::{Consensus, ConsensusView, MembershipChange, NodeId, Role};
use crate::limits::{HEALTH_CONTACT_WINDOW, LEADER_TRANSFER_TIMEOUT, STEP_DOWN_TIMEOUT};

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The node named is not a member.
    #[error("node {0} is not a member of this cluster")]
    UnknownNode(NodeId),
    /// The request does not make sense (e.g. transfer to a learner).
    #[error("{0}")]
    Invalid(String),
    /// Raft refused or timed out.
    #[error("{0}")]
    Unavailable(String),
}

/// Remove `node_id` from the membership (a voter first loses its vote).
/// Runs on the leader.
pub async fn remove_member(consensus: &Consensus, node_id: NodeId) -> Result<(), OperationError> {
    let view = consensus.view();
    let Some(member) = view.members.get(&node_id) else {
        return Err(OperationError::UnknownNode(node_id));
    };
    let change = if member.voter {
        MembershipChange::RemoveVoter(node_id)
    } else {
        MembershipChange::RemoveNode(node_id)
    };
    consensus.change_membership(change).await.map_err(|error| {
        OperationError::Unavailable(format!("cannot remove node {node_id}: {error}"))
    })
}

/// Move leadership from this node (the leader) to the voter `to`, and wait
/// until `to` leads.
pub async fn transfer_leader(consensus: &Consensus, to: NodeId) -> Result<(), OperationError> {
    if let Some(index) = consensus.machine().borrow().alarms.corrupt_since(to) {
        return Err(OperationError::Invalid(format!(
            "node {to} is corrupt since index {index}; a corrupt replica must not lead"
        )));
    }
    transfer_leader_within(consensus, to, LEADER_TRANSFER_TIMEOUT).await
}

/// [`transfer_leader`], waiting at most `timeout` for `to` to lead.
async fn transfer_leader_within(
    consensus: &Consensus,
    to: NodeId,
    timeout: std::time::Duration,
) -> Result<(), OperationError> {
    let view = consensus.view();
    let Some(member) = view.members.get(&to) else {
        return Err(OperationError::UnknownNode(to));
    };
    if !member.voter {
        return Err(OperationError::Invalid(format!(
            "node {to} is a learner; only voters can lead"
        )));
    }
    if view.leader == Some(to) {
        return Ok(());
    }
    consensus
        .start_transfer(to)
        .await
        .map_err(OperationError::Unavailable)?;
    consensus
        .wait_leader_is(to, timeout)
        .await
        .map_err(|error| {
            OperationError::Unavailable(format!("leadership did not move to {to}: {error}"))
        })
}

/// The voter best placed to take over from this leader: among the others
/// that acknowledged a heartbeat recently, the one whose replicated log is
/// furthest along. `None` when no other voter is in contact. Pure.
pub fn best_successor(view: &ConsensusView, corrupt: &BTreeSet<NodeId>) -> Option<NodeId> {
    let in_contact = |id: &NodeId| {
        view.heartbeat_age
            .get(id)
            .copied()
            .flatten()
            .is_some_and(|age| age < HEALTH_CONTACT_WINDOW)
    };
    view.voters()
        .into_iter()
        .filter(|id| *id != view.node_id && in_contact(id) && !corrupt.contains(id))
        .max_by_key(|id| (view.matched.get(id).copied().flatten(), Reverse(*id)))
}

/// If this node leads, hand leadership to the best other voter so the
/// cluster does not wait out an election timeout when it stops.
pub async fn step_down(consensus: &Consensus) {
    let view = consensus.view();
    if view.role != Role::Leader {
        return;
    }
    let corrupt: BTreeSet<NodeId> = consensus
        .machine()
        .borrow()
        .alarms
        .corrupt
        .keys()
        .copied()
        .collect();
    let Some(successor) = best_successor(&view, &corrupt) else {
        return;
    };
    tracing::info!(successor, "transferring leadership before stopping");
    if let Err(error) = transfer_leader_within(consensus, successor, STEP_DOWN_TIMEOUT).await {
        tracing::warn!("leadership transfer before stopping failed: {error}");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::consensus::view::MemberView;

    fn leader_view() -> ConsensusView {
        let members = (1..=4)
            .map(|id| {
                let member = MemberView {
                    rpc_addr: format!("n{id}:1"),
                    name: None,
                    voter: true,
                };
                (id, member)
            })
            .collect();
        let recent = Some(Duration::from_millis(100));
        ConsensusView {
            node_id: 1,
            role: Role::Leader,
            term: 1,
            leader: Some(1),
            last_log_index: 12,
            committed_index: 12,
            applied_index: 12,
            snapshot_index: None,
            purged_index: 0,
            members,
            change_in_flight: false,
            joint_committed: false,
            matched: BTreeMap::from([(2, Some(10)), (3, Some(12)), (4, None)]),
            heartbeat_age: BTreeMap::from([(2, recent), (3, recent), (4, recent)]),
        }
    }

    #[test]
    fn the_most_caught_up_other_voter_in_contact_succeeds() {
        let mut view = leader_view();
        let none = BTreeSet::new();
        assert_eq!(best_successor(&view, &none), Some(3));
        assert_eq!(
            best_successor(&view, &BTreeSet::from([3])),
            Some(2),
            "node 3 is corrupt"
        );
        view.heartbeat_age.insert(3, Some(Duration::from_secs(60)));
        assert_eq!(
            best_successor(&view, &none),
            Some(2),
            "node 3 is out of contact"
        );
        view.heartbeat_age.clear();
        assert_eq!(best_successor(&view, &none), None, "nobody to hand over to");
    }
}
