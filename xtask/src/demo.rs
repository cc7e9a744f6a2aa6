//! `cargo xtask demo`: the main job on the embedded defaults. Builds the
//! plugins and the binary, then on loopback: starts a node with the kv
//! plugin, joins two more through gossip (they get the plugin from the
//! cluster), writes through a follower, kills the leader with SIGKILL, shows
//! the new leader with every write intact, restarts the old leader, prints
//! the members table, and stops everything it started.

use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{command, plugins, toolchain};

/// How long the cluster gets to reach each expected state.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a state is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Nodes in the demo cluster.
const NODES: usize = 3;
/// Cities written by the demo, one key each.
const CITIES: [&str; 5] = ["Lisbon", "Oslo", "Quito", "Hanoi", "Dakar"];
/// The demo's membership timing: quick promotion so it does not wait long.
const STABILIZATION: &str = "1s";

/// Entry point of `cargo xtask demo`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    crate::expect_no_args("demo", args)?;
    plugins::run(root, &[])?;
    command::run(
        Command::new(toolchain::cargo())
            .current_dir(root)
            .args(["build", "--workspace"]),
    )?;
    let demo_dir = root.join("target/demo");
    if demo_dir.exists() {
        std::fs::remove_dir_all(&demo_dir)
            .with_context(|| format!("cannot clear {}", demo_dir.display()))?;
    }
    std::fs::create_dir_all(&demo_dir)?;
    let mut cluster = Cluster {
        binary: root.join("target/debug/clusterhost"),
        nodes: (1..=NODES)
            .map(|number| {
                Ok(DemoNode {
                    name: format!("node{number}"),
                    endpoint: format!("127.0.0.1:{}", free_tcp_port()?),
                    gossip: format!("127.0.0.1:{}", free_udp_port()?),
                    data_dir: demo_dir.join(format!("node{number}")),
                    log: demo_dir.join(format!("node{number}.log")),
                    process: None,
                })
            })
            .collect::<Result<_>>()?,
    };
    let kv = root
        .join("target/plugins/kv.wasm")
        .to_string_lossy()
        .into_owned();

    heading("The plugin: a WebAssembly component implementing clusterhost:fsm/state-machine");
    cluster.cli(&["plugin", "inspect", &kv])?;

    heading("Start node1 with the kv plugin; node2 and node3 join through gossip (no --plugin)");
    cluster.start(0, &["--plugin", &kv, "--bootstrap"])?;
    let seed = cluster.nodes[0].gossip.clone();
    cluster.start(1, &["--join", &seed])?;
    let second = cluster.nodes[1].gossip.clone();
    cluster.start(2, &["--join", &second])?;
    cluster.wait_for("three voters that agree on a leader", |cluster| {
        cluster.voters_agree(NODES)
    })?;
    cluster.cli(&["status", "-e", &cluster.nodes[1].endpoint])?;

    let leader = cluster.leader()?;
    let follower = (leader + 1) % NODES;
    heading(&format!(
        "Write through {} (a follower: it forwards to the leader)",
        cluster.nodes[follower].name
    ));
    for (index, city) in CITIES.iter().enumerate() {
        let command = format!(
            r#"{{"put":{{"key":"city/{}","value":"{city}"}}}}"#,
            index + 1
        );
        cluster.cli(&["apply", "-e", &cluster.nodes[follower].endpoint, &command])?;
    }

    heading(&format!(
        "kill -9 the leader, {}",
        cluster.nodes[leader].name
    ));
    cluster.kill(leader)?;
    let started = Instant::now();
    cluster.wait_for("a new leader", |cluster| {
        Ok(cluster
            .leader()
            .is_ok_and(|new_leader| new_leader != leader))
    })?;
    let new_leader = cluster.leader()?;
    eprintln!(
        "{} leads after {} ms",
        cluster.nodes[new_leader].name,
        started.elapsed().as_millis()
    );
    let survivor = (0..NODES)
        .find(|index| *index != leader && *index != new_leader)
        .unwrap_or(new_leader);
    cluster.cli(&[
        "apply",
        "-e",
        &cluster.nodes[survivor].endpoint,
        r#"{"cas":{"key":"city/1","expected":"Lisbon","value":"Porto"}}"#,
    ])?;
    cluster.cli(&[
        "query",
        "-e",
        &cluster.nodes[survivor].endpoint,
        r#"{"scan":{"prefix":"city/"}}"#,
    ])?;

    heading(&format!(
        "Restart {} from its data dir; it rejoins and catches up",
        cluster.nodes[leader].name
    ));
    cluster.start(
        leader,
        &["--join", &cluster.nodes[new_leader].gossip.clone()],
    )?;
    cluster.wait_for("all three nodes applied the same index", |cluster| {
        cluster.caught_up()
    })?;
    cluster.cli(&[
        "query",
        "--consistency",
        "stale",
        "-e",
        &cluster.nodes[leader].endpoint,
        r#"{"get":{"key":"city/1"}}"#,
    ])?;
    let restarted = cluster.nodes[leader].endpoint.clone();
    cluster.wait_for("gossip to see every node alive again", |cluster| {
        cluster.all_alive(&restarted)
    })?;
    cluster.cli(&["members", "-e", &restarted])?;

    heading("Stop every node (SIGTERM: the leader hands over leadership first)");
    for index in 0..NODES {
        cluster.terminate(index)?;
    }
    eprintln!("\ndemo finished; node logs are in {}", demo_dir.display());
    Ok(())
}

struct DemoNode {
    name: String,
    endpoint: String,
    gossip: String,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

/// The demo's processes; killed if the demo stops early.
struct Cluster {
    binary: PathBuf,
    nodes: Vec<DemoNode>,
}

impl Cluster {
    fn start(&mut self, index: usize, extra: &[&str]) -> Result<()> {
        let node = &mut self.nodes[index];
        let log = File::options().create(true).append(true).open(&node.log)?;
        let mut start = Command::new(&self.binary);
        start
            .args(["run", "--data-dir"])
            .arg(&node.data_dir)
            .args([
                "--listen",
                &node.endpoint,
                "--gossip",
                &node.gossip,
                "--stabilization",
                STABILIZATION,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log);
        eprintln!("$ {}   ({})", command::describe(&start), node.name);
        node.process = Some(start.spawn().context("cannot start clusterhost")?);
        Ok(())
    }

    fn status(&self, index: usize) -> Option<Value> {
        let output = Command::new(&self.binary)
            .args(["status", "--json", "-e", &self.nodes[index].endpoint])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|index| self.nodes[*index].process.is_some())
            .collect()
    }

    /// Index of the node every running node names as leader.
    fn leader(&self) -> Result<usize> {
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
        self.nodes
            .iter()
            .position(|node| node.endpoint == first && node.process.is_some())
            .context("the leader is not a running node")
    }

    fn voters_agree(&self, voters: usize) -> Result<bool> {
        if self.leader().is_err() {
            return Ok(false);
        }
        Ok(self.running().iter().all(|index| {
            self.status(*index).is_some_and(|status| {
                let members = status["members"].as_array().cloned().unwrap_or_default();
                let plugin = status["plugin"]["digest"].is_string();
                plugin
                    && members
                        .iter()
                        .filter(|member| member["suffrage"] == "voter")
                        .count()
                        == voters
            })
        }))
    }

    fn all_alive(&self, endpoint: &str) -> Result<bool> {
        let output = Command::new(&self.binary)
            .args(["members", "--json", "-e", endpoint])
            .stderr(Stdio::null())
            .output()?;
        let members: Value = serde_json::from_slice(&output.stdout)?;
        let members = members["members"].as_array().cloned().unwrap_or_default();
        Ok(members.len() == NODES && members.iter().all(|member| member["liveness"] == "alive"))
    }

    fn caught_up(&self) -> Result<bool> {
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

    fn wait_for(&self, what: &str, condition: impl Fn(&Self) -> Result<bool>) -> Result<()> {
        let started = Instant::now();
        loop {
            if condition(self).unwrap_or(false) {
                return Ok(());
            }
            if started.elapsed() > WAIT_TIMEOUT {
                bail!(
                    "timed out waiting for {what}; node logs: {}",
                    self.nodes[0]
                        .log
                        .parent()
                        .map(Path::display)
                        .map(|path| path.to_string())
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn cli(&self, args: &[&str]) -> Result<()> {
        command::run(Command::new(&self.binary).args(args))
    }

    fn kill(&mut self, index: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[index].process.take() {
            eprintln!("$ kill -9 {}   ({})", child.id(), self.nodes[index].name);
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    fn terminate(&mut self, index: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[index].process.take() {
            command::run(Command::new("kill").args(["-TERM", &child.id().to_string()]))?;
            let status = child.wait()?;
            eprintln!("{} exited: {status}", self.nodes[index].name);
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn heading(text: &str) {
    eprintln!("\n=== {text}");
}

fn free_tcp_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}
