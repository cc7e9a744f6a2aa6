//! One clusterhost node: wiring storage, the plugin runtime, Raft, gossip,
//! the membership autopilot and the gRPC server together, and taking them
//! down again. Decisions live elsewhere; this is the order things start in.
//!
//! - [`config`]: what a node is started with, and its validation.
//! - [`identity`]: the node's identity from flags and data dir (pure).
//! - [`NodeHandle`]: a running node, and its orderly shutdown.
//! - [`restore`]: a new data dir seeded from a backup file.

pub mod config;
mod first_start;
mod handle;
pub mod identity;
pub mod restore;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::Instrument;

pub use config::NodeConfig;
pub use handle::NodeHandle;
pub use identity::decide_identity;

use crate::api::ClusterService;
use crate::api::forwarder::Forwarder;
use crate::api::leader::LeaderRunner;
use crate::api::server::{ServeOptions, serve};
use crate::api::writes::Writer;
use crate::consensus::settings::{ClusterSettings, PROTOCOL_LEVEL_SIGNERS, SettingsChange};
use crate::consensus::snapshot::Snapshots;
use crate::consensus::trusted_signers::{self, TrustedSigners};
use crate::consensus::{
    self, AddressBook, Consensus, ConsensusConfig, LogStore, MachineStatus, NodeId,
    StateMachineStore,
};
use crate::discovery::{Announcement, DatagramCounters, Discovery, DiscoveryConfig};
use crate::limits::{LOG_RELEASE_TIMEOUT, PRECOMPILE_QUEUE_DEPTH};
use crate::membership::LocalMember;
use crate::membership::autopilot::{Autopilot, AutopilotConfig, SharedView};
use crate::membership::bindings_file::BINDINGS_FILE_NAME;
use crate::metrics::Metrics;
use crate::ops::status::RateHistory;
use crate::ops::{self, OpsHandle, OpsSources};
use crate::plugin::cache::{ArtifactCache, CacheKey};
use crate::plugin::{Machine, NativeMachine, PluginCode, PluginDigest, PluginEngine, PluginHandle};
use crate::storage::{DataDir, DataDirError, LogRelease, NodeIdentity};
use first_start::{bootstrap, load_bootstrap_plugin};

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
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--plugin` file is not a valid plugin.
    #[error("{path} is not a valid plugin: {source}")]
    InvalidPlugin {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: crate::plugin::LoadError,
    },
    /// Flags that contradict the data dir or each other.
    #[error("{0}")]
    Conflict(String),
    /// A port beyond loopback without TLS or a gossip key, and no
    /// `--insecure`.
    #[error("{0}")]
    Exposure(String),
    /// The Raft log could not be opened.
    #[error("cannot open the raft log at {path}: {reason}")]
    Log {
        /// The file.
        path: std::path::PathBuf,
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

/// Start a node serving gRPC on `listener`.
pub async fn start(config: NodeConfig, listener: TcpListener) -> Result<NodeHandle, StartError> {
    start_with(config, listener, None).await
}

/// Start a node serving gRPC on `listener`, running `native` instead of
/// plugins when given (a program embedding clusterhost).
pub async fn start_with(
    config: NodeConfig,
    listener: TcpListener,
    native: Option<NativeMachine>,
) -> Result<NodeHandle, StartError> {
    config.validate().map_err(StartError::Conflict)?;
    check_native(&config, native.as_ref())?;
    let data_dir = DataDir::open(&config.data_dir)?;
    let engine = PluginEngine::new(Some(compiled_cache(&config, &data_dir)?))
        .map_err(|error| StartError::other("cannot configure the plugin engine", error))?;
    // Every check that can refuse the flags runs before anything is written.
    let bootstrap_plugin = load_bootstrap_plugin(&config, &engine).await?;
    // A native machine defines a new cluster as a plugin would.
    let defining_digest = match &native {
        Some(machine) if config.bootstrap => Some(PluginDigest::of(&machine.code())),
        _ => bootstrap_plugin.as_ref().map(PluginCode::digest),
    };
    let identity = decide_identity(
        &config,
        data_dir.identity()?.as_ref(),
        defining_digest,
        random_node_id,
    )
    .map_err(StartError::Conflict)?;
    let rpc_addr = rpc_addr(&config, &listener)?;
    // Gossip's UDP port is bound before anything is written, so a busy port
    // is refused cleanly.
    std::net::UdpSocket::bind(config.gossip_listen).map_err(|error| {
        StartError::Other(format!(
            "cannot gossip on {}: {error}",
            config.gossip_listen
        ))
    })?;
    let ops_listener = match config.metrics_listen {
        Some(addr) => Some(
            crate::ops::bind(addr, config.tls.as_ref())
                .await
                .map_err(StartError::Other)?,
        ),
        None => None,
    };
    // Everything this node spawns logs inside a span carrying its id.
    let span = tracing::info_span!("node", id = identity.node_id);
    let wiring = Wiring {
        config,
        data_dir,
        engine,
        identity,
        rpc_addr,
        // Recorded only when the ops listener can serve them.
        metrics: if ops_listener.is_some() {
            Metrics::new()
        } else {
            Metrics::off()
        },
        gossip_counters: DatagramCounters::default(),
    };
    wiring
        .start(listener, ops_listener, bootstrap_plugin, native)
        .instrument(span)
        .await
}

/// The compiled-plugin cache in the data dir, its key derived from this
/// node's TLS private key (kept outside the data dir) or, without TLS,
/// random for this process only (see [`crate::plugin::cache`]).
fn compiled_cache(config: &NodeConfig, data_dir: &DataDir) -> Result<ArtifactCache, StartError> {
    let key = match &config.tls {
        Some(tls) => CacheKey::derived_from(&tls.key_pem),
        None => CacheKey::random().map_err(|error| StartError::other("plugin cache", error))?,
    };
    ArtifactCache::open(&data_dir.compiled_dir(), key)
        .map_err(|error| StartError::other("cannot open the compiled-plugin cache", error))
}

/// Stop the ops listener of a start that failed, if it was started.
async fn stop_ops(ops: Option<OpsHandle>) {
    if let Some(ops) = ops {
        ops.shutdown().await;
    }
}

/// A native machine replaces plugins entirely, and only a single node
/// bootstraps it (with `bootstrap-expect`, the first leader would deploy a
/// plugin).
fn check_native(config: &NodeConfig, native: Option<&NativeMachine>) -> Result<(), StartError> {
    let Some(machine) = native else {
        return Ok(());
    };
    if config.plugin.is_some() {
        return Err(StartError::Conflict(format!(
            "this node runs the native state machine {}: it takes no plugin file",
            machine.name()
        )));
    }
    if config.bootstrap_expect > 0 {
        return Err(StartError::Conflict(
            "a native state machine starts a cluster with bootstrap on one node, not bootstrap-expect"
                .to_string(),
        ));
    }
    Ok(())
}

/// What start-up has decided and opened so far.
struct Wiring {
    config: NodeConfig,
    data_dir: DataDir,
    engine: PluginEngine,
    identity: NodeIdentity,
    rpc_addr: String,
    metrics: Metrics,
    /// Counted by the gossip transport, read by the ops listener (which
    /// starts first).
    gossip_counters: DatagramCounters,
}

/// The replicated core of a node: Raft, the state machine it drives and the
/// plugin worker under it.
struct Core {
    consensus: Consensus,
    machine: tokio::sync::watch::Receiver<MachineStatus>,
    plugin: PluginHandle,
    snapshots: Snapshots,
    stop_checkpoint: consensus::StopCheckpoint,
}

impl Wiring {
    async fn start(
        self,
        listener: TcpListener,
        ops_listener: Option<ops::OpsListener>,
        bootstrap_plugin: Option<PluginCode>,
        native: Option<NativeMachine>,
    ) -> Result<NodeHandle, StartError> {
        let log = self.open_log()?;
        let log_released = log.release_watch();
        self.data_dir.write_identity(&self.identity)?;
        let native_code = native.as_ref().map(NativeMachine::code);
        let core = self.start_consensus(log, native).await?;
        let consensus = core.consensus.clone();
        let started = self
            .serve(
                core,
                listener,
                ops_listener,
                bootstrap_plugin,
                native_code,
                log_released.clone(),
            )
            .await;
        if started.is_err() {
            // A start that failed half way leaves nothing running: Raft
            // stops and lets go of the log, so an embedder can start a node
            // on this data dir again in the same process.
            consensus.shutdown().await;
            drop(consensus);
            if !handle::wait_for_condition(LOG_RELEASE_TIMEOUT, || log_released.is_released()).await
            {
                tracing::warn!("the raft log was still open after a failed start");
            }
        }
        started
    }

    /// Serve the API, join gossip, keep membership in step and bootstrap
    /// the first plugin, on top of a running `core`. What this started is
    /// stopped again when a later step fails; the caller stops `core`.
    async fn serve(
        &self,
        core: Core,
        listener: TcpListener,
        ops_listener: Option<ops::OpsListener>,
        bootstrap_plugin: Option<PluginCode>,
        native_code: Option<Arc<[u8]>>,
        log_released: LogRelease,
    ) -> Result<NodeHandle, StartError> {
        let node_id = self.identity.node_id;
        let gossip_addr = self
            .config
            .gossip_advertise
            .unwrap_or(self.config.gossip_listen);
        let local = Arc::new(LocalMember::new(
            node_id,
            self.rpc_addr.clone(),
            gossip_addr,
        ));
        let view = SharedView::default();
        let ops = ops_listener.map(|listener| self.start_ops(listener, &local, &core, &view));
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        let options = ServeOptions {
            tls: self.config.tls.clone(),
            reflection: self.config.reflection,
        };
        let service = self.cluster_service(&local, &core, &view);
        // Dropping `stop_server` on a failure below stops the server.
        let started = async {
            let server = serve(listener, service, &core.consensus, &options, async {
                let _ = server_stopped.await;
            })
            .map_err(StartError::Other)?;
            let discovery = self.start_gossip(node_id, gossip_addr).await?;
            Ok((server, Arc::new(discovery)))
        };
        let (server, discovery) = match started.await {
            Ok(started) => started,
            Err(error) => {
                stop_ops(ops).await;
                return Err(error);
            }
        };
        let autopilot = self.spawn_autopilot(&local, &core, &discovery, view, &bootstrap_plugin);
        tracing::info!(node_id, rpc_addr = %self.rpc_addr, gossip = %gossip_addr, "node started");
        let first_plugin = bootstrap_plugin
            .as_ref()
            .map(|code| code.bytes().to_vec())
            .or(native_code.map(|code| code.to_vec()));
        if let Err(error) = self.bootstrap_first_plugin(&core, first_plugin).await {
            local.request_stop();
            let _ = autopilot.await;
            stop_ops(ops).await;
            return Err(error);
        }
        Ok(NodeHandle {
            local,
            consensus: core.consensus,
            server,
            stop_server,
            discovery,
            autopilot,
            ops,
            stop_checkpoint: core.stop_checkpoint,
            log_released,
        })
    }

    /// The public gRPC API, with what it serves from.
    fn cluster_service(
        &self,
        local: &Arc<LocalMember>,
        core: &Core,
        view: &SharedView,
    ) -> ClusterService {
        let leader = Arc::new(LeaderRunner::new(core.consensus.clone()));
        let writer = Writer {
            node_id: local.node_id,
            consensus: core.consensus.clone(),
            leader: leader.clone(),
            forwarder: Arc::new(Forwarder::new(local.node_id)),
            plugin: core.plugin.clone(),
            machine: core.machine.clone(),
        };
        ClusterService {
            local: local.clone(),
            consensus: core.consensus.clone(),
            leader,
            writer,
            plugin: core.plugin.clone(),
            engine: self.engine.clone(),
            machine: core.machine.clone(),
            view: view.clone(),
            snapshots: core.snapshots.clone(),
            flag_signers: self.config.plugin_signers.clone(),
            uploads: Arc::new(tokio::sync::Semaphore::new(
                crate::limits::DEPLOY_UPLOADS_MAX,
            )),
        }
    }

    /// Keep Raft membership in step with gossip, in the background.
    fn spawn_autopilot(
        &self,
        local: &Arc<LocalMember>,
        core: &Core,
        discovery: &Arc<Discovery>,
        view: SharedView,
        bootstrap_plugin: &Option<PluginCode>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(
            Autopilot {
                local: local.clone(),
                consensus: core.consensus.clone(),
                discovery: discovery.clone(),
                machine: core.machine.clone(),
                view,
                config: self.autopilot_config(bootstrap_plugin.as_ref()),
                bindings_file: self.data_dir.root().join(BINDINGS_FILE_NAME),
            }
            .run()
            .in_current_span(),
        )
    }

    /// A new cluster starts with its plugin, or a native machine's marker,
    /// deployed through the log, so every node learns what it runs.
    async fn bootstrap_first_plugin(
        &self,
        core: &Core,
        first_plugin: Option<Vec<u8>>,
    ) -> Result<(), StartError> {
        let Some(first_plugin) = first_plugin.filter(|_| self.config.bootstrap) else {
            return Ok(());
        };
        bootstrap(
            &core.consensus,
            &core.machine,
            &self.rpc_addr,
            first_plugin,
            self.first_settings(),
        )
        .await?;
        self.data_dir.write_identity(&NodeIdentity {
            bootstrapped: true,
            ..self.identity.clone()
        })?;
        Ok(())
    }

    /// Serve metrics, health checks and the status page on `listener`.
    fn start_ops(
        &self,
        listener: ops::OpsListener,
        local: &Arc<LocalMember>,
        core: &Core,
        view: &SharedView,
    ) -> OpsHandle {
        ops::spawn(
            listener,
            OpsSources {
                local: local.clone(),
                consensus: core.consensus.clone(),
                machine: core.machine.clone(),
                view: view.clone(),
                data_dir: self.config.data_dir.clone(),
                metrics: self.metrics.clone(),
                plugin: core.plugin.clone(),
                rates: RateHistory::default(),
                gossip: self.gossip_counters.clone(),
                plugin_output: self.engine.output_gate().clone(),
            },
        )
    }

    /// The settings a new cluster starts with, from this node's flags.
    fn first_settings(&self) -> SettingsChange {
        let settings = ClusterSettings {
            protocol_level: self.config.protocol_level,
            ..ClusterSettings::from_flags(&self.config.plugin_limits)
        };
        // Below the signers' level the cluster holds none: the flag then
        // checks this node's deploys only, as before the setting existed.
        let signers = match settings.protocol_level {
            level if level < PROTOCOL_LEVEL_SIGNERS => TrustedSigners::default(),
            _ => self.config.plugin_signers.clone().unwrap_or_default(),
        };
        trusted_signers::initial_change(settings, signers)
    }

    fn autopilot_config(&self, bootstrap_plugin: Option<&PluginCode>) -> AutopilotConfig {
        AutopilotConfig {
            policy: self.config.policy,
            bootstrap_expect: self.config.bootstrap_expect,
            // A `--bootstrap-expect` cluster has no plugin until its first
            // leader deploys the one it was started with.
            first_plugin: bootstrap_plugin
                .filter(|_| self.config.bootstrap_expect > 0)
                .map(|code| code.bytes().to_vec()),
            first_settings: self.first_settings(),
            flagged_settings: self.config.flagged_settings.clone(),
            flag_signers: self.config.plugin_signers.clone(),
        }
    }

    fn open_log(&self) -> Result<LogStore, StartError> {
        let path = self.data_dir.log_path();
        let log = LogStore::open_recording(&path, self.metrics.clone()).map_err(|error| {
            StartError::Log {
                path: path.clone(),
                reason: error.to_string(),
            }
        })?;
        Ok(log.with_precompile(spawn_precompiler(self.engine.clone())))
    }

    async fn start_consensus(
        &self,
        log: LogStore,
        native: Option<NativeMachine>,
    ) -> Result<Core, StartError> {
        let node_id = self.identity.node_id;
        let native_code = native.as_ref().map(NativeMachine::code);
        let running = native.map(Machine::Native);
        // The plugin store's state file lives beside the Raft log; the
        // machine resumes from it if it can. Fresh files a crash left
        // behind were never in use.
        let store_dir = self.data_dir.root().to_path_buf();
        crate::plugin::store::StateFile::remove_stale(&store_dir);
        let plugin = PluginHandle::spawn_recording(
            running,
            self.config.plugin_limits,
            node_id.to_string(),
            self.metrics.clone(),
            Some(store_dir.clone()),
        )
        .map_err(|error| StartError::other("cannot start the plugin worker", error))?;
        let snapshots = Snapshots::open(&self.data_dir.snapshot_dir())
            .map_err(|error| StartError::other("snapshot dir", error))?;
        let durable = consensus::DurableStore {
            dir: store_dir,
            log: log.clone(),
        };
        let mut machine = StateMachineStore::open_with(
            plugin.clone(),
            self.engine.clone(),
            snapshots.clone(),
            self.config.plugin_limits,
            native_code,
            Some(durable),
        )
        .await
        .map_err(|error| StartError::other("cannot restore the newest snapshot", error))?;
        let status = machine.status();
        let stop_checkpoint = machine.stop_checkpoint();
        let consensus = consensus::start(
            &ConsensusConfig {
                node_id,
                snapshot_every_entries: self.config.snapshot_every_entries,
                log_entries_kept: self.config.log_entries_kept,
                metrics: self.metrics.clone(),
                tls: self.config.tls.clone().map(Arc::new),
            },
            log,
            machine,
            AddressBook::default(),
        )
        .await
        .map_err(StartError::Other)?;
        Ok(Core {
            consensus,
            machine: status,
            plugin,
            snapshots,
            stop_checkpoint,
        })
    }

    async fn start_gossip(
        &self,
        node_id: NodeId,
        gossip_addr: SocketAddr,
    ) -> Result<Discovery, StartError> {
        Discovery::spawn(
            DiscoveryConfig {
                node_id,
                listen_addr: self.config.gossip_listen,
                advertise_addr: gossip_addr,
                seeds: self.config.join.clone(),
                cluster_name: self.config.cluster_name.clone(),
                generation: generation(),
                keyring: self.config.gossip_keyring.clone(),
                counters: self.gossip_counters.clone(),
            },
            &Announcement {
                rpc_addr: self.rpc_addr.clone(),
                bootstrap_expect: self.config.bootstrap_expect,
                // From the first datagram: a claim without a name is judged
                // by the name's binding alone.
                node_name: self
                    .config
                    .tls
                    .as_ref()
                    .and_then(|tls| crate::security::presented::own_identity(tls).node_name)
                    .unwrap_or_default(),
                ..Announcement::default()
            },
        )
        .await
        .map_err(|error| StartError::other("gossip", error))
    }
}

/// The gRPC address others reach this node at.
fn rpc_addr(config: &NodeConfig, listener: &TcpListener) -> Result<String, StartError> {
    let listen_addr = listener
        .local_addr()
        .map_err(|error| StartError::other("listener", error))?;
    match &config.advertise {
        Some(advertise) => Ok(advertise.clone()),
        // Peers and clients would be told to dial 0.0.0.0.
        None if listen_addr.ip().is_unspecified() => Err(StartError::Conflict(format!(
            "--listen {listen_addr} listens on every address; give --advertise with the one \
             other nodes and clients should use"
        ))),
        None => Ok(listen_addr.to_string()),
    }
}

/// Compile plugins from deploy entries as they arrive (filling the on-disk
/// cache), off the apply path.
fn spawn_precompiler(engine: PluginEngine) -> tokio::sync::mpsc::Sender<Vec<u8>> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(PRECOMPILE_QUEUE_DEPTH);
    tokio::spawn(
        async move {
            while let Some(plugin) = receiver.recv().await {
                // A native machine's marker is not wasm: nothing to compile.
                if crate::plugin::native::native_name(&plugin).is_some() {
                    continue;
                }
                if let Err(error) = engine.load_off_thread(plugin).await {
                    tracing::warn!("a deployed plugin does not load on this node: {error}");
                }
            }
        }
        .in_current_span(),
    );
    sender
}

/// This incarnation's gossip generation: its start time in ms, so a
/// restarted node is always newer than its dead self.
fn generation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

pub fn random_node_id() -> NodeId {
    // Node ids only need to be unique within a cluster; the OS entropy behind
    // RandomState is plenty, and keeps ids readable as positive numbers.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    (hasher.finish() >> 12).max(1)
}

/// Bind the gRPC listener, with a clear error when the port is taken.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Other(format!("cannot listen on {addr}: {error}")))
}
