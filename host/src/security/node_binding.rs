//! Which node id a node certificate speaks for, decided purely from its
//! node name, so a node certificate for one node cannot speak Raft as
//! another.
//!
//! A node name of decimal digits binds that number (`certs node --name 3`
//! is node 3, so operators who pick ids keep them readable); any other name
//! binds a number derived from it with SHA-256 ([`node_id_for_name`]). With
//! TLS on, a node runs as the id its own certificate binds (refusing to
//! start otherwise), and every Raft message it receives must claim to come
//! from the id the sender's certificate binds: a candidate's vote, a
//! leader's AppendEntries, snapshot or leadership transfer claiming another
//! node is refused before Raft sees it.

use sha2::{Digest as _, Sha256};

use super::peer::PeerIdentity;
use super::roles::Role;
use crate::consensus::NodeId;

/// Domain separation for derived node ids.
const NODE_ID_DOMAIN: &[u8] = b"clusterhost node id\0";

/// Derived ids keep to 53 bits: they stay exact as JSON numbers.
const DERIVED_NODE_ID_MASK: u64 = (1 << 53) - 1;

/// Why a certificate does not speak for a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingRefusal {
    /// The certificate is not a node certificate with a node name.
    #[error(
        "permission denied: the certificate is not a node certificate with a node name (role node and clusterhost:node:<name>)"
    )]
    NotANode,
    /// The message claims a node the certificate does not bind.
    #[error(
        "permission denied: a message claiming to come from node {claimed} was sent with the certificate of node `{name}`, which speaks for node {bound} only"
    )]
    Impersonation {
        /// The node id the message claims.
        claimed: NodeId,
        /// The certificate's node name.
        name: String,
        /// The id that name binds.
        bound: NodeId,
    },
}

/// The node id a node certificate named `name` speaks for.
pub fn node_id_for_name(name: &str) -> NodeId {
    if !name.is_empty()
        && name.bytes().all(|byte| byte.is_ascii_digit())
        && let Ok(id) = name.parse::<NodeId>()
    {
        return id;
    }
    let digest = Sha256::new()
        .chain_update(NODE_ID_DOMAIN)
        .chain_update(name.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) & DERIVED_NODE_ID_MASK
}

/// The node id a peer's certificate speaks for.
pub fn bound_node_id(peer: &PeerIdentity) -> Result<NodeId, BindingRefusal> {
    match (&peer.role, &peer.node_name) {
        (Some(Role::Node), Some(name)) => Ok(node_id_for_name(name)),
        _ => Err(BindingRefusal::NotANode),
    }
}

/// Whether a message claiming to come from node `claimed` may be accepted
/// from a peer presenting `peer`'s certificate.
pub fn check_sender(claimed: NodeId, peer: &PeerIdentity) -> Result<(), BindingRefusal> {
    let bound = bound_node_id(peer)?;
    if claimed == bound {
        return Ok(());
    }
    Err(BindingRefusal::Impersonation {
        claimed,
        name: peer.node_name.clone().unwrap_or_default(),
        bound,
    })
}

/// Check the node id this node is about to run as against what its own
/// certificate binds; the message names both and how to fix it.
pub fn check_own_id(node_id: NodeId, own: &PeerIdentity) -> Result<(), String> {
    let bound = bound_node_id(own).map_err(|_| {
        "--tls-cert is not a node certificate (make one with `clusterhost certs node`)".to_string()
    })?;
    if node_id == bound {
        return Ok(());
    }
    Err(format!(
        "this node would run as node {node_id}, but its certificate `{}` speaks for node {bound} \
         only: use --node-id {bound} or a certificate made for this node",
        own.node_name.as_deref().unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> PeerIdentity {
        PeerIdentity {
            role: Some(Role::Node),
            node_name: Some(name.to_string()),
        }
    }

    #[test]
    fn numeric_names_bind_their_number_and_others_a_stable_digest() {
        assert_eq!(node_id_for_name("3"), 3);
        assert_eq!(node_id_for_name("42"), 42);
        let n1 = node_id_for_name("n1");
        assert_eq!(n1, node_id_for_name("n1"), "stable");
        assert_ne!(n1, node_id_for_name("n2"));
        assert!(n1 <= DERIVED_NODE_ID_MASK);
        // Too large for a u64: not a number, so derived.
        let huge = "99999999999999999999999";
        assert!(node_id_for_name(huge) <= DERIVED_NODE_ID_MASK);
    }

    #[test]
    fn a_node_certificate_speaks_only_for_its_own_id() {
        assert_eq!(check_sender(2, &node("2")), Ok(()));
        assert_eq!(
            check_sender(3, &node("2")),
            Err(BindingRefusal::Impersonation {
                claimed: 3,
                name: "2".into(),
                bound: 2
            })
        );
        let n2 = node_id_for_name("node-2");
        assert_eq!(check_sender(n2, &node("node-2")), Ok(()));
        assert!(check_sender(n2 + 1, &node("node-2")).is_err());
        let text = check_sender(3, &node("2"))
            .expect_err("refused")
            .to_string();
        assert!(text.starts_with("permission denied"), "{text}");
    }

    #[test]
    fn only_named_node_certificates_bind_an_id() {
        let admin = PeerIdentity {
            role: Some(Role::Admin),
            node_name: Some("n1".into()),
        };
        assert_eq!(check_sender(1, &admin), Err(BindingRefusal::NotANode));
        let unnamed = PeerIdentity {
            role: Some(Role::Node),
            node_name: None,
        };
        assert_eq!(check_sender(1, &unnamed), Err(BindingRefusal::NotANode));
    }

    #[test]
    fn a_node_must_run_as_the_id_its_certificate_binds() {
        assert_eq!(check_own_id(7, &node("7")), Ok(()));
        let error = check_own_id(8, &node("7")).expect_err("mismatch");
        assert!(error.contains("--node-id 7"), "{error}");
        assert!(check_own_id(7, &PeerIdentity::default()).is_err());
    }
}
