//! [`TestCluster`]: real `clusterhost` processes with their own loopback
//! ports and data dirs, owned by the test (or tool) and killed when it ends.
//! Starting and stopping nodes is here; looking at them is in
//! [`crate::observe`].

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::Duration;

use crate::cli::tail;
use crate::node::{Node, NodeOptions};
use crate::paths::clusterhost_binary;
use crate::process::Process;
use crate::tls::TestPki;
use crate::wait::wait_for;
use clusterhost_client::ClientTls;

mod failure_logs;

/// How long a node may take to start serving: it compiles its plugin with
/// Cranelift on first start, which is slow in debug builds on small machines.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a node may take to exit after SIGTERM.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of each node's log printed when a test fails.
pub const LOG_TAIL_BYTES: usize = 8 * 1024;

/// Attempts to start a node when its freshly picked port was taken meanwhile.
const PORT_COLLISION_ATTEMPTS: u32 = 3;

/// Where a cluster keeps its nodes' directories.
enum Root {
    /// A temp dir, deleted with the cluster (tests).
    Temporary(tempfile::TempDir),
    /// A directory that outlives it (the demo and benchmarks).
    Kept(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Root::Temporary(directory) => directory.path(),
            Root::Kept(path) => path,
        }
    }
}

/// The gRPC port of a node on its own test host (each host has its own
/// port space, so every node uses the same ones).
pub const HOST_GRPC_PORT: u16 = 7400;
/// The gossip port of a node on its own test host.
pub const HOST_GOSSIP_PORT: u16 = 7401;

/// Real `clusterhost` processes, ports and data dirs, owned by one test.
/// Dropping it SIGKILLs every node; if the test is failing, it prints the
/// tail of every node's log first.
pub struct TestCluster {
    pub(crate) nodes: Vec<Node>,
    root: Root,
    /// Hosts the nodes run on, one each, when not on loopback.
    #[cfg(target_os = "linux")]
    network: Option<std::sync::Arc<crate::netns::TestNetwork>>,
    /// Certificates, when the nodes run with mutual TLS; the harness's own
    /// clients and CLI calls then present [`ADMIN_CERT`].
    pub(crate) pki: Option<TestPki>,
    /// The admin certificate, read once.
    pub(crate) admin_tls: Option<ClientTls>,
    /// The gossip key file every node of a TLS cluster seals gossip with.
    pub(crate) gossip_key: Option<PathBuf>,
    /// The name of the client certificate the harness presents on a TLS
    /// cluster ([`ADMIN_CERT`] unless given).
    pub(crate) admin_cert: String,
}

/// The name of the admin client certificate the harness itself uses on a
/// TLS cluster.
pub const ADMIN_CERT: &str = "harness-admin";

impl TestCluster {
    /// A cluster with no nodes yet, in a temp dir.
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("clusterhost-e2e-")
            .tempdir()
            .expect("create the cluster's temp dir");
        Self::at(Root::Temporary(root))
    }

    /// A cluster with no node yet, its files under `root`.
    fn at(root: Root) -> Self {
        Self {
            nodes: Vec::new(),
            root,
            #[cfg(target_os = "linux")]
            network: None,
            pki: None,
            admin_tls: None,
            gossip_key: None,
            admin_cert: ADMIN_CERT.to_string(),
        }
    }

    /// A cluster with no nodes yet whose nodes run with mutual TLS: a CA in
    /// `<root>/pki`, a node certificate per node (made when it first
    /// starts, for its listen address) and an admin certificate the harness
    /// uses for its own calls; gossip sealed with one key (a node whose
    /// extra flags name another `--gossip-key-file` uses that instead).
    pub async fn with_tls() -> Self {
        Self::new().enable_tls().await
    }

    /// Like [`Self::with_tls`], kept in `directory` as [`Self::in_directory`].
    pub async fn in_directory_with_tls(directory: &Path) -> Self {
        Self::in_directory(directory).enable_tls().await
    }

    /// Like [`Self::in_directory_with_tls`], with the CA, the certificates
    /// and `gossip.key` in `pki_dir` (whatever is missing there is made by
    /// the `clusterhost` command line), the harness presenting the admin
    /// certificate `admin`.
    pub async fn in_directory_with_pki(directory: &Path, pki_dir: &Path, admin: &str) -> Self {
        let mut cluster = Self::in_directory(directory);
        cluster.admin_cert = admin.to_string();
        cluster.enable_tls_in(pki_dir).await
    }

    /// The certificates and gossip key of [`Self::with_tls`], before any
    /// node starts.
    async fn enable_tls(self) -> Self {
        let pki_dir = self.root().join("pki");
        self.enable_tls_in(&pki_dir).await
    }

    async fn enable_tls_in(mut self, pki_dir: &Path) -> Self {
        let pki = TestPki::create(pki_dir).await;
        self.admin_tls = Some(pki.client(&self.admin_cert, "admin").await);
        self.gossip_key = Some(pki.gossip_key("gossip.key").await);
        self.pki = Some(pki);
        self
    }

    /// The certificates of a TLS cluster.
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// What the harness presents to nodes: the admin certificate on a TLS
    /// cluster, nothing otherwise.
    pub fn client_tls(&self) -> Option<&ClientTls> {
        self.admin_tls.as_ref()
    }

    /// A cluster with no nodes yet whose node `n` will run on host `n` of
    /// `network` (its address, ports [`HOST_GRPC_PORT`] and
    /// [`HOST_GOSSIP_PORT`]).
    #[cfg(target_os = "linux")]
    pub fn on_network(network: std::sync::Arc<crate::netns::TestNetwork>) -> Self {
        let mut cluster = Self::new();
        cluster.network = Some(network);
        cluster
    }

    /// The network the nodes run on, if not loopback.
    #[cfg(target_os = "linux")]
    pub fn network(&self) -> Option<&crate::netns::TestNetwork> {
        self.network.as_deref()
    }

    /// A cluster with no nodes yet whose directories and logs are kept in
    /// `directory` (created if missing) after it is dropped.
    pub fn in_directory(directory: &Path) -> Self {
        std::fs::create_dir_all(directory).expect("create the cluster's directory");
        Self::at(Root::Kept(directory.to_path_buf()))
    }

    /// A one-node cluster bootstrapped with `plugin` and default flags,
    /// serving as leader.
    pub async fn start_bootstrap(plugin: &Path) -> Self {
        Self::start_bootstrap_with(plugin, NodeOptions::default()).await
    }

    /// A one-node cluster bootstrapped with `plugin` and `options`, serving
    /// as leader.
    pub async fn start_bootstrap_with(plugin: &Path, options: NodeOptions) -> Self {
        let mut cluster = Self::new();
        cluster.bootstrap_node(plugin, options).await;
        cluster
    }

    /// Add a node that bootstraps a new cluster with `plugin` and wait until
    /// it leads. Returns its index.
    pub async fn bootstrap_node(&mut self, plugin: &Path, options: NodeOptions) -> usize {
        let node = self.add_node(options);
        let plugin = plugin.to_string_lossy().into_owned();
        self.launch(node, &["--plugin", &plugin, "--bootstrap"])
            .await;
        self.wait_ready(node).await;
        node
    }

    /// Reserve a directory and loopback ports for a new node, without
    /// starting it. Returns its index.
    pub fn add_node(&mut self, options: NodeOptions) -> usize {
        let index = self.nodes.len();
        let directory = self.root.path().join(format!("node-{index}"));
        std::fs::create_dir_all(&directory).expect("create the node's directory");
        let (listen, gossip) = self.addresses_for(index);
        self.nodes.push(Node {
            index,
            directory,
            listen,
            gossip,
            options,
            join: Vec::new(),
            node_id: Mutex::new(None),
            process: None,
            applied_floor: Mutex::new(0),
        });
        index
    }

    /// Node `n`.
    #[track_caller]
    pub fn node(&self, n: usize) -> &Node {
        self.nodes
            .get(n)
            .unwrap_or_else(|| panic!("the cluster has no node {n}"))
    }

    /// Every node, running or not.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Indexes of the nodes with a running process.
    pub fn running(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .filter(|node| node.is_running())
            .map(|node| node.index)
            .collect()
    }

    /// The directory under which every node's directory lives.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Where node `index` listens: its own test host's address, or fresh
    /// loopback ports.
    fn addresses_for(&self, index: usize) -> (SocketAddr, SocketAddr) {
        #[cfg(target_os = "linux")]
        if let Some(network) = &self.network {
            let address = network.address(index);
            return (
                SocketAddr::new(address, HOST_GRPC_PORT),
                SocketAddr::new(address, HOST_GOSSIP_PORT),
            );
        }
        free_addresses()
    }

    /// Spawn node `n`'s process with `args`, inside its host if it has one.
    fn spawn(&self, n: usize, args: &[String]) -> std::io::Result<Process> {
        let log = self.nodes[n].log_path();
        let binary = self.nodes[n]
            .options
            .binary
            .as_deref()
            .unwrap_or(clusterhost_binary());
        #[cfg(target_os = "linux")]
        if let Some(network) = &self.network {
            let command = network.command(n, binary);
            return Process::spawn_command(command, args, &log);
        }
        Process::spawn(binary, args, &log)
    }

    /// Run `binary` for node `n` from its next start on (`None`: the binary
    /// under test), as an operator replacing a node's binary would.
    pub fn set_binary(&mut self, n: usize, binary: Option<std::path::PathBuf>) {
        self.nodes[n].options.binary = binary;
    }

    /// Send node `n` SIGHUP: it reads its gossip key file again.
    pub fn hangup(&self, n: usize) {
        self.running_process(n, "hangup").hangup();
    }

    /// Freeze node `n` (SIGSTOP) until [`Self::resume`].
    pub fn pause(&self, n: usize) {
        self.running_process(n, "pause").pause();
    }

    /// Let paused node `n` run again (SIGCONT).
    pub fn resume(&self, n: usize) {
        self.running_process(n, "resume").resume();
    }

    #[track_caller]
    fn running_process(&self, n: usize, what: &str) -> &Process {
        self.nodes[n]
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: node {n} is not running"))
    }

    /// Start node `n`'s process with the harness's flags plus `extra` and
    /// wait until it listens (not until it is ready: see [`Self::wait_ready`]).
    /// A port taken since it was picked is retried on fresh ports.
    async fn launch(&mut self, n: usize, extra: &[&str]) {
        assert!(!self.node(n).is_running(), "node {n} is already running");
        for _attempt in 0..PORT_COLLISION_ATTEMPTS {
            let tls_args = self.node_tls_args(n).await;
            let node = &self.nodes[n];
            let mut args: Vec<String> = vec![
                "run".into(),
                "--data-dir".into(),
                node.data_dir().to_string_lossy().into_owned(),
                "--listen".into(),
                node.endpoint(),
                "--gossip".into(),
                node.gossip.to_string(),
            ];
            args.extend(extra.iter().map(|arg| arg.to_string()));
            args.extend(tls_args);
            if !node.join.is_empty() {
                args.extend(["--join".to_string(), node.join.join(",")]);
            }
            args.extend(node.options.args());
            let process = self
                .spawn(n, &args)
                .unwrap_or_else(|error| panic!("cannot spawn node {n}: {error}"));
            *self.nodes[n]
                .applied_floor
                .lock()
                .expect("applied floor lock") = 0;
            self.nodes[n].process = Some(process.clone());
            let log_path = self.nodes[n].log_path();
            let listening = wait_for(
                &format!("node {n} to log `node started`"),
                START_TIMEOUT,
                || {
                    let process = process.clone();
                    let log_path = log_path.clone();
                    async move {
                        if let Some(exit) = process.try_exit() {
                            return Some(Err(exit));
                        }
                        // Not a connect: on a port collision that would reach
                        // whoever holds the port. The node logs this line
                        // once its own listener is bound.
                        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                        last_start(&log).contains("node started").then_some(Ok(()))
                    }
                },
            )
            .await;
            let Err(exit) = listening else {
                return;
            };
            let log = self.nodes[n].log();
            if !last_start(&log).contains("cannot listen on") {
                panic!(
                    "node {n} exited during start-up ({exit}); its log:\n{}",
                    tail(&log, LOG_TAIL_BYTES)
                );
            }
            self.nodes[n].process = None;
            let (listen, gossip) = free_addresses();
            self.nodes[n].listen = listen;
            self.nodes[n].gossip = gossip;
        }
        panic!("node {n}: no free port after {PORT_COLLISION_ATTEMPTS} attempts");
    }

    /// `--tls-ca --tls-cert --tls-key` for node `n` on a TLS cluster (its
    /// certificate made for its listen address on first use); none otherwise.
    async fn node_tls_args(&self, n: usize) -> Vec<String> {
        let Some(pki) = &self.pki else {
            // Test hosts are not loopback: a node there refuses to serve
            // without TLS unless told so.
            #[cfg(target_os = "linux")]
            if self.network.is_some() {
                return vec!["--insecure".to_string()];
            }
            return Vec::new();
        };
        let (cert, key) = pki
            .node(&format!("node-{n}"), self.nodes[n].listen.ip())
            .await;
        let mut flags = vec![
            ("--tls-ca", pki.ca()),
            ("--tls-cert", cert),
            ("--tls-key", key),
        ];
        let own_key = self.nodes[n]
            .options
            .extra_args
            .iter()
            .any(|arg| arg == "--gossip-key-file");
        if let Some(gossip_key) = self.gossip_key.clone().filter(|_| !own_key) {
            flags.push(("--gossip-key-file", gossip_key));
        }
        flags
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_string(), path.to_string_lossy().into_owned()])
            .collect()
    }

    /// SIGKILL node `n` (no chance to flush or say goodbye) and reap it.
    pub fn kill9(&mut self, n: usize) -> ExitStatus {
        let process = self.nodes[n]
            .process
            .take()
            .unwrap_or_else(|| panic!("kill9: node {n} is not running"));
        process.kill()
    }

    /// SIGTERM node `n` and wait (at most [`TERMINATE_TIMEOUT`]) for it to
    /// exit; returns how it exited.
    pub async fn terminate(&mut self, n: usize) -> ExitStatus {
        let process = self.nodes[n]
            .process
            .take()
            .unwrap_or_else(|| panic!("terminate: node {n} is not running"));
        process.terminate();
        let exited = {
            let process = process.clone();
            tokio::time::timeout(
                TERMINATE_TIMEOUT,
                wait_for(
                    &format!("node {n} to exit after SIGTERM"),
                    TERMINATE_TIMEOUT * 2,
                    move || {
                        let process = process.clone();
                        async move { process.try_exit() }
                    },
                ),
            )
            .await
        };
        match exited {
            Ok(status) => status,
            Err(_) => {
                self.nodes[n].process = Some(process);
                panic!("node {n} did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM")
            }
        }
    }

    /// Start node `n` again on its data dir and ports, without `--plugin`
    /// or `--bootstrap` (it remembers both), and wait until it is ready.
    pub async fn restart(&mut self, n: usize) {
        self.launch(n, &[]).await;
        self.wait_ready(n).await;
    }

    /// Start node `n` again on its data dir without waiting for it to be
    /// ready: for restarting several nodes that need each other's votes.
    pub async fn restart_without_waiting(&mut self, n: usize) {
        self.launch(n, &[]).await;
    }

    /// Start a new node that joins the cluster through node `seed`'s gossip
    /// address (no `--plugin`: it gets the plugin from the cluster) and wait
    /// until it knows a leader and runs the plugin. Returns its index.
    pub async fn start_joining(&mut self, seed: usize, options: NodeOptions) -> usize {
        let seed_gossip = self.node(seed).gossip.to_string();
        let n = self.add_node(options);
        self.nodes[n].join = vec![seed_gossip];
        self.launch(n, &[]).await;
        self.wait_ready(n).await;
        n
    }

    /// One node per entry of `options`, all started with `--bootstrap-expect
    /// N --plugin plugin` (N = the number of nodes), each joining node 0's
    /// gossip address (node 0 joins node 1's), waited on until every one is
    /// ready.
    pub async fn start_bootstrap_expect(plugin: &Path, options: Vec<NodeOptions>) -> Self {
        let count = options.len();
        assert!(count >= 2, "bootstrap-expect needs at least two nodes");
        let mut cluster = Self::new();
        let nodes: Vec<usize> = options
            .into_iter()
            .map(|options| cluster.add_node(options))
            .collect();
        for &n in &nodes {
            let seed = if n == 0 { 1 } else { 0 };
            cluster.nodes[n].join = vec![cluster.nodes[seed].gossip.to_string()];
        }
        let plugin = plugin.to_string_lossy().into_owned();
        let expect = count.to_string();
        for &n in &nodes {
            cluster
                .launch(n, &["--plugin", &plugin, "--bootstrap-expect", &expect])
                .await;
        }
        for &n in &nodes {
            cluster.wait_ready(n).await;
        }
        cluster
    }

    /// Set the gossip addresses node `n` is started with as `--join`.
    pub fn set_join_addresses(&mut self, n: usize, gossip_addresses: &[String]) {
        self.nodes[n].join = gossip_addresses.to_vec();
    }

    /// Make node `n` join through the gossip addresses of nodes `seeds`
    /// when it next starts.
    pub fn set_join(&mut self, n: usize, seeds: &[usize]) {
        let seeds = seeds
            .iter()
            .map(|&seed| self.node(seed).gossip.to_string())
            .collect();
        self.nodes[n].join = seeds;
    }

    /// Start node `n` again on its data dir but at fresh loopback gRPC and
    /// gossip ports, and wait until it is ready.
    pub async fn restart_at_new_addresses(&mut self, n: usize) {
        self.move_to_new_addresses(n);
        self.restart(n).await;
    }

    /// Give (stopped) node `n` fresh loopback gRPC and gossip ports for its
    /// next start.
    pub fn move_to_new_addresses(&mut self, n: usize) {
        (self.nodes[n].listen, self.nodes[n].gossip) = free_addresses();
    }

    /// Wait (at most `timeout`) for node `n`'s process to exit on its own,
    /// and return how it exited.
    pub async fn wait_exit(&mut self, n: usize, timeout: Duration) -> ExitStatus {
        let process = self.nodes[n]
            .process
            .clone()
            .unwrap_or_else(|| panic!("wait_exit: node {n} is not running"));
        let status = wait_for(&format!("node {n} to exit"), timeout, || {
            let process = process.clone();
            async move { process.try_exit() }
        })
        .await;
        self.nodes[n].process = None;
        status
    }
}

impl Default for TestCluster {
    fn default() -> Self {
        Self::new()
    }
}

/// The part of a node log written by its latest start.
fn last_start(log: &str) -> &str {
    log.rsplit("==== clusterhost").next().unwrap_or("")
}

/// A free loopback TCP port (gRPC) and UDP port (gossip). They are released
/// before the node binds them, so another process may take one meanwhile:
/// `TestCluster::launch` retries on fresh ports when that happens.
pub fn free_addresses() -> (SocketAddr, SocketAddr) {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral TCP port");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    (
        tcp.local_addr().expect("TCP local address"),
        udp.local_addr().expect("UDP local address"),
    )
}
