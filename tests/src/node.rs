//! One node of a [`crate::TestCluster`]: its flags, directory, addresses and
//! (when running) process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::process::Process;

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
    /// Run this binary instead of the one under test (an older build, for
    /// upgrade tests).
    pub binary: Option<std::path::PathBuf>,
}

impl NodeOptions {
    pub(crate) fn args(&self) -> Vec<String> {
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
    pub(crate) index: usize,
    pub(crate) directory: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) gossip: SocketAddr,
    pub(crate) options: NodeOptions,
    /// Gossip addresses passed as `--join` on every start (kept across
    /// restarts, as an operator keeps a node's flags).
    pub(crate) join: Vec<String>,
    /// The node id, learned from its first status (it never changes).
    pub(crate) node_id: Mutex<Option<u64>>,
    pub(crate) process: Option<Process>,
    /// Highest `applied_index` seen from the current process; it must never
    /// go backwards while the process lives.
    pub(crate) applied_floor: Mutex<u64>,
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
    /// `TestCluster::wait_ready`).
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
