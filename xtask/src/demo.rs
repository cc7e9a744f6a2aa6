//! `cargo xtask demo`: the main job on the embedded defaults. Builds the
//! plugins and the binary, then on loopback: starts a node with the kv
//! plugin, joins two more through gossip (they get the plugin from the
//! cluster), writes through a follower, kills the leader with SIGKILL, shows
//! the new leader with every write intact, restarts the old leader, prints
//! the members table, deploys kv_v2 live while clients keep writing, and
//! stops everything it started.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::local_cluster::LocalCluster;
use crate::{command, plugins, toolchain};
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
    let mut cluster = LocalCluster::new(&root.join("target/debug/clusterhost"), &demo_dir, NODES)?;
    let kv = root
        .join("target/plugins/kv.wasm")
        .to_string_lossy()
        .into_owned();
    let quick = ["--stabilization", STABILIZATION];

    heading("The plugin: a WebAssembly component implementing clusterhost:fsm/state-machine");
    cluster.cli(&["plugin", "inspect", &kv])?;

    heading("Start node1 with the kv plugin; node2 and node3 join through gossip (no --plugin)");
    cluster.start(0, &[&quick[..], &["--plugin", &kv, "--bootstrap"]].concat())?;
    let seed = cluster.nodes[0].gossip.clone();
    cluster.start(1, &[&quick[..], &["--join", &seed]].concat())?;
    let second = cluster.nodes[1].gossip.clone();
    cluster.start(2, &[&quick[..], &["--join", &second]].concat())?;
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
    let survivor_endpoint = cluster.nodes[survivor].endpoint.clone();
    cluster.cli(&[
        "apply",
        "-e",
        &survivor_endpoint,
        r#"{"cas":{"key":"city/1","expected":"Lisbon","value":"Porto"}}"#,
    ])?;
    cluster.cli(&[
        "query",
        "-e",
        &survivor_endpoint,
        r#"{"scan":{"prefix":"city/"}}"#,
    ])?;

    heading(&format!(
        "Restart {} from its data dir; it rejoins and catches up",
        cluster.nodes[leader].name
    ));
    let rejoin = cluster.nodes[new_leader].gossip.clone();
    cluster.start(leader, &[&quick[..], &["--join", &rejoin]].concat())?;
    cluster.wait_for(
        "all three nodes applied the same index",
        LocalCluster::caught_up,
    )?;
    let restarted = cluster.nodes[leader].endpoint.clone();
    cluster.cli(&[
        "query",
        "--consistency",
        "stale",
        "-e",
        &restarted,
        r#"{"get":{"key":"city/1"}}"#,
    ])?;
    cluster.wait_for("gossip to see every node alive again", |cluster| {
        all_alive(cluster, &restarted)
    })?;
    cluster.cli(&["members", "-e", &restarted])?;

    heading("Deploy kv_v2 (adds per-key versions) live, while 4 clients keep writing");
    let endpoints: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.endpoint.clone())
        .collect();
    let mut writers = cluster
        .command()
        .args([
            "bench",
            "--clients",
            "4",
            "--duration",
            "4s",
            "--warmup",
            "0s",
            "--keys",
            "100",
        ])
        .args(["--endpoints", &endpoints.join(",")])
        .spawn()
        .context("cannot start the background writers")?;
    let kv_v2 = root
        .join("target/plugins/kv_v2.wasm")
        .to_string_lossy()
        .into_owned();
    cluster.cli(&["plugin", "deploy", "-e", &restarted, &kv_v2])?;
    let writers = writers.wait()?;
    anyhow::ensure!(
        writers.success(),
        "the background writers failed: {writers}"
    );
    cluster.cli(&["plugin", "list", "-e", &cluster.nodes[follower].endpoint])?;
    cluster.cli(&[
        "apply",
        "-e",
        &survivor_endpoint,
        r#"{"put":{"key":"city/1","value":"Braga"}}"#,
    ])?;
    cluster.cli(&["query", "-e", &restarted, r#"{"get":{"key":"city/1"}}"#])?;

    heading("Stop every node (SIGTERM: the leader hands over leadership first)");
    for index in 0..NODES {
        cluster.terminate(index)?;
    }
    eprintln!("\ndemo finished; node logs are in {}", demo_dir.display());
    Ok(())
}

fn all_alive(cluster: &LocalCluster, endpoint: &str) -> Result<bool> {
    let members = cluster
        .json(&["members", "--json", "-e", endpoint])
        .unwrap_or_default();
    let members = members["members"].as_array().cloned().unwrap_or_default();
    Ok(members.len() == NODES && members.iter().all(|member| member["liveness"] == "alive"))
}

fn heading(text: &str) {
    eprintln!("\n=== {text}");
}
