//! `--bootstrap-expect N`, decided purely: once N uninitialized expecting
//! nodes (this one included) are alive and none of them belongs to a
//! cluster, the one with the smallest id initializes Raft with all N as
//! voters. Every node computes the same choice, so exactly one initializes
//! and there are never two clusters.
//!
//! That holds only while every node sees the same peers. Before the cluster
//! exists every peer is outside Raft, so the bound on such peers
//! ([`super::unknown`]) applies to all of them, and which ones it keeps (the
//! first seen) can differ from node to node. So no node initializes while
//! that bound leaves anyone out.

use std::collections::BTreeMap;

use crate::consensus::NodeId;
use crate::discovery::Peer;

/// The voters (id → gRPC address) this node should initialize a cluster
/// with, or `None` when it should not (yet, or ever). `left_out`: how many
/// gossip members the bound on unknown members leaves out of `peers` for
/// being too many.
pub fn initial_voters(
    self_id: NodeId,
    self_rpc_addr: &str,
    peers: &BTreeMap<NodeId, Peer>,
    expect: usize,
    left_out: usize,
) -> Option<BTreeMap<NodeId, String>> {
    if left_out > 0 {
        // Another node may have kept other peers: its choice could differ.
        return None;
    }
    if peers
        .values()
        .any(|peer| peer.alive && peer.announcement.initialized)
    {
        // A cluster exists: its leader will add this node.
        return None;
    }
    let mut candidates: BTreeMap<NodeId, String> = peers
        .values()
        .filter(|peer| peer.alive && peer.announcement.bootstrap_expect > 0)
        .map(|peer| (peer.node_id, peer.announcement.rpc_addr.clone()))
        .collect();
    candidates.insert(self_id, self_rpc_addr.to_string());
    if candidates.len() < expect {
        return None;
    }
    let chosen: BTreeMap<NodeId, String> = candidates.into_iter().take(expect).collect();
    (chosen.keys().next() == Some(&self_id)).then_some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Announcement;

    fn peer(node_id: NodeId, alive: bool, initialized: bool, expect: usize) -> (NodeId, Peer) {
        (
            node_id,
            Peer {
                node_id,
                gossip_addr: "127.0.0.1:1".parse().expect("address"),
                alive,
                generation: 1,
                announcement: Announcement {
                    rpc_addr: format!("n{node_id}:1"),
                    initialized,
                    bootstrap_expect: expect,
                    ..Announcement::default()
                },
                version: String::new(),
            },
        )
    }

    #[test]
    fn the_smallest_id_initializes_once_enough_nodes_are_seen() {
        let peers = BTreeMap::from([peer(2, true, false, 3), peer(3, true, false, 3)]);
        let voters = initial_voters(1, "n1:1", &peers, 3, 0).expect("node 1 initializes");
        assert_eq!(voters.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            initial_voters(4, "n4:1", &peers, 3, 0),
            None,
            "not the smallest"
        );
        assert_eq!(
            initial_voters(1, "n1:1", &peers, 4, 0),
            None,
            "not enough yet"
        );
    }

    #[test]
    fn an_existing_cluster_or_dead_peers_prevent_initializing() {
        let peers = BTreeMap::from([peer(2, true, true, 3), peer(3, true, false, 3)]);
        assert_eq!(
            initial_voters(1, "n1:1", &peers, 3, 0),
            None,
            "a cluster exists"
        );
        let peers = BTreeMap::from([peer(2, false, false, 3), peer(3, true, false, 3)]);
        assert_eq!(
            initial_voters(1, "n1:1", &peers, 3, 0),
            None,
            "node 2 is dead"
        );
        let peers = BTreeMap::from([peer(2, true, false, 0), peer(3, true, false, 3)]);
        assert_eq!(
            initial_voters(1, "n1:1", &peers, 3, 0),
            None,
            "node 2 does not expect"
        );
    }

    #[test]
    fn nobody_initializes_while_the_unknown_bound_leaves_peers_out() {
        let peers = BTreeMap::from([peer(2, true, false, 3), peer(3, true, false, 3)]);
        assert!(initial_voters(1, "n1:1", &peers, 3, 0).is_some());
        assert_eq!(initial_voters(1, "n1:1", &peers, 3, 1), None);
    }
}
