//! One clusterhost node: wires storage, the plugin runtime, Raft and the
//! gRPC server together, and takes them down again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::api::cluster_service::{ClusterService, now_ms, role_name};
use crate::api::forward::Forwarder;
use crate::api::proto;
use crate::api::raft_service::RaftService;
use crate::consensus::network::{AddressBook, PeerNetwork};
use crate::consensus::raft_config;
use crate::consensus::state_machine::{MachineStatus, StateMachineStore, install_body};
use crate::consensus::types::{Member, NodeId, Raft};
use crate::discovery::{Announcement, Discovery, DiscoveryConfig};
use crate::limits::{
    CLIENT_GRPC_MESSAGE_BYTES_MAX, CLIENT_REQUEST_TIMEOUT_MS, PRECOMPILE_QUEUE_DEPTH, PluginLimits,
    RAFT_GRPC_MESSAGE_BYTES_MAX,
};
use crate::membership::autopilot::{self, AutopilotConfig, SharedView};
use crate::membership::operations;
use crate::membership::reconcile::Policy;
use crate::plugin::{PluginDigest, PluginEngine, PluginHandle};
use crate::storage::data_dir::LAYOUT_VERSION;
use crate::storage::{DataDir, DataDirError, LogStore, NodeIdentity, SnapshotStore};

/// A voter that acknowledged a leader heartbeat within this window counts
/// as alive for `health`.
const HEALTH_CONTACT_WINDOW: Duration = Duration::from_secs(3);

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// The plugin to bootstrap a new cluster with.
    pub plugin: Option<PathBuf>,
    /// Initialize a new single-node cluster (first start only).
    pub bootstrap: bool,
    /// Form a cluster once this many nodes (started with the same flag) see
    /// each other; 0 = off.
    pub bootstrap_expect: usize,
    /// Gossip seed addresses of any existing nodes.
    pub join: Vec<String>,
    /// UDP address to gossip on.
    pub gossip_listen: SocketAddr,
    /// UDP address peers gossip to, when it differs from `gossip_listen`.
    pub gossip_advertise: Option<SocketAddr>,
    /// Nodes only gossip within the same cluster name.
    pub cluster_name: String,
    /// Membership policy (voter cap, stabilization, dead grace, minimum).
    pub policy: Policy,
    /// Address other nodes and clients use to reach this node's gRPC port;
    /// defaults to the listen address.
    pub advertise: Option<String>,
    /// Raft node id; generated and persisted when absent.
    pub node_id: Option<NodeId>,
    /// Entries between automatic snapshots.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot.
    pub log_entries_kept: u64,
    /// Bounds on every plugin call.
    pub plugin_limits: PluginLimits,
}

/// Why a node could not start. Each is reported before anything changes.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data dir could not be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The `--plugin` file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    PluginFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--plugin` file is not a valid plugin.
    #[error("{path} is not a valid plugin: {source}")]
    InvalidPlugin {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::plugin::LoadError,
    },
    /// Flags that contradict the data dir or each other.
    #[error("{0}")]
    Conflict(String),
    /// The Raft log could not be opened.
    #[error("cannot open the raft log at {path}: {reason}")]
    Log {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Anything else that stopped start-up.
    #[error("{0}")]
    Other(String),
}

impl StartError {
    fn other(context: &str, error: impl std::fmt::Display) -> Self {
        StartError::Other(format!("{context}: {error}"))
    }
}

/// Shared state the API services read.
pub struct NodeContext {
    /// This node's id.
    pub node_id: NodeId,
    /// Address others reach this node's gRPC port at.
    pub rpc_addr: String,
    /// Address peers gossip to.
    pub gossip_addr: SocketAddr,
    /// The Raft handle.
    pub raft: Raft,
    /// The plugin runtime.
    pub plugin: PluginHandle,
    /// The engine plugins are validated and compiled with.
    pub engine: PluginEngine,
    /// What the state machine publishes.
    pub machine: watch::Receiver<MachineStatus>,
    /// Set once the node was asked to leave the cluster.
    pub leaving: AtomicBool,
    /// Wakes the membership loop to gossip this node's state at once.
    pub announce_now: tokio::sync::Notify,
    /// Connections to the leader, for forwarded requests.
    pub forwarder: Forwarder,
    /// The latest gossip view and membership holds.
    pub view: SharedView,
    /// Where gossip says peers are, for Raft RPCs.
    pub addresses: AddressBook,
    /// The plugin to deploy if this node leads a cluster that has none yet
    /// (`--bootstrap-expect`).
    pub pending_plugin: Option<Vec<u8>>,
    stop: watch::Sender<bool>,
}

impl NodeContext {
    /// Ask the node to stop (after `leave`).
    pub fn request_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Every node known from Raft membership and gossip.
    pub fn members(&self) -> proto::MembersResponse {
        let metrics = crate::consensus::current_metrics(&self.raft);
        let view = self.view.get();
        let machine = self.machine.borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let heartbeats = metrics.heartbeat.clone().unwrap_or_default();
        let now = <openraft::TokioInstant as openraft::Instant>::now();
        let mut ids: Vec<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        ids.extend(view.peers.keys().copied());
        ids.push(self.node_id);
        ids.sort_unstable();
        ids.dedup();
        let members = ids
            .into_iter()
            .map(|id| {
                let member = membership.get_node(&id);
                let peer = view.peers.get(&id);
                let raft_role = if metrics.current_leader == Some(id) {
                    "leader"
                } else if voters.contains(&id) {
                    "follower"
                } else if member.is_some() {
                    "learner"
                } else {
                    "none"
                };
                let is_self = id == self.node_id;
                let liveness = match (is_self, peer) {
                    (true, _) => "alive",
                    (false, Some(peer)) if peer.alive => "alive",
                    (false, Some(_)) => "dead",
                    (false, None) => "unknown",
                };
                let last_contact_ms = heartbeats.get(&id).cloned().flatten().map(|at| {
                    openraft::Instant::saturating_duration_since(&now, *at).as_millis() as u64
                });
                proto::MemberInfo {
                    id,
                    rpc_addr: member
                        .map(|member| member.rpc_addr.clone())
                        .or_else(|| peer.map(|peer| peer.announcement.rpc_addr.clone()))
                        .unwrap_or_default(),
                    gossip_addr: if is_self {
                        self.gossip_addr.to_string()
                    } else {
                        peer.map(|peer| peer.gossip_addr.to_string())
                            .unwrap_or_default()
                    },
                    raft_role: raft_role.to_string(),
                    liveness: liveness.to_string(),
                    last_contact_ms,
                    applied_index: if is_self {
                        metrics
                            .last_applied
                            .as_ref()
                            .map_or(0, |log_id| log_id.index)
                    } else {
                        peer.map_or(0, |peer| peer.announcement.applied_index)
                    },
                    plugin_digest: if is_self {
                        machine.plugin_digest.clone().unwrap_or_default()
                    } else {
                        peer.map(|peer| peer.announcement.plugin_digest.clone())
                            .unwrap_or_default()
                    },
                    leaving: if is_self {
                        self.leaving.load(Ordering::SeqCst)
                    } else {
                        peer.is_some_and(|peer| peer.announcement.leaving)
                    },
                }
            })
            .collect();
        proto::MembersResponse {
            members,
            holding: view.holding,
        }
    }

    /// Whether the cluster can take writes, as this node sees it.
    fn health(
        &self,
        metrics: &openraft::RaftMetrics<crate::consensus::types::TypeConfig>,
    ) -> String {
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if voters.is_empty() {
            return "not initialized: waiting to be added to a cluster".to_string();
        }
        let view = self.view.get();
        // Raft's own evidence counts as well as gossip's, which lags on a
        // node that just started: the leader this node follows, and (on the
        // leader) voters that acknowledged a heartbeat recently.
        let heartbeats = metrics.heartbeat.clone().unwrap_or_default();
        let now = <openraft::TokioInstant as openraft::Instant>::now();
        let heard_recently = |id: &NodeId| {
            heartbeats.get(id).cloned().flatten().is_some_and(|at| {
                openraft::Instant::saturating_duration_since(&now, *at) < HEALTH_CONTACT_WINDOW
            })
        };
        let alive = voters
            .iter()
            .filter(|id| {
                **id == self.node_id
                    || metrics.current_leader == Some(**id)
                    || heard_recently(id)
                    || view.peers.get(id).is_some_and(|peer| peer.alive)
            })
            .count();
        let quorum = voters.len() / 2 + 1;
        // A leader that lost its quorum still calls itself leader: check
        // the quorum first.
        if alive < quorum {
            return format!(
                "unavailable: no quorum ({alive} of {} voters alive, {quorum} needed)",
                voters.len()
            );
        }
        if metrics.current_leader.is_none() {
            return "unavailable: electing a leader".to_string();
        }
        if let Some(holding) = view.holding.first() {
            return format!("ok ({holding})");
        }
        "ok".to_string()
    }

    /// This node's status, as the API reports it.
    pub fn status(&self) -> proto::StatusResponse {
        let metrics = crate::consensus::current_metrics(&self.raft);
        let machine = self.machine.borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, member)| proto::Member {
                id: *id,
                rpc_addr: member.rpc_addr.clone(),
                suffrage: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .to_string(),
            })
            .collect();
        let leader_addr = metrics
            .current_leader
            .and_then(|leader| {
                membership
                    .get_node(&leader)
                    .map(|member| member.rpc_addr.clone())
            })
            .unwrap_or_default();
        let role = if metrics.state == ServerState::Follower && !voters.contains(&self.node_id) {
            ServerState::Learner
        } else {
            metrics.state
        };
        proto::StatusResponse {
            node_id: self.node_id,
            rpc_addr: self.rpc_addr.clone(),
            role: role_name(role).to_string(),
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            leader_addr,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            commit_index: metrics
                .local_committed
                .as_ref()
                .map_or(0, |log_id| log_id.index),
            applied_index: metrics
                .last_applied
                .as_ref()
                .map_or(0, |log_id| log_id.index),
            snapshot_index: metrics.snapshot.as_ref().map(|log_id| log_id.index),
            snapshot_size_bytes: machine.snapshot_size_bytes.unwrap_or(0),
            purged_index: metrics.purged.as_ref().map_or(0, |log_id| log_id.index),
            plugin_digest: machine.plugin_digest.unwrap_or_default(),
            plugin_size_bytes: machine.plugin_size_bytes as u64,
            members,
            version: env!("CARGO_PKG_VERSION").to_string(),
            health: self.health(&metrics),
            cluster_version: machine.history.cluster_version,
        }
    }
}

/// The task serving gRPC; it ends when the server stops.
type ServerTask = JoinHandle<Result<(), tonic::transport::Error>>;

/// A running node. Dropping it does not stop it; call [`NodeHandle::shutdown`].
pub struct NodeHandle {
    context: Arc<NodeContext>,
    server: ServerTask,
    stop_server: oneshot::Sender<()>,
    discovery: Arc<Discovery>,
    autopilot: JoinHandle<()>,
    stop_requested: watch::Receiver<bool>,
}

impl NodeHandle {
    /// The node's shared context.
    pub fn context(&self) -> &Arc<NodeContext> {
        &self.context
    }

    /// Stop gracefully: hand leadership over if leading, then stop the
    /// membership loop, gossip, serving and Raft.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        operations::step_down(&self.context.raft, self.context.node_id).await;
        self.context.request_stop();
        let _ = self.autopilot.await;
        if let Ok(discovery) = Arc::try_unwrap(self.discovery) {
            discovery.shutdown().await;
        }
        let _ = self.stop_server.send(());
        if let Err(error) = self.context.raft.shutdown().await {
            tracing::warn!("raft shutdown: {error}");
        }
        self.server.await??;
        tracing::info!("node stopped");
        Ok(())
    }

    /// Serve until `signal` fires or the node is asked to stop (`leave`),
    /// then shut down gracefully.
    pub async fn serve_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let stop_requested = self.stop_requested.clone();
        tokio::select! {
            () = signal => tracing::info!("shutdown requested"),
            () = wait_true(stop_requested) => tracing::info!("stopping after leaving the cluster"),
        }
        self.shutdown().await
    }
}

async fn wait_true(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|value| *value).await;
}

/// Start a node serving gRPC on `listener`.
pub async fn start(config: NodeConfig, listener: TcpListener) -> Result<NodeHandle, StartError> {
    let data_dir = DataDir::open(&config.data_dir)?;
    let engine = PluginEngine::new(Some(data_dir.compiled_dir()))
        .map_err(|error| StartError::other("cannot configure the plugin engine", error))?;

    // Every check that can refuse the flags runs before anything is written.
    let bootstrap_plugin = match &config.plugin {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| StartError::PluginFile {
                path: path.clone(),
                source,
            })?;
            let loaded = engine.load_off_thread(bytes).await;
            Some(loaded.map_err(|source| StartError::InvalidPlugin {
                path: path.clone(),
                source,
            })?)
        }
        None => None,
    };
    let existing = data_dir.identity()?;
    let identity = decide_identity(
        &config,
        existing.as_ref(),
        bootstrap_plugin.as_ref().map(|code| code.digest()),
    )?;

    let listen_addr = listener
        .local_addr()
        .map_err(|error| StartError::other("listener", error))?;
    // Gossip's UDP port is bound before anything is written, so a busy port
    // is refused cleanly.
    std::net::UdpSocket::bind(config.gossip_listen).map_err(|error| {
        StartError::Other(format!(
            "cannot gossip on {}: {error}",
            config.gossip_listen
        ))
    })?;
    let rpc_addr = config
        .advertise
        .clone()
        .unwrap_or_else(|| listen_addr.to_string());
    let node_id = identity.node_id;

    let log_path = data_dir.log_path();
    let log_store = LogStore::open(&log_path).map_err(|error| StartError::Log {
        path: log_path.clone(),
        reason: match error {
            redb::Error::DatabaseAlreadyOpen => {
                "another clusterhost process is using this data dir".to_string()
            }
            other => other.to_string(),
        },
    })?;
    data_dir.write_identity(&identity)?;
    let log_store = log_store.with_precompile(spawn_precompiler(
        engine.clone(),
        tracing::info_span!("node", id = node_id),
    ));

    let snapshots = SnapshotStore::open(&data_dir.snapshot_dir())
        .map_err(|error| StartError::other("snapshot dir", error))?;
    let restored = snapshots
        .load()
        .map_err(|error| StartError::other("cannot read the newest snapshot", error))?;
    let plugin = PluginHandle::spawn(None, config.plugin_limits, node_id.to_string())
        .map_err(|error| StartError::other("cannot start the plugin worker", error))?;
    if let Some(snapshot) = &restored {
        install_body(&engine, &plugin, &snapshot.body)
            .await
            .map_err(|error| StartError::other("cannot restore the newest snapshot", error))?;
    }
    let state_machine =
        StateMachineStore::new(plugin.clone(), engine.clone(), snapshots, restored.as_ref());
    let machine = state_machine.status();

    let raft_config = raft_config(config.snapshot_every_entries, config.log_entries_kept)
        .map_err(|error| StartError::other("raft configuration", error))?;
    let addresses = AddressBook::default();
    let raft = Raft::new(
        node_id,
        raft_config,
        PeerNetwork::new(addresses.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|error| StartError::other("cannot start raft", error))?;

    let (stop, stop_requested) = watch::channel(false);
    let gossip_addr = config.gossip_advertise.unwrap_or(config.gossip_listen);
    let context = Arc::new(NodeContext {
        node_id,
        rpc_addr: rpc_addr.clone(),
        gossip_addr,
        raft: raft.clone(),
        plugin,
        engine: engine.clone(),
        machine,
        leaving: AtomicBool::new(false),
        announce_now: tokio::sync::Notify::new(),
        forwarder: Forwarder::default(),
        view: SharedView::default(),
        addresses,
        pending_plugin: bootstrap_plugin
            .as_ref()
            .filter(|_| config.bootstrap_expect > 0)
            .map(|code| code.bytes().to_vec()),
        stop,
    });
    // Everything this node spawns logs inside a span carrying its id.
    let span = tracing::info_span!("node", id = node_id);
    let (stop_server, server) = serve(context.clone(), listener, span.clone())?;
    let discovery = Discovery::spawn(
        DiscoveryConfig {
            node_id,
            listen_addr: config.gossip_listen,
            advertise_addr: gossip_addr,
            seeds: config.join.clone(),
            cluster_name: config.cluster_name.clone(),
            generation: now_ms(),
        },
        &Announcement {
            rpc_addr: rpc_addr.clone(),
            bootstrap_expect: config.bootstrap_expect,
            ..Announcement::default()
        },
    )
    .await
    .map_err(|error| StartError::other("gossip", error))?;
    let discovery = Arc::new(discovery);
    let autopilot = tokio::spawn(
        autopilot::run(
            context.clone(),
            discovery.clone(),
            context.view.clone(),
            AutopilotConfig {
                policy: config.policy,
                bootstrap_expect: config.bootstrap_expect,
            },
            stop_requested.clone(),
        )
        .instrument(span.clone()),
    );
    tracing::info!(node_id, %listen_addr, rpc_addr = %rpc_addr, gossip = %gossip_addr, "node started");

    let handle = NodeHandle {
        context: context.clone(),
        server,
        stop_server,
        discovery,
        autopilot,
        stop_requested,
    };
    if let Some(code) = bootstrap_plugin
        && config.bootstrap
    {
        bootstrap(&context, code.bytes().to_vec()).await?;
        data_dir.write_identity(&NodeIdentity {
            bootstrapped: true,
            ..identity
        })?;
    }
    Ok(handle)
}

/// Check the flags against what the data dir remembers, and decide this
/// node's identity. Pure: no I/O.
pub fn decide_identity(
    config: &NodeConfig,
    existing: Option<&NodeIdentity>,
    plugin_digest: Option<PluginDigest>,
) -> Result<NodeIdentity, StartError> {
    let plugin_hex = plugin_digest.map(|digest| digest.to_hex());
    if config.bootstrap && config.bootstrap_expect > 0 {
        return Err(StartError::Conflict(
            "--bootstrap and --bootstrap-expect exclude each other".to_string(),
        ));
    }
    if config.bootstrap && !config.join.is_empty() {
        return Err(StartError::Conflict(
            "--bootstrap creates a new cluster; --join joins an existing one: use one".to_string(),
        ));
    }
    match existing {
        None => {
            if config.bootstrap && plugin_digest.is_none() {
                return Err(StartError::Conflict(
                    "--bootstrap needs --plugin: a new cluster is defined by its plugin"
                        .to_string(),
                ));
            }
            if config.bootstrap_expect > 0 && plugin_digest.is_none() {
                return Err(StartError::Conflict(
                    "--bootstrap-expect needs --plugin: whichever node leads the new cluster deploys it".to_string(),
                ));
            }
            if !config.bootstrap && config.bootstrap_expect == 0 && plugin_digest.is_some() {
                return Err(StartError::Conflict(
                    "--plugin is only used to create a cluster (--bootstrap or --bootstrap-expect); \
                     nodes that join get the plugin from the cluster"
                        .to_string(),
                ));
            }
            Ok(NodeIdentity {
                layout_version: LAYOUT_VERSION,
                node_id: config.node_id.unwrap_or_else(random_node_id),
                bootstrapped: false,
                plugin_digest: plugin_hex,
            })
        }
        Some(identity) => {
            if let Some(requested) = config.node_id
                && requested != identity.node_id
            {
                return Err(StartError::Conflict(format!(
                    "--node-id {requested} does not match this data dir, which belongs to node {}",
                    identity.node_id
                )));
            }
            if config.bootstrap && identity.bootstrapped {
                return Err(StartError::Conflict(format!(
                    "this data dir already bootstrapped a cluster (node {}); start it without --bootstrap to resume",
                    identity.node_id
                )));
            }
            if let (Some(requested), Some(recorded)) = (&plugin_hex, &identity.plugin_digest)
                && requested != recorded
            {
                return Err(StartError::Conflict(format!(
                    "this data dir belongs to a cluster running plugin {}, not {}; start it without --plugin \
                     (use a new --data-dir for a new cluster)",
                    &recorded[..12],
                    &requested[..12]
                )));
            }
            Ok(NodeIdentity {
                plugin_digest: identity.plugin_digest.clone().or(plugin_hex),
                ..identity.clone()
            })
        }
    }
}

fn random_node_id() -> NodeId {
    // Node ids only need to be unique within a cluster; the OS entropy behind
    // RandomState is plenty, and keeps ids readable as positive numbers.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    (hasher.finish() >> 12).max(1)
}

/// Initialize a single-node cluster and deploy its plugin through the log.
async fn bootstrap(context: &NodeContext, plugin: Vec<u8>) -> Result<(), StartError> {
    let raft = &context.raft;
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|error| StartError::other("raft", error))?;
    if !initialized {
        let members = BTreeMap::from([(
            context.node_id,
            Member {
                rpc_addr: context.rpc_addr.clone(),
            },
        )]);
        raft.initialize(members)
            .await
            .map_err(|error| StartError::other("cannot initialize the cluster", error))?;
    }
    raft.wait(Some(Duration::from_millis(CLIENT_REQUEST_TIMEOUT_MS)))
        .state(ServerState::Leader, "bootstrap leader")
        .await
        .map_err(|error| StartError::other("did not become leader", error))?;
    if context.machine.borrow().plugin_digest.is_some() {
        return Ok(());
    }
    match crate::deploy::propose(raft, plugin).await {
        Ok(receipt) => {
            tracing::info!(digest = %receipt.digest, version = receipt.version, "cluster bootstrapped");
            Ok(())
        }
        Err(error) => Err(StartError::other("cannot deploy the plugin", error)),
    }
}

/// Compile plugins from deploy entries as they arrive (filling the on-disk
/// cache), off the apply path.
fn spawn_precompiler(
    engine: PluginEngine,
    span: tracing::Span,
) -> tokio::sync::mpsc::Sender<Vec<u8>> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(PRECOMPILE_QUEUE_DEPTH);
    tokio::spawn(
        async move {
            while let Some(plugin) = receiver.recv().await {
                if let Err(error) = engine.load_off_thread(plugin).await {
                    tracing::warn!("a deployed plugin does not load on this node: {error}");
                }
            }
        }
        .instrument(span),
    );
    sender
}

/// Serve both gRPC services and reflection on `listener`.
fn serve(
    context: Arc<NodeContext>,
    listener: TcpListener,
    span: tracing::Span,
) -> Result<(oneshot::Sender<()>, ServerTask), StartError> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| StartError::other("reflection", error))?;
    let cluster = proto::cluster_server::ClusterServer::new(ClusterService::new(context.clone()))
        .max_decoding_message_size(CLIENT_GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_GRPC_MESSAGE_BYTES_MAX);
    let raft = proto::raft_server::RaftServer::new(RaftService::new(context))
        .max_decoding_message_size(RAFT_GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_GRPC_MESSAGE_BYTES_MAX);
    let (stop, stopped) = oneshot::channel::<()>();
    // Replies are small and latency-bound: no Nagle delay on any connection.
    // (tonic's own `tcp_nodelay` only covers listeners it binds itself.)
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(cluster)
            .add_service(raft)
            .add_service(reflection)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .instrument(span),
    );
    Ok((stop, server))
}

/// Bind the gRPC listener, with a clear error when the port is taken.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Other(format!("cannot listen on {addr}: {error}")))
}
