//! Who may speak for a node id in Raft messages. Node certificates and the
//! gossip key let any node holder reach the Raft service; without this a
//! holder could send votes, entries or snapshots in another node's name.
//! With TLS, a message claiming to come from a member whose record names
//! it (see [`crate::consensus::types::Member::name`]) is taken only from a
//! peer whose certificate carries that name. Members recorded without a
//! name (by an older binary) are taken from any node, as before.

use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::vote::RaftLeaderId;

use crate::consensus::types::{NodeId, TypeConfig, Vote};

/// The node a message says it comes from.
pub trait Sender {
    /// Its id (`None`: the message claims none).
    fn sender(&self) -> Option<NodeId>;
}

/// The node a vote is for: the candidate, or the leader.
pub fn voted_for(vote: &Vote) -> NodeId {
    *vote.leader_id().node_id()
}

impl Sender for VoteRequest<TypeConfig> {
    fn sender(&self) -> Option<NodeId> {
        Some(voted_for(&self.vote))
    }
}

impl Sender for AppendEntriesRequest<TypeConfig> {
    fn sender(&self) -> Option<NodeId> {
        Some(voted_for(&self.vote))
    }
}

impl Sender for TransferLeaderRequest<TypeConfig> {
    fn sender(&self) -> Option<NodeId> {
        Some(voted_for(self.from_leader()))
    }
}

impl Sender for () {
    fn sender(&self) -> Option<NodeId> {
        None
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a raft message from node {node_id} ({recorded}) sent with the certificate of {presented}: refused"
)]
pub struct ForeignSender {
    /// The id the message claims.
    pub node_id: NodeId,
    /// The name its membership record carries.
    pub recorded: String,
    /// The name in the sender's certificate (`none`: it names no node).
    pub presented: String,
}

/// Whether a message claiming `sender` may be taken from a peer whose
/// certificate names `presented`, given the name `recorded` for that id.
pub fn check_sender(
    sender: Option<NodeId>,
    recorded: Option<&str>,
    presented: Option<&str>,
) -> Result<(), ForeignSender> {
    let (Some(node_id), Some(recorded)) = (sender, recorded) else {
        return Ok(());
    };
    if presented == Some(recorded) {
        return Ok(());
    }
    Err(ForeignSender {
        node_id,
        recorded: recorded.to_string(),
        presented: presented.unwrap_or("none").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a named member's id is spoken for only by its own certificate;
    // an unnamed record, or a message claiming no id, is taken as before.
    #[test]
    fn only_the_recorded_name_speaks_for_a_named_member() {
        assert_eq!(check_sender(Some(2), Some("n2"), Some("n2")), Ok(()));
        let refused = check_sender(Some(2), Some("n2"), Some("n3")).expect_err("another node");
        assert_eq!(
            refused,
            ForeignSender {
                node_id: 2,
                recorded: "n2".into(),
                presented: "n3".into()
            }
        );
        assert!(refused.to_string().contains("n3"), "{refused}");
        assert!(
            check_sender(Some(2), Some("n2"), None).is_err(),
            "a certificate naming no node"
        );
        assert_eq!(
            check_sender(Some(2), None, Some("n3")),
            Ok(()),
            "unnamed record"
        );
        assert_eq!(
            check_sender(None, Some("n2"), Some("n3")),
            Ok(()),
            "no sender claimed"
        );
    }
}
