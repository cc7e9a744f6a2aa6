//! [`TestCluster`]: real `clusterhost` processes with their own loopback
//! ports and temp data dirs, owned by the test and killed when it ends.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::Duration;

use clusterhost::api::client::Client;
use clusterhost::api::proto::StatusResponse;
use serde_json::Value;

use crate::cli::{CLI_TIMEOUT, CliOutput, run_cli, tail};
use crate::paths::clusterhost_binary;
use crate::process::Process;
use crate::wait::wait_for;

/// How long a node may take to start serving: it compiles its plugin with
/// Cranelift on first start, which is slow in debug builds on small machines.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a node may take to exit after SIGTERM.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of each node's log printed when a test fails.
pub const LOG_TAIL_BYTES: usize = 8 * 1024;

/// Attempts to start a node when its freshly picked port was taken meanwhile.
const PORT_COLLISION_ATTEMPTS: u32 = 3;

/// Flags for one node's `clusterhost run`, beyond the ones the harness sets
/// (`--data-dir`, `--listen`, `--gossip`, `--plugin`, `--bootstrap`).
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// `--snapshot-every`.
    pub snapshot_every: Option<u64>,
    /// `--log-keep`.
    pub log_keep: Option<u64>,
    /// `--plugin-fuel`.
    pub plugin_fuel: Option<u64>,
    /// `--plugin-memory-mib`.
    pub plugin_memory_mib: Option<u64>,
    /// `--node-id` (readable ids in tests; random when omitted).
    pub node_id: Option<u64>,
    /// `--stabilization`: how long a learner stays healthy before promotion.
    pub stabilization: Option<Duration>,
    /// `--dead-grace`: how long a member is dead before it may be removed.
    pub dead_grace: Option<Duration>,
    /// Anything else, appended as given.
    pub extra_args: Vec<String>,
}

impl NodeOptions {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let flags = [
            ("--snapshot-every", self.snapshot_every),
            ("--log-keep", self.log_keep),
            ("--plugin-fuel", self.plugin_fuel),
            ("--plugin-memory-mib", self.plugin_memory_mib),
        ];
        for (flag, value) in flags {
            if let Some(value) = value {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        if let Some(node_id) = self.node_id {
            args.extend(["--node-id".to_string(), node_id.to_string()]);
        }
        let durations = [
            ("--stabilization", self.stabilization),
            ("--dead-grace", self.dead_grace),
        ];
        for (flag, value) in durations {
            if let Some(value) = value {
                args.extend([flag.to_string(), format!("{}ms", value.as_millis())]);
            }
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// One node of the cluster: its directory, addresses and (when running) process.
pub struct Node {
    index: usize,
    directory: PathBuf,
    listen: SocketAddr,
    gossip: SocketAddr,
    options: NodeOptions,
    /// Gossip addresses passed as `--join` on every start (kept across
    /// restarts, as an operator keeps a node's flags).
    join: Vec<String>,
    /// The node id, learned from its first status (it never changes).
    node_id: Mutex<Option<u64>>,
    process: Option<Process>,
    /// Highest `applied_index` seen from the current process; it must never
    /// go backwards while the process lives.
    applied_floor: Mutex<u64>,
}

impl Node {
    /// The gRPC address clients use (`host:port`).
    pub fn endpoint(&self) -> String {
        self.listen.to_string()
    }

    /// The UDP gossip address (what other nodes `--join`).
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip
    }

    /// The node's id, once it has been seen ready (see
    /// [`TestCluster::wait_ready`]).
    pub fn node_id(&self) -> Option<u64> {
        *self.node_id.lock().expect("node id lock")
    }

    /// The node's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.directory.join("data")
    }

    /// The file the node's stdout and stderr go to, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.directory.join("node.log")
    }

    /// Everything the node has logged so far (all starts).
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Whether a process is running for this node.
    pub fn is_running(&self) -> bool {
        self.process
            .as_ref()
            .is_some_and(|process| process.try_exit().is_none())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }
}

/// Real `clusterhost` processes, ports and temp dirs, owned by one test.
/// Dropping it SIGKILLs every node; if the test is failing, it prints the
/// tail of every node's log first.
pub struct TestCluster {
    nodes: Vec<Node>,
    root: tempfile::TempDir,
}

impl TestCluster {
    /// A cluster with no nodes yet.
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("clusterhost-e2e-")
            .tempdir()
            .expect("create the cluster's temp dir");
        Self {
            nodes: Vec::new(),
            root,
        }
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
        let node = cluster.add_node(options);
        let plugin = plugin.to_string_lossy().into_owned();
        cluster
            .launch(node, &["--plugin", &plugin, "--bootstrap"])
            .await;
        cluster.wait_ready(node).await;
        cluster
    }

    /// Reserve a directory and loopback ports for a new node, without
    /// starting it. Returns its index.
    pub fn add_node(&mut self, options: NodeOptions) -> usize {
        let index = self.nodes.len();
        let directory = self.root.path().join(format!("node-{index}"));
        std::fs::create_dir_all(&directory).expect("create the node's directory");
        let (listen, gossip) = free_addresses();
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

    /// Start node `n`'s process with the harness's flags plus `extra` and
    /// wait until it listens (not until it is ready: see [`Self::wait_ready`]).
    /// A port taken since it was picked is retried on fresh ports.
    async fn launch(&mut self, n: usize, extra: &[&str]) {
        assert!(!self.node(n).is_running(), "node {n} is already running");
        for _attempt in 0..PORT_COLLISION_ATTEMPTS {
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
            if !node.join.is_empty() {
                args.extend(["--join".to_string(), node.join.join(",")]);
            }
            args.extend(node.options.args());
            let process = Process::spawn(clusterhost_binary(), &args, &node.log_path())
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

    /// Wait until node `n` serves: its status answers, it knows a leader and
    /// runs a plugin. Returns that status. Panics (with its log) if the
    /// process exits meanwhile.
    pub async fn wait_ready(&self, n: usize) -> clusterhost::api::proto::StatusResponse {
        let node = self.node(n);
        let process = node.process.clone().expect("node is running");
        let endpoint = node.endpoint();
        let status = wait_for(
            &format!("node {n} to know a leader and run a plugin"),
            START_TIMEOUT,
            || {
                let process = process.clone();
                let endpoint = endpoint.clone();
                async move {
                    if let Some(exit) = process.try_exit() {
                        return Ok(Err(exit));
                    }
                    let mut client = Client::connect(&endpoint)
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = client.status().await.map_err(|e| e.to_string())?;
                    if status.leader_id.is_none() || status.plugin_digest.is_empty() {
                        return Err(format!(
                            "role {}, leader {:?}, plugin {:?}",
                            status.role, status.leader_id, status.plugin_digest
                        ));
                    }
                    Ok(Ok(status))
                }
            },
        )
        .await;
        let status = status.unwrap_or_else(|exit| {
            panic!(
                "node {n} exited before it was ready ({exit}); its log:\n{}",
                tail(&node.log(), LOG_TAIL_BYTES)
            )
        });
        *node.node_id.lock().expect("node id lock") = Some(status.node_id);
        status
    }

    /// Wait until some running node reports itself leader and return its index.
    pub async fn wait_for_leader(&self) -> usize {
        let running = self.running();
        let endpoints: Vec<(usize, String)> = running
            .iter()
            .map(|&n| (n, self.node(n).endpoint()))
            .collect();
        wait_for("a leader among the running nodes", START_TIMEOUT, || {
            let endpoints = endpoints.clone();
            async move {
                for (n, endpoint) in endpoints {
                    let Ok(mut client) = Client::connect(&endpoint).await else {
                        continue;
                    };
                    if let Ok(status) = client.status().await
                        && status.role == "leader"
                    {
                        return Some(n);
                    }
                }
                None
            }
        })
        .await
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
        let (listen, gossip) = free_addresses();
        self.nodes[n].listen = listen;
        self.nodes[n].gossip = gossip;
        self.restart(n).await;
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

    /// Node `n`'s status over gRPC, or why it could not be had (for polling;
    /// [`Self::status`] is the CLI's stable JSON).
    pub async fn try_status(&self, n: usize) -> Result<StatusResponse, String> {
        let mut client = Client::connect(&self.node(n).endpoint())
            .await
            .map_err(|error| format!("node {n}: {error}"))?;
        client
            .status()
            .await
            .map_err(|error| format!("node {n}: {error}"))
    }

    /// `clusterhost members --json` of node `n`.
    pub async fn members(&self, n: usize) -> Value {
        self.cli(n, &["members", "--json"]).await.success_json()
    }

    /// The index of the node whose id is `node_id`, among nodes seen ready.
    pub fn index_of(&self, node_id: u64) -> Option<usize> {
        self.nodes
            .iter()
            .find(|node| node.node_id() == Some(node_id))
            .map(|node| node.index)
    }

    /// Node `n`'s id; panics if it was never seen ready.
    #[track_caller]
    pub fn id_of(&self, n: usize) -> u64 {
        self.node(n)
            .node_id()
            .unwrap_or_else(|| panic!("node {n} was never seen ready"))
    }

    /// The leader every running node agrees on, as a node index; `Err` says
    /// why there is none (a node unreachable, no leader, disagreement).
    pub async fn leader_index(&self) -> Result<usize, String> {
        let mut leaders = Vec::new();
        for n in self.running() {
            let status = self.try_status(n).await?;
            leaders.push((n, status.leader_id));
        }
        let first = leaders.first().ok_or("no running node")?.1;
        let agreed = leaders.iter().all(|(_, leader)| *leader == first);
        match first.and_then(|id| self.index_of(id)) {
            Some(leader) if agreed && self.node(leader).is_running() => Ok(leader),
            _ => Err(format!("(node, leader id) per running node: {leaders:?}")),
        }
    }

    /// Wait until every running node reports the same membership of exactly
    /// `voters` voters and no learner, and agrees on a leader; returns the
    /// leader's index.
    pub async fn wait_for_voters(&self, voters: usize, timeout: Duration) -> usize {
        wait_for(
            &format!("every running node to see the same {voters} voters and one leader"),
            timeout,
            || async {
                let mut views = Vec::new();
                for n in self.running() {
                    let status = self.try_status(n).await?;
                    let mut members: Vec<(u64, String)> = status
                        .members
                        .iter()
                        .map(|member| (member.id, member.suffrage.clone()))
                        .collect();
                    members.sort();
                    views.push((n, status.leader_id, members));
                }
                let (_, _, first) = views.first().ok_or("no running node")?;
                let all_voters =
                    first.len() == voters && first.iter().all(|(_, suffrage)| suffrage == "voter");
                let same = views.iter().all(|(_, _, members)| members == first);
                if !(all_voters && same) {
                    return Err(format!("(node, leader, members) per node: {views:?}"));
                }
                self.leader_index().await
            },
        )
        .await
    }

    /// A gRPC client connected to node `n`.
    pub async fn client(&self, n: usize) -> Client {
        let endpoint = self.node(n).endpoint();
        Client::connect(&endpoint)
            .await
            .unwrap_or_else(|error| panic!("connect to node {n}: {error}"))
    }

    /// Run the real CLI against node `n`: `args` is the subcommand and its
    /// arguments (`["apply", "{...}"]`); the endpoint is passed through
    /// `CLUSTERHOST_ENDPOINT`.
    pub async fn cli(&self, n: usize, args: &[&str]) -> CliOutput {
        let endpoint = self.node(n).endpoint();
        run_cli(args, &[("CLUSTERHOST_ENDPOINT", &endpoint)], CLI_TIMEOUT).await
    }

    /// `clusterhost status --json` of node `n`, checked against the last
    /// status seen from the same process: `applied_index` never goes back.
    pub async fn status(&self, n: usize) -> Value {
        let status = self.cli(n, &["status", "--json"]).await.success_json();
        let applied = status["applied_index"]
            .as_u64()
            .unwrap_or_else(|| panic!("status of node {n} has no applied_index: {status}"));
        let mut floor = self
            .node(n)
            .applied_floor
            .lock()
            .expect("applied floor lock");
        assert!(
            applied >= *floor,
            "node {n}: applied_index went back from {} to {applied}",
            *floor
        );
        *floor = applied;
        status
    }

    /// The tail of every node's log, for failure reports.
    pub fn log_tails(&self) -> String {
        let mut report = String::new();
        for node in &self.nodes {
            report.push_str(&format!(
                "\n======== node {} ({}) log: {} ========\n{}\n",
                node.index,
                node.endpoint(),
                node.log_path().display(),
                tail(&node.log(), LOG_TAIL_BYTES)
            ));
        }
        report
    }
}

impl Default for TestCluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(process) = node.process.take() {
                process.kill();
            }
        }
        if std::thread::panicking() {
            eprintln!("test failed; node logs follow:{}", self.log_tails());
            self.keep_logs();
        }
    }
}

impl TestCluster {
    /// Copy every node's whole log out of the temp dir (which is deleted)
    /// to `<tmp>/clusterhost-failed-logs/<cluster>/`, and say where.
    fn keep_logs(&self) {
        let name = self.root.path().file_name().unwrap_or_default();
        let kept = std::env::temp_dir()
            .join("clusterhost-failed-logs")
            .join(name);
        if std::fs::create_dir_all(&kept).is_err() {
            return;
        }
        for node in &self.nodes {
            let _ = std::fs::copy(
                node.log_path(),
                kept.join(format!("node-{}.log", node.index)),
            );
        }
        eprintln!("full node logs kept in {}", kept.display());
    }
}

/// The part of a node log written by its latest start.
fn last_start(log: &str) -> &str {
    log.rsplit("==== clusterhost").next().unwrap_or("")
}

/// A free loopback TCP port (gRPC) and UDP port (gossip). They are released
/// before the node binds them, so another process may take one meanwhile:
/// [`TestCluster::launch`] retries on fresh ports when that happens.
pub fn free_addresses() -> (SocketAddr, SocketAddr) {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral TCP port");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    (
        tcp.local_addr().expect("TCP local address"),
        udp.local_addr().expect("UDP local address"),
    )
}
