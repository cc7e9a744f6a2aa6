//! Leaving the cluster gracefully: announce it, hand leadership over, wait
//! until the leader knows, get removed through the leader, then stop.
//!
//! The order matters: a dead node's last gossip state outlives it, so the
//! leader must have heard `leaving` before the removal, or its reconciler
//! would add the node back.

use std::future::Future;
use std::time::Instant;

use super::local::LocalMember;
use super::operations::step_down;
use crate::consensus::{Consensus, NodeId};
use crate::limits::{LEADER_RETRY_INTERVAL, REQUEST_TIMEOUT};

/// What leaving needs from the leader, wherever it is (this node, or
/// another reached by forwarding).
pub trait LeaderCalls {
    /// Why a call failed.
    type Error;

    /// Whether the leader has heard that `node_id` is leaving.
    fn sees_leaving(&self, node_id: NodeId) -> impl Future<Output = Result<bool, Self::Error>>;

    /// Remove `node_id` from the membership.
    fn remove(&self, node_id: NodeId) -> impl Future<Output = Result<(), Self::Error>>;

    /// Whether a failed call may succeed when tried again (no leader yet,
    /// a change in progress).
    fn retryable(error: &Self::Error) -> bool;

    /// The error for giving up after waiting.
    fn timed_out(message: &str) -> Self::Error;
}

/// Leave the cluster; on success the node has been asked to stop.
pub async fn leave<L: LeaderCalls>(
    local: &LocalMember,
    consensus: &Consensus,
    leader: &L,
) -> Result<(), L::Error> {
    local.set_leaving();
    step_down(consensus).await;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while !leader.sees_leaving(local.node_id).await? {
        if Instant::now() >= deadline {
            return Err(L::timed_out(
                "the leader did not learn that this node is leaving in time; nothing was changed",
            ));
        }
        local.announce_now();
        pause(consensus, deadline).await;
    }
    loop {
        match leader.remove(local.node_id).await {
            Ok(()) => break,
            Err(error) if L::retryable(&error) && Instant::now() < deadline => {
                pause(consensus, deadline).await;
            }
            Err(error) => return Err(error),
        }
    }
    tracing::info!("left the cluster; stopping");
    local.request_stop();
    Ok(())
}

/// Wait a little (until the leader changes, at most one retry interval, and
/// never past `deadline`).
async fn pause(consensus: &Consensus, deadline: Instant) {
    let wait = LEADER_RETRY_INTERVAL.min(deadline.saturating_duration_since(Instant::now()));
    consensus
        .wait_leader_change(consensus.view().leader, wait)
        .await;
}
