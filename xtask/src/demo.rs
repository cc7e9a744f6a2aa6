//! `cargo xtask demo`: the main job on the embedded defaults. Builds the
//! plugins and the binary, starts a node with the kv plugin in a fresh data
//! dir under `target/demo/`, writes, reads, kills it with SIGKILL, restarts
//! it, shows every write survived, snapshots, and stops everything it started.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{command, plugins, toolchain};

/// How long a node gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Keys written by the demo.
const DEMO_KEYS: usize = 5;

/// Entry point of `cargo xtask demo`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    crate::expect_no_args("demo", args)?;
    plugins::run(root, &[])?;
    command::run(
        Command::new(toolchain::cargo())
            .current_dir(root)
            .args(["build", "--workspace"]),
    )?;
    let binary = root.join("target/debug/clusterhost");
    let kv = root.join("target/plugins/kv.wasm");
    let demo_dir = root.join("target/demo");
    if demo_dir.exists() {
        std::fs::remove_dir_all(&demo_dir)
            .with_context(|| format!("cannot clear {}", demo_dir.display()))?;
    }
    std::fs::create_dir_all(&demo_dir)?;
    let endpoint = format!("127.0.0.1:{}", free_port()?);
    let gossip = format!("127.0.0.1:{}", free_port()?);
    let demo = Demo {
        binary,
        endpoint,
        gossip,
        data_dir: demo_dir.join("node1"),
        log: demo_dir.join("node1.log"),
    };

    heading("Inspect the plugin");
    demo.cli(&["plugin", "inspect", &kv.to_string_lossy()])?;

    heading("Start a one-node cluster with the kv plugin");
    let mut node = Node(Some(demo.start(&[
        "--plugin",
        &kv.to_string_lossy(),
        "--bootstrap",
    ])?));
    demo.wait_ready()?;

    heading("Write through the CLI");
    for index in 1..=DEMO_KEYS {
        demo.cli(&[
            "apply",
            "-e",
            &demo.endpoint,
            &format!(
                r#"{{"put":{{"key":"city/{index}","value":"{}"}}}}"#,
                city(index)
            ),
        ])?;
    }
    demo.cli(&[
        "apply",
        "-e",
        &demo.endpoint,
        r#"{"cas":{"key":"city/1","expected":"Lisbon","value":"Porto"}}"#,
    ])?;

    heading("Read back (linearizable) and show status");
    demo.cli(&[
        "query",
        "-e",
        &demo.endpoint,
        r#"{"scan":{"prefix":"city/"}}"#,
    ])?;
    demo.cli(&["status", "-e", &demo.endpoint])?;

    heading("kill -9 the node, restart it from its data dir (no --plugin, no --bootstrap)");
    node.kill()?;
    node.0 = Some(demo.start(&[])?);
    demo.wait_ready()?;
    demo.cli(&[
        "query",
        "-e",
        &demo.endpoint,
        r#"{"scan":{"prefix":"city/"}}"#,
    ])?;

    heading("Take a snapshot");
    demo.cli(&["snapshot", "-e", &demo.endpoint])?;
    demo.cli(&["status", "-e", &demo.endpoint])?;

    heading("Stop");
    node.terminate()?;
    eprintln!("demo finished; node log: {}", demo.log.display());
    Ok(())
}

struct Demo {
    binary: PathBuf,
    endpoint: String,
    gossip: String,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Demo {
    fn start(&self, extra: &[&str]) -> Result<Child> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut start = Command::new(&self.binary);
        start
            .args(["run", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &self.endpoint, "--gossip", &self.gossip])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log);
        eprintln!("$ {}", command::describe(&start));
        start.spawn().context("cannot start clusterhost")
    }

    fn wait_ready(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let status = Command::new(&self.binary)
                .args(["status", "--json", "-e", &self.endpoint])
                .stderr(Stdio::null())
                .output()?;
            let text = String::from_utf8_lossy(&status.stdout);
            if status.status.success()
                && text.contains("\"role\": \"leader\"")
                && !text.contains("\"digest\": null")
            {
                eprintln!("node ready after {} ms", started.elapsed().as_millis());
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "node did not become ready in {} s; see {}",
                    START_TIMEOUT.as_secs(),
                    self.log.display()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn cli(&self, args: &[&str]) -> Result<()> {
        command::run(Command::new(&self.binary).args(args))
    }
}

/// A node process, killed if the demo stops early.
struct Node(Option<Child>);

impl Node {
    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.0.take() {
            eprintln!("$ kill -9 {}", child.id());
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    fn terminate(&mut self) -> Result<()> {
        if let Some(mut child) = self.0.take() {
            command::run(Command::new("kill").args(["-TERM", &child.id().to_string()]))?;
            let status = child.wait()?;
            eprintln!("node exited: {status}");
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn heading(text: &str) {
    eprintln!("\n=== {text}");
}

fn city(index: usize) -> &'static str {
    ["Lisbon", "Oslo", "Quito", "Hanoi", "Dakar"][(index - 1) % 5]
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
