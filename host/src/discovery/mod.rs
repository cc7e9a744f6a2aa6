//! Discovery by gossip (chitchat): each node announces who it is and how to
//! reach it, and learns who else is alive. chitchat is used nowhere else.
//!
//! Every restart is a new chitchat generation (the start time), so a dead
//! incarnation is never mistaken for the live one; the view folds all
//! generations of a node id into one peer, keeping the newest.
//!
//! - [`keyring`]: the gossip keys, sealing and opening datagrams (pure).
//! - [`sealed`]: chitchat's UDP transport with every datagram sealed (when
//!   keyed) and checked.
//! - [`wire_check`]: refusing datagrams chitchat would panic on (pure).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use chitchat::transport::Transport;
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, spawn_chitchat,
};

pub mod keyring;
pub mod sealed;
pub mod wire_check;

pub use keyring::Keyring;
pub use sealed::DatagramCounters;

use crate::consensus::NodeId;
use crate::limits::{
    GOSSIP_DEAD_NODE_FORGET_AFTER, GOSSIP_FAILURE_DETECTOR_MAX_INTERVAL,
    GOSSIP_FAILURE_DETECTOR_WINDOW, GOSSIP_INTERVAL, GOSSIP_PHI_THRESHOLD,
};

/// Gossip keys every node sets.
mod keys {
    pub const NODE_ID: &str = "node_id";
    pub const RPC_ADDR: &str = "rpc_addr";
    pub const ROLE: &str = "role";
    pub const READY: &str = "ready";
    pub const PLUGIN: &str = "plugin_digest";
    pub const PLUGIN_VERSION: &str = "plugin_version";
    pub const VERSION: &str = "version";
    pub const APPLIED: &str = "applied_index";
    pub const LEAVING: &str = "leaving";
    pub const INITIALIZED: &str = "initialized";
    pub const BOOTSTRAP_EXPECT: &str = "bootstrap_expect";
    pub const PROTOCOL_LEVEL: &str = "protocol_level";
    pub const CHECKPOINTS: &str = "checkpoints";
    pub const NODE_NAME: &str = "node_name";
}

/// How a node is set up to gossip.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// This node's Raft id.
    pub node_id: NodeId,
    /// UDP address to bind.
    pub listen_addr: SocketAddr,
    /// UDP address peers should gossip to.
    pub advertise_addr: SocketAddr,
    /// Seed addresses (host:port), re-resolved periodically.
    pub seeds: Vec<String>,
    /// Nodes only gossip with nodes of the same cluster name.
    pub cluster_name: String,
    /// This incarnation's generation (start time in ms).
    pub generation: u64,
    /// Seal every datagram with these keys; `None`: plaintext gossip.
    pub keyring: Option<Arc<Keyring>>,
    /// Where datagrams the transport refuses or cannot send are counted.
    pub counters: DatagramCounters,
}

/// What a node says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcement {
    /// gRPC address.
    pub rpc_addr: String,
    /// Raft role, as status shows it.
    pub role: String,
    /// Serving requests (has a plugin and knows a leader).
    pub ready: bool,
    /// sha256 of the running plugin.
    pub plugin_digest: String,
    /// Cluster version of the running plugin.
    pub plugin_version: u64,
    /// Highest applied log index.
    pub applied_index: u64,
    /// Asked to leave the cluster: must not be (re-)added.
    pub leaving: bool,
    /// Part of an initialized Raft cluster.
    pub initialized: bool,
    /// `--bootstrap-expect`, 0 when not set.
    pub bootstrap_expect: usize,
    /// The highest protocol level this node's binary supports.
    pub protocol_level: u32,
    /// Its newest applied-digest checkpoints: `index:hex` pairs, comma
    /// separated.
    pub checkpoints: String,
    /// The node name its certificate carries; empty without TLS (or from a
    /// binary that gossips none).
    pub node_name: String,
}

/// Another node as gossip sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Raft id.
    pub node_id: NodeId,
    /// Gossip address.
    pub gossip_addr: SocketAddr,
    /// Whether the failure detector thinks it is alive.
    pub alive: bool,
    /// Its generation (start time).
    pub generation: u64,
    /// What it announced.
    pub announcement: Announcement,
    /// clusterhost version it runs.
    pub version: String,
}

/// A running gossip member.
pub struct Discovery {
    handle: ChitchatHandle,
    node_id: NodeId,
    public_socket: sealed::PublicSocketWatch,
}

impl Discovery {
    /// Join the gossip network.
    pub async fn spawn(
        config: DiscoveryConfig,
        announcement: &Announcement,
    ) -> anyhow::Result<Self> {
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(
                config.node_id.to_string(),
                config.generation,
                config.advertise_addr,
            ),
            cluster_id: config.cluster_name.clone(),
            gossip_interval: GOSSIP_INTERVAL,
            listen_addr: config.listen_addr,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: GOSSIP_PHI_THRESHOLD,
                sampling_window_size: GOSSIP_FAILURE_DETECTOR_WINDOW,
                max_interval: GOSSIP_FAILURE_DETECTOR_MAX_INTERVAL,
                initial_interval: GOSSIP_INTERVAL,
                dead_node_grace_period: GOSSIP_DEAD_NODE_FORGET_AFTER,
            },
            marked_for_deletion_grace_period: GOSSIP_DEAD_NODE_FORGET_AFTER,
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V1,
        };
        let mut initial = vec![
            (keys::NODE_ID.to_string(), config.node_id.to_string()),
            (
                keys::VERSION.to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ];
        initial.extend(announcement_pairs(announcement));
        let public_socket = sealed::PublicSocketWatch::default();
        // Always through the relay, so every datagram is checked before
        // chitchat reads it (see `wire_check`), sealed or not.
        let transport: Box<dyn Transport> = Box::new(sealed::SealedTransport {
            keyring: config.keyring.clone(),
            counters: config.counters.clone(),
            public_socket: public_socket.clone(),
        });
        let handle = spawn_chitchat(chitchat_config, initial, transport.as_ref())
            .await
            .map_err(|error| {
                anyhow::anyhow!("cannot start gossip on {}: {error:#}", config.listen_addr)
            })?;
        Ok(Self {
            handle,
            node_id: config.node_id,
            public_socket,
        })
    }

    /// Update what this node announces.
    pub async fn announce(&self, announcement: &Announcement) {
        let chitchat = self.handle.chitchat();
        let mut chitchat = chitchat.lock().await;
        let state = chitchat.self_node_state();
        for (key, value) in announcement_pairs(announcement) {
            if state.get(&key) != Some(value.as_str()) {
                state.set(key, value);
            }
        }
    }

    /// Every node gossip knows of, except this one, one entry per node id.
    pub async fn peers(&self) -> BTreeMap<NodeId, Peer> {
        newest(self.candidates().await)
    }

    /// Every incarnation gossip knows of, except this node's: one node id
    /// may appear more than once (a restart, or another process claiming
    /// the id), for the caller to choose among.
    pub async fn candidates(&self) -> Vec<Peer> {
        let chitchat = self.handle.chitchat();
        let chitchat = chitchat.lock().await;
        let live: std::collections::HashSet<ChitchatId> = chitchat.live_nodes().cloned().collect();
        chitchat
            .node_states()
            .iter()
            .filter_map(|(chitchat_id, state)| {
                read_peer(chitchat_id, state, live.contains(chitchat_id))
            })
            .filter(|peer| peer.node_id != self.node_id)
            .filter(|peer| match unreachable_address(peer) {
                None => true,
                Some(address) => {
                    // Debug only: gossip is read every autopilot tick.
                    tracing::debug!(
                        node_id = peer.node_id,
                        %address,
                        "gossip member ignored: it advertises an address nobody can reach"
                    );
                    false
                }
            })
            .collect()
    }

    /// Tells when the gossip port is free again after shutdown.
    pub fn public_socket(&self) -> sealed::PublicSocketWatch {
        self.public_socket.clone()
    }

    /// Leave the gossip network.
    pub async fn shutdown(self) {
        if let Err(error) = self.handle.shutdown().await {
            tracing::warn!("gossip shutdown: {error:#}");
        }
    }
}

/// One peer per node id: the newest generation among `candidates`.
pub fn newest(candidates: impl IntoIterator<Item = Peer>) -> BTreeMap<NodeId, Peer> {
    let mut peers: BTreeMap<NodeId, Peer> = BTreeMap::new();
    for peer in candidates {
        let newer = peers
            .get(&peer.node_id)
            .is_none_or(|known| peer.generation > known.generation);
        if newer {
            peers.insert(peer.node_id, peer);
        }
    }
    peers
}

fn announcement_pairs(announcement: &Announcement) -> Vec<(String, String)> {
    vec![
        (keys::RPC_ADDR.to_string(), announcement.rpc_addr.clone()),
        (keys::ROLE.to_string(), announcement.role.clone()),
        (keys::READY.to_string(), announcement.ready.to_string()),
        (keys::PLUGIN.to_string(), announcement.plugin_digest.clone()),
        (
            keys::PLUGIN_VERSION.to_string(),
            announcement.plugin_version.to_string(),
        ),
        (
            keys::APPLIED.to_string(),
            announcement.applied_index.to_string(),
        ),
        (keys::LEAVING.to_string(), announcement.leaving.to_string()),
        (
            keys::INITIALIZED.to_string(),
            announcement.initialized.to_string(),
        ),
        (
            keys::BOOTSTRAP_EXPECT.to_string(),
            announcement.bootstrap_expect.to_string(),
        ),
        (
            keys::PROTOCOL_LEVEL.to_string(),
            announcement.protocol_level.to_string(),
        ),
        (
            keys::CHECKPOINTS.to_string(),
            announcement.checkpoints.clone(),
        ),
        (keys::NODE_NAME.to_string(), announcement.node_name.clone()),
    ]
}

/// Whether other nodes can send to `addr`: a particular host (not 0.0.0.0
/// or ::) and a port.
pub fn is_reachable(addr: SocketAddr) -> bool {
    !addr.ip().is_unspecified() && addr.port() != 0
}

/// The address `peer` advertises that nobody can reach, if any: its gossip
/// address or its gRPC address naming 0.0.0.0, :: or port 0. Dialing one
/// would reach the dialer itself (or nothing), so Raft traffic and
/// forwarded writes meant for the peer would go astray; such a member is
/// not used. A gRPC address given as a host name is left to the dialer.
pub fn unreachable_address(peer: &Peer) -> Option<String> {
    if !is_reachable(peer.gossip_addr) {
        return Some(peer.gossip_addr.to_string());
    }
    let rpc_addr = &peer.announcement.rpc_addr;
    match rpc_addr.parse::<SocketAddr>() {
        Ok(addr) if !is_reachable(addr) => Some(rpc_addr.clone()),
        _ => None,
    }
}

/// `value`, unless it holds a control character: a NUL in an address would
/// be recorded as an address and a name (see
/// [`crate::consensus::types::Member`]), others would forge log lines. Such
/// an entry is dropped at intake, like an incomplete one.
fn printable(value: &str) -> Option<&str> {
    crate::consensus::types::check_printable("gossip value", value)
        .ok()
        .map(|()| value)
}

/// Parse a peer from its gossip state; `None` for states that are not (yet)
/// complete, not from a clusterhost node, or hold control characters.
fn read_peer(chitchat_id: &ChitchatId, state: &NodeState, alive: bool) -> Option<Peer> {
    let node_id: NodeId = state.get(keys::NODE_ID)?.parse().ok()?;
    let flag = |key: &str| state.get(key) == Some("true");
    Some(Peer {
        node_id,
        gossip_addr: chitchat_id.gossip_advertise_addr,
        alive,
        generation: chitchat_id.generation_id,
        announcement: Announcement {
            rpc_addr: printable(state.get(keys::RPC_ADDR)?)?.to_string(),
            role: state.get(keys::ROLE).unwrap_or_default().to_string(),
            ready: flag(keys::READY),
            plugin_digest: state.get(keys::PLUGIN).unwrap_or_default().to_string(),
            plugin_version: state
                .get(keys::PLUGIN_VERSION)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0),
            applied_index: state
                .get(keys::APPLIED)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0),
            leaving: flag(keys::LEAVING),
            initialized: flag(keys::INITIALIZED),
            bootstrap_expect: state
                .get(keys::BOOTSTRAP_EXPECT)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0),
            protocol_level: state
                .get(keys::PROTOCOL_LEVEL)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0),
            checkpoints: state.get(keys::CHECKPOINTS).unwrap_or_default().to_string(),
            node_name: printable(state.get(keys::NODE_NAME).unwrap_or_default())?.to_string(),
        },
        version: state.get(keys::VERSION).unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::{Announcement, Peer, unreachable_address};

    fn peer_at(gossip_addr: &str, rpc_addr: &str) -> Peer {
        Peer {
            node_id: 2,
            gossip_addr: gossip_addr.parse().expect("address"),
            alive: true,
            generation: 1,
            announcement: Announcement {
                rpc_addr: rpc_addr.to_string(),
                ..Announcement::default()
            },
            version: String::new(),
        }
    }

    // Goal: a gossip member advertising 0.0.0.0, :: or port 0 (for gossip
    // or gRPC) is not usable; real addresses and host names are.
    #[test]
    fn members_advertising_unspecified_addresses_are_not_used() {
        for (gossip, rpc, unreachable) in [
            ("0.0.0.0:7401", "10.0.0.2:7400", Some("0.0.0.0:7401")),
            ("[::]:7401", "10.0.0.2:7400", Some("[::]:7401")),
            ("10.0.0.2:0", "10.0.0.2:7400", Some("10.0.0.2:0")),
            ("10.0.0.2:7401", "0.0.0.0:7400", Some("0.0.0.0:7400")),
            ("10.0.0.2:7401", "[::]:7400", Some("[::]:7400")),
            ("10.0.0.2:7401", "10.0.0.2:0", Some("10.0.0.2:0")),
            ("10.0.0.2:7401", "10.0.0.2:7400", None),
            ("10.0.0.2:7401", "n2.example:7400", None),
        ] {
            assert_eq!(
                unreachable_address(&peer_at(gossip, rpc)).as_deref(),
                unreachable,
                "{gossip} {rpc}"
            );
        }
    }

    // Goal: gossip values with a NUL or another control character are
    // dropped at intake; ordinary ones pass unchanged.
    #[test]
    fn control_characters_are_dropped_at_intake() {
        assert_eq!(super::printable("10.0.0.1:7400"), Some("10.0.0.1:7400"));
        assert_eq!(super::printable(""), Some(""));
        assert_eq!(super::printable("10.0.0.1:7400\u{0}n1"), None);
        assert_eq!(super::printable("n1\r\nforged"), None);
    }
}
