//! Real `clusterhost` processes on loopback for `demo` and `bench`: ports,
//! data dirs and logs per node, status polling, and cleanup on drop.

use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::command;

/// How long the cluster gets to reach an expected state.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a state is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One node: where it listens and keeps its state, and its process.
pub struct LocalNode {
    /// Name used in output (`node1`, …).
    pub name: String,
    /// gRPC address.
    pub endpoint: String,
    /// Gossip address.
    pub gossip: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log file (stderr of the process, appended across restarts).
    pub log: PathBuf,
    process: Option<Child>,
}

/// Nodes under `directory`, run from `binary`; every process is killed
/// when this is dropped, however the caller ends.
pub struct LocalCluster {
    binary: PathBuf,
    /// The nodes, in order.
    pub nodes: Vec<LocalNode>,
}

impl LocalCluster {
    /// `count` nodes with fresh loopback ports, state under `directory`.
    pub fn new(binary: &Path, directory: &Path, count: usize) -> Result<Self> {
        let nodes = (1..=count)
            .map(|number| {
                Ok(LocalNode {
                    name: format!("node{number}"),
                    endpoint: format!(
                        "127.0.0.1:{}",
                        TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()
                    ),
                    gossip: format!(
                        "127.0.0.1:{}",
                        UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port()
                    ),
                    data_dir: directory.join(format!("node{number}")),
                    log: directory.join(format!("node{number}.log")),
                    process: None,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            binary: binary.to_path_buf(),
            nodes,
        })
    }

    /// Start node `index` with `extra` flags after the standard ones.
    pub fn start(&mut self, index: usize, extra: &[&str]) -> Result<()> {
        let node = &mut self.nodes[index];
        let log = File::options().create(true).append(true).open(&node.log)?;
        let mut start = Command::new(&self.binary);
        start
            .args(["run", "--data-dir"])
            .arg(&node.data_dir)
            .args(["--listen", &node.endpoint, "--gossip", &node.gossip])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log);
        eprintln!("$ {}   ({})", command::describe(&start), node.name);
        node.process = Some(start.spawn().context("cannot start clusterhost")?);
        Ok(())
    }

    /// Indexes of the nodes whose process runs.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|index| self.nodes[*index].process.is_some())
            .collect()
    }

    /// `clusterhost status --json` of node `index`, if it answers.
    pub fn status(&self, index: usize) -> Option<Value> {
        self.json(&["status", "--json", "-e", &self.nodes[index].endpoint])
    }

    /// Run the CLI quietly and parse its JSON output.
    pub fn json(&self, args: &[&str]) -> Option<Value> {
        let output = Command::new(&self.binary)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).ok())?
    }

    /// Index of the node every running node names as leader (it must run
    /// and have a plugin).
    pub fn leader(&self) -> Result<usize> {
        let mut leaders = Vec::new();
        for index in self.running() {
            let status = self.status(index).context("a node did not answer")?;
            leaders.push(
                status["leader_addr"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        let first = leaders.first().cloned().unwrap_or_default();
        if first.is_empty() || leaders.iter().any(|leader| *leader != first) {
            bail!("no agreed leader yet");
        }
        let index = self
            .nodes
            .iter()
            .position(|node| node.endpoint == first && node.process.is_some())
            .context("the leader is not a running node")?;
        let plugin = self
            .status(index)
            .is_some_and(|status| status["plugin"]["digest"].is_string());
        if !plugin {
            bail!("the leader runs no plugin yet");
        }
        Ok(index)
    }

    /// Whether every running node agrees on a leader and counts `voters` voters.
    pub fn voters_agree(&self, voters: usize) -> Result<bool> {
        self.leader()?;
        Ok(self.running().iter().all(|index| {
            self.status(*index).is_some_and(|status| {
                let members = status["members"].as_array().cloned().unwrap_or_default();
                members
                    .iter()
                    .filter(|member| member["suffrage"] == "voter")
                    .count()
                    == voters
            })
        }))
    }

    /// Whether every running node has applied the same index.
    pub fn caught_up(&self) -> Result<bool> {
        let applied: Vec<Option<u64>> = self
            .running()
            .iter()
            .map(|index| {
                self.status(*index)
                    .and_then(|status| status["applied_index"].as_u64())
            })
            .collect();
        Ok(
            applied.iter().all(Option::is_some)
                && applied.windows(2).all(|pair| pair[0] == pair[1]),
        )
    }

    /// Poll `condition` until it holds, or fail naming `what`.
    pub fn wait_for(&self, what: &str, condition: impl Fn(&Self) -> Result<bool>) -> Result<()> {
        let started = Instant::now();
        while !condition(self).unwrap_or(false) {
            if started.elapsed() > WAIT_TIMEOUT {
                let logs = self
                    .nodes
                    .first()
                    .and_then(|node| node.log.parent())
                    .map(Path::display);
                bail!(
                    "timed out waiting for {what}; node logs are in {}",
                    logs.map(|path| path.to_string()).unwrap_or_default()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }

    /// Run the CLI, showing the command and its output.
    pub fn cli(&self, args: &[&str]) -> Result<()> {
        command::run(Command::new(&self.binary).args(args))
    }

    /// The CLI as a command to configure further.
    pub fn command(&self) -> Command {
        Command::new(&self.binary)
    }

    /// SIGKILL node `index`.
    pub fn kill(&mut self, index: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[index].process.take() {
            eprintln!("$ kill -9 {}   ({})", child.id(), self.nodes[index].name);
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM node `index` and wait for it to exit.
    pub fn terminate(&mut self, index: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[index].process.take() {
            command::run(Command::new("kill").args(["-TERM", &child.id().to_string()]))?;
            let status = child.wait()?;
            eprintln!("{} exited: {status}", self.nodes[index].name);
        }
        Ok(())
    }

    /// CPU time (user + system) each running node has used so far, in ms.
    pub fn cpu_ms(&self) -> Vec<u64> {
        let ticks_per_second = clock_ticks_per_second();
        self.per_node_proc("stat", |stat| {
            // Fields after the command name, which may hold spaces: utime
            // and stime are the 12th and 13th of them.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some((user + system) * 1000 / ticks_per_second)
        })
    }

    /// Resident memory of each running node, KiB.
    pub fn rss_kib(&self) -> Vec<u64> {
        self.per_node_proc("status", |status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
    }

    /// `/proc/<pid>/<file>` of each running node, parsed (0 when unreadable).
    fn per_node_proc(&self, file: &str, parse: impl Fn(&str) -> Option<u64>) -> Vec<u64> {
        self.nodes
            .iter()
            .filter_map(|node| node.process.as_ref())
            .map(|child| {
                std::fs::read_to_string(format!("/proc/{}/{file}", child.id()))
                    .ok()
                    .and_then(|text| parse(&text))
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// The kernel's clock tick rate for /proc CPU times (100 on Linux unless
/// `getconf` says otherwise).
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok()?.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
