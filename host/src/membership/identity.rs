//! Whether a gossiped (node id, address) may be believed, as pure code:
//! with TLS on, the certificate presented at the address must be a node
//! certificate naming the node the gossip claims, and that name must be the
//! one bound to the Raft id. Gossip is only authenticated by a key every
//! node shares, so without this any node could take another's id or
//! advertise another node's address.
//!
//! Raft ids are not derived from names (a replaced disk must rejoin as a new
//! node, not as a voter with an empty log). Instead each node binds names to
//! members' ids:
//! - a member whose membership record carries a name (the leader wrote the
//!   name it verified when it added the member) is bound to it on every
//!   replica, from the log: nothing gossip says can change it;
//! - a member recorded without a name (by an older binary) has its name
//!   learned at the address its membership records (an address the cluster
//!   already trusted when it added or moved it), or, with no name bound at
//!   all, at the first new address where its certificate is read while no
//!   other entry claims its id and the name is no other id's (trust on
//!   first use; never while this node's bindings file is unusable, nor
//!   once the cluster records names: the leader would write it into the
//!   record, and the operator removes and re-adds such a member); the
//!   binding lasts while it is a member, and survives restarts (see
//!   [`super::bindings_file`]);
//! - a node not yet a member is believed where its certificate names it and
//!   its gossip names the same name, unless that name is a member's, or
//!   another new id is claimed at that address or name too: nothing is
//!   bound for it (gossip before it is added must not decide what the
//!   member will be called);
//! - a name bound to one id is refused for another, so a spoofer's id
//!   cannot take over a member's name, nor its address;
//! - an entry is believed only where the node at its address reports its
//!   id (asked over mutual TLS with the certificate), so an id gossiped at
//!   another node's address neither takes that node's name nor keeps it
//!   out as a contender.

use std::collections::BTreeMap;

use crate::consensus::NodeId;
use crate::security::Role;
use crate::security::peer::PeerIdentity;

/// What a gossip entry claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The Raft id it announces.
    pub node_id: NodeId,
    /// The node name it announces (`None`: a binary that gossips none).
    pub name: Option<&'a str>,
    /// The gRPC address it advertises.
    pub rpc_addr: &'a str,
    /// Another gossip entry of the same round claims this id at another
    /// address: then a member with no bound name is not named by either.
    pub contested: bool,
    /// Another id outside the membership is claimed this round at the same
    /// address, or where the same certificate name is presented: then none
    /// of those ids is believed (which one is the node is unknown).
    pub shared: bool,
    /// Whether a member with no bound name may be named at a new address
    /// on first use (not when this node's bindings cannot be read: the name
    /// it had bound may be another).
    pub first_use_allowed: bool,
    /// Whether the cluster records names (protocol level 4): then a member
    /// recorded without a name is never named on first use, since the name
    /// read at its new address would be written into its record for good.
    pub names_recorded: bool,
    /// The id the node at `rpc_addr` reports for itself over mutual TLS:
    /// an entry claiming another id there does not speak for that node.
    pub answered_id: NodeId,
}

/// Names bound to Raft ids, as this node verified them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings(BTreeMap<NodeId, String>);

impl Bindings {
    /// The name bound to `node_id`.
    pub fn name_of(&self, node_id: NodeId) -> Option<&str> {
        self.0.get(&node_id).map(String::as_str)
    }

    /// The id `name` is bound to.
    pub fn holder_of(&self, name: &str) -> Option<NodeId> {
        self.0
            .iter()
            .find(|(_, bound)| bound.as_str() == name)
            .map(|(node_id, _)| *node_id)
    }

    /// Every (id, name) bound.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &str)> {
        self.0
            .iter()
            .map(|(node_id, name)| (*node_id, name.as_str()))
    }

    /// Bind `name` to `node_id`.
    pub fn bind(&mut self, node_id: NodeId, name: String) {
        self.0.insert(node_id, name);
    }

    /// Bind the names the membership records (`recorded`: id → name), over
    /// whatever was bound before: a name recorded for one id is unbound
    /// from any other.
    pub fn take_recorded<'a>(&mut self, recorded: impl IntoIterator<Item = (NodeId, &'a str)>) {
        for (node_id, name) in recorded {
            self.0
                .retain(|other, bound| *other == node_id || bound.as_str() != name);
            self.0.insert(node_id, name.to_string());
        }
    }

    /// Forget the ids `keep` refuses (nodes no longer members), so a
    /// removed node's name is free again.
    pub fn retain(&mut self, mut keep: impl FnMut(NodeId) -> bool) {
        self.0.retain(|node_id, _| keep(*node_id));
    }
}

/// What to do with a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Believe it (the binding says so, or it is not a member yet).
    Accept,
    /// Believe it, and bind this name to the claimed id from now on.
    AcceptAndBind(String),
    /// Ignore it.
    Refuse(Mismatch),
}

/// Why a claim is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The address presents a client (or roleless) certificate.
    #[error("the certificate at {rpc_addr} is not a node certificate (role {role})")]
    NotANode {
        /// The address dialed.
        rpc_addr: String,
        /// The role it names, or `none`.
        role: String,
    },
    /// The node certificate there names no node.
    #[error("the node certificate at {rpc_addr} names no node")]
    Unnamed {
        /// The address dialed.
        rpc_addr: String,
    },
    /// The node at the address reports another id.
    #[error("gossip claims node {node_id} at {rpc_addr}, but the node there is node {answered}")]
    OtherNodeId {
        /// The claimed id.
        node_id: NodeId,
        /// The id the node at the address reports.
        answered: NodeId,
        /// The address dialed.
        rpc_addr: String,
    },
    /// Gossip claims one name, the address presents another.
    #[error("gossip claims name {claimed}, but {rpc_addr} presents the certificate of {presented}")]
    OtherCertificate {
        /// The name gossip claims.
        claimed: String,
        /// The name in the certificate.
        presented: String,
        /// The address dialed.
        rpc_addr: String,
    },
    /// The id is bound to another name.
    #[error("node {node_id} is {bound}, but {rpc_addr} presents the certificate of {presented}")]
    IdBoundToOther {
        /// The claimed id.
        node_id: NodeId,
        /// The name bound to it.
        bound: String,
        /// The name in the certificate.
        presented: String,
        /// The address dialed.
        rpc_addr: String,
    },
    /// The name is bound to another id.
    #[error("{name} is node {holder}; it cannot also be node {node_id}")]
    NameBoundToOther {
        /// The name in the certificate.
        name: String,
        /// The id it is bound to.
        holder: NodeId,
        /// The claimed id.
        node_id: NodeId,
    },
    /// A node not yet a member gossips no name: it must name its own
    /// certificate, or anyone could claim a new id at its address.
    #[error("new node {node_id} gossips no name ({presented} presents at {rpc_addr})")]
    NewNodeUnnamed {
        /// The claimed id.
        node_id: NodeId,
        /// The name in the certificate.
        presented: String,
        /// The address dialed.
        rpc_addr: String,
    },
    /// More than one new id is claimed at this address or certificate name.
    #[error(
        "{presented} at {rpc_addr} stands behind more than one new node id, node {node_id} among them"
    )]
    SharedByNewIds {
        /// The claimed id.
        node_id: NodeId,
        /// The name in the certificate.
        presented: String,
        /// The address dialed.
        rpc_addr: String,
    },
    /// A member whose name is not known yet claims a new address while
    /// another entry claims its id too: which one is the member is unknown.
    #[error(
        "member {node_id} (name not yet verified) claims {rpc_addr} instead of its recorded {recorded} \
         ({presented} presents there), and another gossip entry claims the same id, or this node's \
         bindings file is unusable (names are then not bound on first use)"
    )]
    UnverifiedMemberMoved {
        /// The claimed id.
        node_id: NodeId,
        /// The address its membership records.
        recorded: String,
        /// The claimed address.
        rpc_addr: String,
        /// The name in the certificate at the claimed address.
        presented: String,
    },
    /// A member recorded without a name claims a new address in a cluster
    /// that records names: a first-use name would become its record.
    #[error(
        "member {node_id} is recorded without a name at {recorded} and claims {rpc_addr} ({presented} \
         presents there); names are recorded in this cluster, so it is not named on first use: \
         remove it (clusterhost members remove {node_id}) and let it join again"
    )]
    UnnamedMemberMoved {
        /// The claimed id.
        node_id: NodeId,
        /// The address its membership records.
        recorded: String,
        /// The claimed address.
        rpc_addr: String,
        /// The name in the certificate at the claimed address.
        presented: String,
    },
}

/// Judge `claim`, given the identity `presented` at its address, the
/// address the membership records for its id (`None`: not a member) and
/// the names already bound.
pub fn judge(
    claim: Claim<'_>,
    presented: &PeerIdentity,
    recorded_addr: Option<&str>,
    bindings: &Bindings,
) -> Verdict {
    let rpc_addr = claim.rpc_addr.to_string();
    if presented.role != Some(Role::Node) {
        let role = presented.role.map_or("none", Role::name).to_string();
        return Verdict::Refuse(Mismatch::NotANode { rpc_addr, role });
    }
    let Some(presented) = presented.node_name.clone() else {
        return Verdict::Refuse(Mismatch::Unnamed { rpc_addr });
    };
    if let Some(claimed) = claim.name.filter(|claimed| *claimed != presented) {
        return Verdict::Refuse(Mismatch::OtherCertificate {
            claimed: claimed.to_string(),
            presented,
            rpc_addr,
        });
    }
    if claim.answered_id != claim.node_id {
        return Verdict::Refuse(Mismatch::OtherNodeId {
            node_id: claim.node_id,
            answered: claim.answered_id,
            rpc_addr,
        });
    }
    if let Some(bound) = bindings.name_of(claim.node_id) {
        if bound == presented {
            return Verdict::Accept;
        }
        return Verdict::Refuse(Mismatch::IdBoundToOther {
            node_id: claim.node_id,
            bound: bound.to_string(),
            presented,
            rpc_addr,
        });
    }
    if let Some(holder) = bindings.holder_of(&presented) {
        return Verdict::Refuse(Mismatch::NameBoundToOther {
            name: presented,
            holder,
            node_id: claim.node_id,
        });
    }
    match recorded_addr {
        None => judge_new_node(claim, presented),
        Some(recorded) if recorded == claim.rpc_addr => Verdict::AcceptAndBind(presented),
        Some(recorded) if claim.names_recorded => Verdict::Refuse(Mismatch::UnnamedMemberMoved {
            node_id: claim.node_id,
            recorded: recorded.to_string(),
            rpc_addr,
            presented,
        }),
        // Trust on first use: a member known to no binding (its data dir,
        // or this node's, predates bindings) that the whole cluster sees
        // restarted elsewhere must be found again, or a cluster whose
        // every node moved never regains quorum. Only when its name is no
        // other id's (checked above) and nothing else claims the id.
        Some(_) if !claim.contested && claim.first_use_allowed => Verdict::AcceptAndBind(presented),
        Some(recorded) => Verdict::Refuse(Mismatch::UnverifiedMemberMoved {
            node_id: claim.node_id,
            recorded: recorded.to_string(),
            rpc_addr,
            presented,
        }),
    }
}

/// A node outside the membership, whose certificate names `presented`
/// (not a member's name): believed only if its gossip names that name and
/// no other new id stands behind the same address or name.
fn judge_new_node(claim: Claim<'_>, presented: String) -> Verdict {
    let rpc_addr = claim.rpc_addr.to_string();
    let node_id = claim.node_id;
    if claim.name.is_none() {
        return Verdict::Refuse(Mismatch::NewNodeUnnamed {
            node_id,
            presented,
            rpc_addr,
        });
    }
    if claim.shared {
        return Verdict::Refuse(Mismatch::SharedByNewIds {
            node_id,
            presented,
            rpc_addr,
        });
    }
    Verdict::Accept
}

#[cfg(test)]
mod tests;
