//! This node's own membership state: who it is, whether it is leaving, and
//! the signals between the API, the membership loop and the node's owner.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, watch};

use crate::consensus::NodeId;

/// This node as a member of the cluster.
#[derive(Debug)]
pub struct LocalMember {
    /// Its Raft id.
    pub node_id: NodeId,
    /// The gRPC address others reach it at.
    pub rpc_addr: String,
    /// The UDP address peers gossip to.
    pub gossip_addr: SocketAddr,
    leaving: AtomicBool,
    announce: Notify,
    stop: watch::Sender<bool>,
}

impl LocalMember {
    /// A member that is not leaving.
    pub fn new(node_id: NodeId, rpc_addr: String, gossip_addr: SocketAddr) -> Self {
        Self {
            node_id,
            rpc_addr,
            gossip_addr,
            leaving: AtomicBool::new(false),
            announce: Notify::new(),
            stop: watch::channel(false).0,
        }
    }

    /// Whether this node was asked to leave the cluster.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    /// Mark this node as leaving (it is never re-added) and gossip it now.
    pub fn set_leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        self.announce_now();
    }

    /// Wake the membership loop to gossip this node's state at once.
    pub fn announce_now(&self) {
        self.announce.notify_one();
    }

    /// Resolves when someone asked for an announcement.
    pub async fn announce_requested(&self) {
        self.announce.notified().await;
    }

    /// Ask the node to stop (after leaving).
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once a stop was requested.
    pub async fn stop_requested(&self) {
        let mut stop = self.stop.subscribe();
        let _ = stop.wait_for(|stop| *stop).await;
    }
}
