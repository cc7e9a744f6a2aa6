//! `cargo xtask demo`: the main job on the embedded defaults. Builds the
//! plugins and the binary, then on loopback, secure as on a real network
//! (mutual TLS on every gRPC port, gossip sealed with a key; certificates
//! and key made in a temp dir by `clusterhost certs` and `clusterhost
//! gossip keygen`, every client command presenting `--cacert --cert
//! --key`): starts a node with the kv plugin, joins two more through gossip (they get the plugin from the
//! cluster), writes through a follower, kills the leader with SIGKILL, shows
//! the new leader with every write intact, restarts the old leader, prints
//! the members table, deploys kv_v2 live while clients keep writing, and
//! stops everything it started. The cluster is the tests' own harness.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clusterhost_tests::cli::{CLI_TIMEOUT, CliOutput, run_cli};
use clusterhost_tests::paths::clusterhost_binary;
use clusterhost_tests::{NodeOptions, TestCluster, wait_for};

use crate::{command, plugins, toolchain};

/// Nodes in the demo cluster.
const NODES: usize = 3;
/// Cities written by the demo, one key each.
const CITIES: [&str; 5] = ["Lisbon", "Oslo", "Quito", "Hanoi", "Dakar"];
/// The demo's membership timing: quick promotion so it does not wait long.
const STABILIZATION: Duration = Duration::from_secs(1);
/// How long the cluster gets to reach each expected state.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The client certificate the demo's commands present.
const CLIENT_CERT: &str = "ops";
/// The demo's gossip key file, in the certificates' directory.
const GOSSIP_KEY_FILE: &str = "gossip.key";

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
    // Private keys live only as long as the demo.
    let pki_dir = tempfile::Builder::new()
        .prefix("clusterhost-demo-pki-")
        .tempdir()
        .context("cannot create a temp dir for the certificates")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(demo(root, &demo_dir, pki_dir.path()))?;
    eprintln!("\ndemo finished; node logs are in {}", demo_dir.display());
    Ok(())
}

async fn demo(root: &Path, demo_dir: &Path, pki_dir: &Path) -> Result<()> {
    let kv = root.join("target/plugins/kv.wasm");
    let cli = make_pki(pki_dir).await?;
    let mut cluster = TestCluster::in_directory_with_pki(demo_dir, pki_dir, CLIENT_CERT).await;
    heading("The plugin: a WebAssembly component implementing clusterhost:fsm/state-machine");
    show(
        &cluster
            .cli_anywhere(&["plugin", "inspect", &kv.to_string_lossy()])
            .await,
    )?;
    let leader = form(&mut cluster, &cli, &kv).await?;
    let follower = (leader + 1) % NODES;
    heading(&format!(
        "Write through node {follower} (a follower: it forwards to the leader)"
    ));
    for (index, city) in CITIES.iter().enumerate() {
        let command = format!(
            r#"{{"put":{{"key":"city/{}","value":"{city}"}}}}"#,
            index + 1
        );
        show(&cli.run(&cluster, follower, &["apply", &command]).await)?;
    }
    let (new_leader, survivor) = fail_over(&mut cluster, &cli, leader).await?;
    rejoin(&mut cluster, &cli, leader, new_leader).await?;
    deploy_under_writes(&cluster, &cli, root, leader, follower).await?;
    let put = r#"{"put":{"key":"city/1","value":"Braga"}}"#;
    show(&cli.run(&cluster, survivor, &["apply", put]).await)?;
    let get = r#"{"get":{"key":"city/1"}}"#;
    show(&cli.run(&cluster, leader, &["query", get]).await)?;
    heading("Stop every node (SIGTERM: the leader hands over leadership first)");
    for n in 0..NODES {
        let exit = cluster.terminate(n).await;
        eprintln!("node {n} exited: {exit}");
    }
    Ok(())
}

/// The client side of the demo's TLS: the CA and the certificate every
/// client command presents.
struct Cli {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Cli {
    /// `clusterhost ARGS` against node `n`, with `--cacert --cert --key`.
    async fn run(&self, cluster: &TestCluster, n: usize, args: &[&str]) -> CliOutput {
        let mut args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        args.extend(["--endpoint".to_string(), cluster.node(n).endpoint()]);
        args.extend(self.flags());
        run_cli(&args, &[], CLI_TIMEOUT).await
    }

    fn flags(&self) -> Vec<String> {
        [
            ("--cacert", &self.ca),
            ("--cert", &self.cert),
            ("--key", &self.key),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.to_string_lossy().into_owned()])
        .collect()
    }
}

/// Make the CA, a node certificate per node, the client certificate and
/// the gossip key in `dir` with the binary's own commands, showing each.
async fn make_pki(dir: &Path) -> Result<Cli> {
    heading("Certificates and a gossip key (in a temp dir): mutual TLS and sealed gossip");
    let dir_arg = dir.to_string_lossy().into_owned();
    show(&run_cli(["certs", "init", "--dir", &dir_arg], &[], CLI_TIMEOUT).await)?;
    for n in 0..NODES {
        // The names the cluster harness gives its nodes' certificates.
        let name = format!("node-{n}");
        let args = [
            "certs",
            "node",
            "--dir",
            &dir_arg,
            "--name",
            &name,
            "--ip",
            "127.0.0.1",
        ];
        show(&run_cli(args, &[], CLI_TIMEOUT).await)?;
    }
    let args = [
        "certs",
        "client",
        "--dir",
        &dir_arg,
        "--name",
        CLIENT_CERT,
        "--role",
        "admin",
    ];
    show(&run_cli(args, &[], CLI_TIMEOUT).await)?;
    let keygen = run_cli(["gossip", "keygen"], &[], CLI_TIMEOUT).await;
    eprintln!(
        "$ {} > {}",
        keygen.command_line,
        dir.join(GOSSIP_KEY_FILE).display()
    );
    anyhow::ensure!(keygen.code == Some(0), "`{}` failed", keygen.command_line);
    std::fs::write(dir.join(GOSSIP_KEY_FILE), &keygen.stdout)
        .context("cannot write the gossip key")?;
    Ok(Cli {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{CLIENT_CERT}.pem")),
        key: dir.join(format!("{CLIENT_CERT}-key.pem")),
    })
}

/// Node 0 bootstraps with `kv`, the others join through gossip; returns the
/// leader once all vote.
async fn form(cluster: &mut TestCluster, cli: &Cli, kv: &Path) -> Result<usize> {
    heading("Start node 0 with the kv plugin; nodes 1 and 2 join through gossip (no --plugin)");
    let quick = NodeOptions {
        stabilization: Some(STABILIZATION),
        ..NodeOptions::default()
    };
    cluster.bootstrap_node(kv, quick.clone()).await;
    show_command_line(cluster, 0);
    cluster.start_joining(0, quick.clone()).await;
    cluster.start_joining(1, quick).await;
    let leader = cluster.wait_for_voters(NODES, WAIT_TIMEOUT).await;
    show(&cli.run(cluster, 1, &["status"]).await)?;
    Ok(leader)
}

/// Print how the harness started node `n` (the first line of its log).
fn show_command_line(cluster: &TestCluster, n: usize) {
    let log = cluster.node(n).log();
    let started = log
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("==== "))
        .and_then(|line| line.strip_suffix(" ===="));
    if let Some(command_line) = started {
        eprintln!("$ {command_line}");
    }
}

/// kill -9 the leader, show the new one takes writes and has everything;
/// returns the new leader and the other survivor.
async fn fail_over(cluster: &mut TestCluster, cli: &Cli, leader: usize) -> Result<(usize, usize)> {
    heading(&format!("kill -9 the leader, node {leader}"));
    cluster.kill9(leader);
    let started = Instant::now();
    let new_leader = wait_for("a new leader", WAIT_TIMEOUT, || cluster.leader_index()).await;
    eprintln!(
        "node {new_leader} leads after {} ms",
        started.elapsed().as_millis()
    );
    let survivor = (0..NODES)
        .find(|n| *n != leader && *n != new_leader)
        .unwrap_or(new_leader);
    let swap = r#"{"cas":{"key":"city/1","expected":"Lisbon","value":"Porto"}}"#;
    show(&cli.run(cluster, survivor, &["apply", swap]).await)?;
    let scan = r#"{"scan":{"prefix":"city/"}}"#;
    show(&cli.run(cluster, survivor, &["query", scan]).await)?;
    Ok((new_leader, survivor))
}

/// Restart the killed node from its data dir; it catches up and gossip
/// sees every node alive.
async fn rejoin(cluster: &mut TestCluster, cli: &Cli, killed: usize, seed: usize) -> Result<()> {
    heading(&format!(
        "Restart node {killed} from its data dir; it rejoins and catches up"
    ));
    cluster.set_join(killed, &[seed]);
    cluster.restart(killed).await;
    cluster.wait_caught_up(WAIT_TIMEOUT).await;
    let city = r#"{"get":{"key":"city/1"}}"#;
    let stale_read = ["query", "--consistency", "stale", city];
    show(&cli.run(cluster, killed, &stale_read).await)?;
    wait_for(
        "gossip to see every node alive again",
        WAIT_TIMEOUT,
        || async {
            let members = cluster.members(killed).await;
            let members = members["members"].as_array().cloned().unwrap_or_default();
            members.len() == NODES && members.iter().all(|member| member["liveness"] == "alive")
        },
    )
    .await;
    show(&cli.run(cluster, killed, &["members"]).await)
}

/// Deploy kv_v2 through `deploy_on` while four clients keep writing to
/// every node, then list the history on `list_on`.
async fn deploy_under_writes(
    cluster: &TestCluster,
    cli: &Cli,
    root: &Path,
    deploy_on: usize,
    list_on: usize,
) -> Result<()> {
    heading("Deploy kv_v2 (adds per-key versions) live, while 4 clients keep writing");
    let endpoints: Vec<String> = (0..NODES).map(|n| cluster.node(n).endpoint()).collect();
    let writers = tokio::process::Command::new(clusterhost_binary())
        .args([
            "bench",
            "--clients",
            "4",
            "--duration",
            "4s",
            "--warmup",
            "0s",
        ])
        .args(["--keys", "100", "--endpoints", &endpoints.join(",")])
        .args(cli.flags())
        .status();
    let kv_v2 = root
        .join("target/plugins/kv_v2.wasm")
        .to_string_lossy()
        .into_owned();
    let deploy_args = ["plugin", "deploy", kv_v2.as_str()];
    let deploy = cli.run(cluster, deploy_on, &deploy_args);
    let (writers, deploy) = tokio::join!(writers, deploy);
    show(&deploy)?;
    let writers = writers.context("cannot run the background writers")?;
    anyhow::ensure!(
        writers.success(),
        "the background writers failed: {writers}"
    );
    show(&cli.run(cluster, list_on, &["plugin", "list"]).await)
}

/// Print a command and what it printed, as a person would have seen it;
/// fail if it failed.
fn show(output: &CliOutput) -> Result<()> {
    eprintln!("$ {}", output.command_line);
    eprint!("{}", output.stdout);
    eprint!("{}", output.stderr);
    anyhow::ensure!(output.code == Some(0), "`{}` failed", output.command_line);
    Ok(())
}

fn heading(text: &str) {
    eprintln!("\n=== {text}");
}
