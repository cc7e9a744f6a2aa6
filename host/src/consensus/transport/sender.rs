//! Who may speak for a node id in Raft messages, as pure code. Node
//! certificates and the gossip key let any node holder reach the Raft
//! service, and openraft checks no membership: without this a holder could
//! send votes, entries or snapshots in any id's name, a member's or a made
//! up one's, and make followers follow a leader that does not exist.
//!
//! With TLS, a message is taken only when the id it claims is a member in
//! this node's membership (in either configuration of a joint one; votes
//! only from voters) and the caller's certificate is that member's:
//! - a member whose record names it: that name;
//! - a member recorded without a name (by an older binary): the name this
//!   node bound to the id (see [`crate::membership::identity`]), provided
//!   no other member's record carries it.
//!
//! A node whose membership is still empty (a new learner before its first
//! entries) has no record to check against: it takes a message only from
//! an id whose gossip entry it believed, at the address where it read the
//! caller's certificate name. Residual: a holder of the gossip key and of
//! a valid node certificate can still pose as a leader to such a node
//! (nothing in its log says otherwise); see the README.

use std::collections::BTreeMap;

use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::vote::RaftLeaderId;

use crate::consensus::types::{NodeId, TypeConfig, Vote};

/// The node a message says it comes from.
pub trait Sender {
    /// Its id (`None`: the message claims none).
    fn sender(&self) -> Option<NodeId>;
    /// What it asks of the receiver.
    fn kind(&self) -> MessageKind;
}

/// What a message asks, which decides who may send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A (pre-)vote request: only a voter stands for leader.
    Vote,
    /// Entries, a snapshot or a leadership transfer: from a leader. Taken
    /// from learners too, because a follower's membership may lag a
    /// promotion (refusing the new leader would strand that follower).
    Replication,
}

/// The node a vote is for: the candidate, or the leader.
pub fn voted_for(vote: &Vote) -> NodeId {
    *vote.leader_id().node_id()
}

impl Sender for VoteRequest<TypeConfig> {
    fn sender(&self) -> Option<NodeId> {
        Some(voted_for(&self.vote))
    }
    fn kind(&self) -> MessageKind {
        MessageKind::Vote
    }
}

impl Sender for AppendEntriesRequest<TypeConfig> {
    fn sender(&self) -> Option<NodeId> {
        Some(voted_for(&self.vote))
    }
    fn kind(&self) -> MessageKind {
        MessageKind::Replication
    }
}

impl Sender for TransferLeaderRequest<TypeConfig> {
    fn sender(&self) -> Option<NodeId> {
        Some(voted_for(self.from_leader()))
    }
    fn kind(&self) -> MessageKind {
        MessageKind::Replication
    }
}

impl Sender for () {
    fn sender(&self) -> Option<NodeId> {
        None
    }
    fn kind(&self) -> MessageKind {
        MessageKind::Replication
    }
}

/// One member as this node's membership records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its id.
    pub node_id: NodeId,
    /// Whether it votes (in either configuration).
    pub voter: bool,
    /// The name its record carries.
    pub name: Option<&'a str>,
}

/// Names this node verified itself, published by its identity checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vouched {
    /// Names bound to members' ids.
    pub bound: BTreeMap<NodeId, String>,
    /// Names read at the addresses of the gossip entries believed this
    /// round (members or not).
    pub believed: BTreeMap<NodeId, String>,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The caller's certificate names no node.
    #[error(
        "a raft message claiming node {node_id} sent with a certificate that names no node: refused"
    )]
    Unnamed {
        /// The id the message claims.
        node_id: NodeId,
    },
    /// The id is no member here.
    #[error(
        "a raft message from node {node_id}, which is not a member, sent by {presented}: refused"
    )]
    NotAMember {
        /// The id the message claims.
        node_id: NodeId,
        /// The caller's certificate name.
        presented: String,
    },
    /// A vote request from a learner.
    #[error(
        "a vote request from node {node_id}, which is not a voter, sent by {presented}: refused"
    )]
    NotAVoter {
        /// The id the message claims.
        node_id: NodeId,
        /// The caller's certificate name.
        presented: String,
    },
    /// The certificate is not the one the id's record (or binding) names.
    #[error(
        "a raft message from node {node_id} ({recorded}) sent with the certificate of {presented}: refused"
    )]
    Foreign {
        /// The id the message claims.
        node_id: NodeId,
        /// The name recorded or bound for it (`unverified`: none yet).
        recorded: String,
        /// The caller's certificate name.
        presented: String,
    },
}

/// Whether a `kind` message claiming `node_id` may be taken from a caller
/// whose certificate names `presented`, given this node's membership
/// `records` and the names it `vouched` for.
pub fn check_sender(
    kind: MessageKind,
    node_id: NodeId,
    presented: Option<&str>,
    records: &[Record<'_>],
    vouched: &Vouched,
) -> Result<(), Refusal> {
    let Some(presented) = presented else {
        return Err(Refusal::Unnamed { node_id });
    };
    let foreign = |recorded: Option<&str>| Refusal::Foreign {
        node_id,
        recorded: recorded.unwrap_or("unverified").to_string(),
        presented: presented.to_string(),
    };
    if records.is_empty() {
        let believed = vouched.believed.get(&node_id).map(String::as_str);
        return match believed {
            Some(name) if name == presented => Ok(()),
            Some(name) => Err(foreign(Some(name))),
            None => Err(Refusal::NotAMember {
                node_id,
                presented: presented.to_string(),
            }),
        };
    }
    let Some(record) = records.iter().find(|record| record.node_id == node_id) else {
        return Err(Refusal::NotAMember {
            node_id,
            presented: presented.to_string(),
        });
    };
    if kind == MessageKind::Vote && !record.voter {
        return Err(Refusal::NotAVoter {
            node_id,
            presented: presented.to_string(),
        });
    }
    if let Some(recorded) = record.name {
        return if recorded == presented {
            Ok(())
        } else {
            Err(foreign(Some(recorded)))
        };
    }
    let bound = vouched.bound.get(&node_id).map(String::as_str);
    let recorded_for_other = records
        .iter()
        .any(|other| other.node_id != node_id && other.name == Some(presented));
    if bound == Some(presented) && !recorded_for_other {
        Ok(())
    } else {
        Err(foreign(bound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOTE: MessageKind = MessageKind::Vote;
    const REPLICATION: MessageKind = MessageKind::Replication;

    fn records() -> Vec<Record<'static>> {
        vec![
            Record {
                node_id: 1,
                voter: true,
                name: Some("n1"),
            },
            Record {
                node_id: 2,
                voter: true,
                name: None,
            },
            Record {
                node_id: 3,
                voter: false,
                name: Some("n3"),
            },
        ]
    }

    fn vouched(bound: &[(NodeId, &str)], believed: &[(NodeId, &str)]) -> Vouched {
        let map = |pairs: &[(NodeId, &str)]| {
            pairs
                .iter()
                .map(|(id, name)| (*id, name.to_string()))
                .collect()
        };
        Vouched {
            bound: map(bound),
            believed: map(believed),
        }
    }

    // Goal: a named member's id is spoken for only by its own certificate.
    #[test]
    fn only_the_recorded_name_speaks_for_a_named_member() {
        let none = Vouched::default();
        assert_eq!(check_sender(VOTE, 1, Some("n1"), &records(), &none), Ok(()));
        let refused =
            check_sender(REPLICATION, 1, Some("n3"), &records(), &none).expect_err("another node");
        assert_eq!(
            refused,
            Refusal::Foreign {
                node_id: 1,
                recorded: "n1".into(),
                presented: "n3".into()
            }
        );
        assert!(refused.to_string().contains("n3"), "{refused}");
        assert_eq!(
            check_sender(VOTE, 1, None, &records(), &none),
            Err(Refusal::Unnamed { node_id: 1 }),
            "a certificate naming no node"
        );
    }

    // Goal: an id that is no member is refused whatever certificate sends
    // it: a node certificate cannot make up a leader.
    #[test]
    fn a_non_member_is_refused() {
        let believed = vouched(&[], &[(4242, "evil")]);
        for kind in [VOTE, REPLICATION] {
            assert_eq!(
                check_sender(kind, 4242, Some("evil"), &records(), &believed),
                Err(Refusal::NotAMember {
                    node_id: 4242,
                    presented: "evil".into()
                })
            );
        }
    }

    // Goal: a learner may not ask for votes, but may replicate (a lagging
    // follower may not know it was promoted yet).
    #[test]
    fn votes_only_from_voters() {
        let none = Vouched::default();
        assert!(matches!(
            check_sender(VOTE, 3, Some("n3"), &records(), &none),
            Err(Refusal::NotAVoter { node_id: 3, .. })
        ));
        assert_eq!(
            check_sender(REPLICATION, 3, Some("n3"), &records(), &none),
            Ok(())
        );
    }

    // Goal: an unnamed record is spoken for only by the name this node
    // bound to it, and never by a name another record carries.
    #[test]
    fn an_unnamed_member_needs_the_name_bound_here() {
        let unbound = Vouched::default();
        assert!(check_sender(VOTE, 2, Some("n2"), &records(), &unbound).is_err());
        let bound = vouched(&[(2, "n2")], &[]);
        assert_eq!(
            check_sender(VOTE, 2, Some("n2"), &records(), &bound),
            Ok(())
        );
        assert!(check_sender(VOTE, 2, Some("evil"), &records(), &bound).is_err());
        let bound_to_recorded = vouched(&[(2, "n1")], &[]);
        assert!(
            check_sender(VOTE, 2, Some("n1"), &records(), &bound_to_recorded).is_err(),
            "another member's recorded name"
        );
    }

    // Goal: with no membership yet, only an id whose gossip entry was
    // believed, with the name read there, is heard.
    #[test]
    fn an_empty_membership_hears_only_believed_entries() {
        let believed = vouched(&[], &[(1, "n1")]);
        assert_eq!(
            check_sender(REPLICATION, 1, Some("n1"), &[], &believed),
            Ok(())
        );
        assert!(check_sender(REPLICATION, 1, Some("evil"), &[], &believed).is_err());
        assert!(matches!(
            check_sender(REPLICATION, 4242, Some("evil"), &[], &believed),
            Err(Refusal::NotAMember { .. })
        ));
    }
}
