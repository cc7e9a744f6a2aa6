//! clusterhost as a library: start a node inside your own program, write to
//! the cluster and read from it, stop it — with no Raft, gossip, gRPC or
//! wasm type in sight.
//!
//! ```no_run
//! # async fn example() -> Result<(), clusterhost::EmbedError> {
//! let node = clusterhost::Node::builder()
//!     .data_dir("data/n1")
//!     .listen("127.0.0.1:7400".parse().unwrap())
//!     .gossip("127.0.0.1:7401".parse().unwrap())
//!     .bootstrap()
//!     .plugin_file("kv.wasm")
//!     .start()
//!     .await?;
//! let answer = node.apply(br#"{"put":{"key":"a","value":"1"}}"#.to_vec()).await?;
//! let value = node
//!     .query(br#"{"get":{"key":"a"}}"#.to_vec(), clusterhost::Consistency::Linearizable)
//!     .await?;
//! node.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! A second node joins with `.join(["127.0.0.1:7401"])` instead of
//! `.bootstrap()`, and no plugin: the cluster's plugin comes through the log.
//! Instead of a wasm plugin, a node can run a [`StateMachine`] written in
//! Rust (`.state_machine("my-fsm", MyMachine::default())`); every node of
//! that cluster then runs the same one.
//! Writes go through a client session, so a write retried after a leader
//! change applies once. The `clusterhost run` command starts its node with
//! this same builder.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clusterhost_client::{Cluster, Options};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

pub use clusterhost_client::{ClientTls, Consistency, Error as ClientError};

use crate::plugin::NativeMachine;
pub use crate::plugin::native::{Entry, SdkMachine, StateMachine};

use crate::discovery::Keyring;
use crate::limits::REQUEST_TIMEOUT;
use crate::node::config::{LISTEN_DEFAULT, default_addr};
use crate::node::{self, NodeConfig, NodeHandle, StartError};
use crate::security::exposure::{Exposure, check_exposure};

/// Why an embedded node failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The node could not start; nothing was changed.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A write or read failed (see the client library's error kinds).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The node stopped with an error.
    #[error("{0}")]
    Stopped(String),
}

/// How to start a [`Node`].
#[derive(Debug)]
pub struct NodeBuilder {
    config: NodeConfig,
    listen: SocketAddr,
    native: Option<NativeMachine>,
    /// Serve beyond loopback without TLS or a gossip key.
    insecure: bool,
}

impl NodeBuilder {
    /// A builder for a node started from `config` (what `clusterhost run`
    /// builds from its flags), serving gRPC on `listen`.
    pub fn from_config(config: NodeConfig, listen: SocketAddr) -> Self {
        Self {
            config,
            listen,
            native: None,
            insecure: false,
        }
    }

    /// Where the node keeps its state (default `./data`).
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.data_dir = path.into();
        self
    }

    /// The gRPC address to serve clients and peers on.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The address others reach the gRPC port at, when it differs.
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.config.advertise = Some(addr.into());
        self
    }

    /// The UDP address to gossip on.
    pub fn gossip(mut self, addr: SocketAddr) -> Self {
        self.config.gossip_listen = addr;
        self
    }

    /// Gossip addresses of nodes already in the cluster (any one will do).
    pub fn join<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.join = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// Create a new single-node cluster running [`Self::plugin_file`] or
    /// [`Self::state_machine`] (on the first start; later starts resume it).
    pub fn bootstrap(mut self) -> Self {
        self.config.bootstrap = true;
        self
    }

    /// The plugin (a wasm component) a new cluster runs.
    pub fn plugin_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.plugin = Some(path.into());
        self
    }

    /// Run `machine`, a state machine written in Rust, instead of a plugin.
    /// `name` identifies it in the log and in snapshots: every node of the
    /// cluster must run one of the same name (a node that meets another
    /// stops with a clear error), and it must stay the same across versions
    /// of your program. Plugins cannot be deployed to such a cluster. Native
    /// code is not sandboxed: see [`StateMachine`] for the rules it must
    /// keep so that replicas stay identical.
    pub fn state_machine(mut self, name: &str, machine: impl StateMachine) -> Self {
        self.native = Some(NativeMachine::new(name, Box::new(machine)));
        self
    }

    /// Only nodes with the same cluster name gossip with each other.
    pub fn cluster_name(mut self, name: impl Into<String>) -> Self {
        self.config.cluster_name = name.into();
        self
    }

    /// Mutual TLS on the gRPC port: the cluster's CA and this node's
    /// certificate (see `clusterhost certs`).
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Seal gossip with the keys in `text` (the format `clusterhost gossip
    /// keygen` writes; the first key seals, every key opens).
    pub fn gossip_keys(mut self, text: &str) -> Result<Self, EmbedError> {
        let keyring = Keyring::parse(text)
            .map_err(|error| StartError::Conflict(format!("gossip keys: {error}")))?;
        self.config.gossip_keyring = Some(std::sync::Arc::new(keyring));
        Ok(self)
    }

    /// Serve beyond loopback without TLS or gossip keys. Without this, a
    /// node whose gRPC, gossip or ops address is not loopback and
    /// unprotected refuses to start.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Serve Prometheus metrics, health checks and the status page over
    /// HTTP on `addr`: over mutual TLS (any certificate from the cluster's
    /// CA) when [`Self::tls`] is given, else plaintext, which beyond
    /// loopback needs [`Self::insecure`].
    pub fn metrics_listen(mut self, addr: SocketAddr) -> Self {
        self.config.metrics_listen = Some(addr);
        self
    }

    /// How long a new node must be healthy before it becomes a voter.
    pub fn stabilization(mut self, time: Duration) -> Self {
        self.config.policy.stabilization = time;
        self
    }

    /// Start the node: bind its ports, open or create its data dir, join
    /// or create the cluster. Returns once it serves.
    pub async fn start(self) -> Result<Node, EmbedError> {
        let listener = node::bind(self.listen).await?;
        self.start_on(listener).await
    }

    /// [`Self::start`] on a listener bound by the caller (port 0 for tests).
    pub async fn start_on(self, listener: TcpListener) -> Result<Node, EmbedError> {
        let listen_addr = listener
            .local_addr()
            .map_err(|error| StartError::Other(format!("listener: {error}")))?;
        check_exposure(&Exposure {
            grpc: listen_addr,
            gossip: self.config.gossip_listen,
            ops: self.config.metrics_listen,
            tls: self.config.tls.is_some(),
            gossip_key: self.config.gossip_keyring.is_some(),
            insecure: self.insecure,
        })
        .map_err(StartError::Exposure)?;
        let endpoint = listen_addr.to_string();
        let tls = self.config.tls.clone();
        let handle = node::start_with(self.config, listener, self.native).await?;
        Ok(Node {
            handle,
            endpoint,
            tls,
            client: Mutex::new(None),
        })
    }
}

/// A running node in this process.
pub struct Node {
    handle: NodeHandle,
    /// Where this node serves gRPC.
    endpoint: String,
    /// The certificate its own client presents (this node's).
    tls: Option<ClientTls>,
    /// The client writes and reads go through, made on first use.
    client: Mutex<Option<Cluster>>,
}

impl Node {
    /// How to start one.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::from_config(NodeConfig::default(), default_addr(LISTEN_DEFAULT))
    }

    /// This node's id in the cluster.
    pub fn id(&self) -> u64 {
        self.handle.node_id()
    }

    /// The gRPC address this node serves on (for clients elsewhere).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Apply `command` through the leader, once, and return the plugin's
    /// answer after this node has applied it too (so a read here sees it).
    pub async fn apply(&self, command: Vec<u8>) -> Result<Vec<u8>, EmbedError> {
        let applied = {
            let mut client = self.client().await?;
            let cluster = client
                .as_mut()
                .unwrap_or_else(|| unreachable!("client() made one"));
            cluster.apply(command).await?
        };
        // Committed and applied on the leader: the write stands whatever
        // happens here. Waiting only makes it visible to reads on this node.
        if let Err(reason) = self
            .handle
            .wait_applied(applied.index, REQUEST_TIMEOUT)
            .await
        {
            tracing::warn!(
                index = applied.index,
                "applied on the leader, not yet on this node: {reason}"
            );
        }
        Ok(applied.response)
    }

    /// Run a query on this node's state (linearizable: confirmed with the
    /// leader first; stale: as this node has it).
    pub async fn query(
        &self,
        request: Vec<u8>,
        consistency: Consistency,
    ) -> Result<Vec<u8>, EmbedError> {
        let mut client = self.client().await?;
        let cluster = client
            .as_mut()
            .unwrap_or_else(|| unreachable!("client() made one"));
        Ok(cluster.query(request, consistency).await?)
    }

    /// Stop gracefully: hand leadership over if leading, then stop.
    pub async fn shutdown(self) -> Result<(), EmbedError> {
        self.handle
            .shutdown()
            .await
            .map_err(|error| EmbedError::Stopped(format!("{error:#}")))
    }

    /// Serve until `signal` fires or the node leaves the cluster, then stop.
    pub async fn serve_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), EmbedError> {
        self.handle
            .serve_until(signal)
            .await
            .map_err(|error| EmbedError::Stopped(format!("{error:#}")))
    }

    /// The client to this node's own endpoint: it stays on this node (which
    /// forwards writes to the leader) and writes in a session.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Cluster>>, EmbedError> {
        let mut client = self.client.lock().await;
        if client.is_none() {
            let options = Options {
                follow_leader: false,
                tls: self.tls.clone(),
                ..Options::default()
            };
            *client = Some(Cluster::connect_with([self.endpoint.as_str()], options).await?);
        }
        Ok(client)
    }
}
