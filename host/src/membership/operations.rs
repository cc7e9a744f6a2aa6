//! Membership operations run on the leader on an operator's request:
//! remove a member, transfer leadership, and the leader's part of leaving.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{ChangeMembers, ServerState};

use crate::consensus::current_metrics;
use crate::consensus::types::{NodeId, Raft};

/// How long a leadership transfer may take.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

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
pub async fn remove_member(raft: &Raft, node_id: NodeId) -> Result<(), OperationError> {
    let metrics = current_metrics(raft);
    let membership = metrics.membership_config.membership();
    if membership.get_node(&node_id).is_none() {
        return Err(OperationError::UnknownNode(node_id));
    }
    let voter = membership.voter_ids().any(|id| id == node_id);
    let change = if voter {
        ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
    };
    raft.change_membership(change, false)
        .await
        .map(|_| ())
        .map_err(|error| {
            OperationError::Unavailable(format!("cannot remove node {node_id}: {error}"))
        })
}

/// Move leadership from this node (the leader) to the voter `to`, and wait
/// until `to` leads.
pub async fn transfer_leader(raft: &Raft, to: NodeId) -> Result<(), OperationError> {
    let metrics = current_metrics(raft);
    let membership = metrics.membership_config.membership();
    if membership.get_node(&to).is_none() {
        return Err(OperationError::UnknownNode(to));
    }
    if !membership.voter_ids().any(|id| id == to) {
        return Err(OperationError::Invalid(format!(
            "node {to} is a learner; only voters can lead"
        )));
    }
    if metrics.current_leader == Some(to) {
        return Ok(());
    }
    raft.trigger()
        .transfer_leader(to)
        .await
        .map_err(|error| OperationError::Unavailable(error.to_string()))?;
    raft.wait(Some(TRANSFER_TIMEOUT))
        .metrics(
            |metrics| metrics.current_leader == Some(to),
            "leadership transfer",
        )
        .await
        .map(|_| ())
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
pub async fn step_down(raft: &Raft, self_id: NodeId) {
    let metrics = current_metrics(raft);
    if metrics.state != ServerState::Leader {
        return;
    }
    let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
    let matched = metrics
        .replication
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(id, log_id)| (id, log_id.map(|log_id| log_id.index)))
        .collect();
    let Some(successor) = best_successor(self_id, &voters, &matched) else {
        return;
    };
    tracing::info!(successor, "transferring leadership before stopping");
    if let Err(error) = transfer_leader(raft, successor).await {
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
