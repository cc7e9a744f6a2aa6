//! Which node each incoming Raft message claims to come from, so the
//! service can hold the claim against the sender's certificate
//! ([`crate::security::node_binding`]).

use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};

use crate::consensus::types::{NodeId, TypeConfig, Vote};

/// A message that names its sender.
pub trait ClaimsSender {
    /// The node the message says sent it; `None` for messages any node may
    /// send (a read-index request names no one).
    fn claimed_sender(&self) -> Option<NodeId>;
}

impl ClaimsSender for Vote {
    /// A vote is the candidate's or the leader's own.
    fn claimed_sender(&self) -> Option<NodeId> {
        Some(self.leader_id().node_id)
    }
}

impl ClaimsSender for VoteRequest<TypeConfig> {
    fn claimed_sender(&self) -> Option<NodeId> {
        self.vote.claimed_sender()
    }
}

impl ClaimsSender for AppendEntriesRequest<TypeConfig> {
    fn claimed_sender(&self) -> Option<NodeId> {
        self.vote.claimed_sender()
    }
}

impl ClaimsSender for TransferLeaderRequest<TypeConfig> {
    fn claimed_sender(&self) -> Option<NodeId> {
        self.from_leader().claimed_sender()
    }
}

impl ClaimsSender for () {
    fn claimed_sender(&self) -> Option<NodeId> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_and_appends_claim_their_candidate_or_leader() {
        let vote = Vote::new(7, 3);
        assert_eq!(vote.claimed_sender(), Some(3));
        let request = VoteRequest::<TypeConfig>::new(vote, None);
        assert_eq!(request.claimed_sender(), Some(3));
        let transfer = TransferLeaderRequest::<TypeConfig>::new(Vote::new(2, 5), 9, None);
        assert_eq!(transfer.claimed_sender(), Some(5));
        assert_eq!(().claimed_sender(), None);
    }
}
