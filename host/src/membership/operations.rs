//! Membership operations run on the leader on an operator's request:
//! remove a member, transfer leadership, and the leader's part of leaving.

use crate::consensus::{Consensus, MembershipChange, NodeId, Role};
use crate::limits::LEADER_TRANSFER_TIMEOUT;

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
        .wait_leader_is(to, LEADER_TRANSFER_TIMEOUT)
        .await
        .map_err(|error| {
            OperationError::Unavailable(format!("leadership did not move to {to}: {error}"))
        })
}

/// The voter best placed to take over from this leader: the one whose
/// replicated log is furthest along. Pure.
pub fn best_successor(
    self_id: NodeId,
    voters: &[NodeId],
    matched: &std::collections::BTreeMap<NodeId, Option<u64>>,
) -> Option<NodeId> {
    voters
        .iter()
        .copied()
        .filter(|id| *id != self_id)
        .max_by_key(|id| (matched.get(id).copied().flatten(), std::cmp::Reverse(*id)))
}

/// If this node leads, hand leadership to the best other voter so the
/// cluster does not wait out an election timeout when it stops.
pub async fn step_down(consensus: &Consensus) {
    let view = consensus.view();
    if view.role != Role::Leader {
        return;
    }
    let voters: Vec<NodeId> = view.voters().into_iter().collect();
    let Some(successor) = best_successor(view.node_id, &voters, &view.matched) else {
        return;
    };
    tracing::info!(successor, "transferring leadership before stopping");
    if let Err(error) = transfer_leader(consensus, successor).await {
        tracing::warn!("leadership transfer before stopping failed: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_most_caught_up_other_voter_succeeds() {
        let matched = BTreeMap::from([(2, Some(10)), (3, Some(12)), (4, None)]);
        assert_eq!(best_successor(1, &[1, 2, 3, 4], &matched), Some(3));
        assert_eq!(best_successor(1, &[1], &matched), None);
    }
}
