//! One state-size row of `cargo xtask bench --only growth`: a fresh
//! three-node cluster with a plugin, loaded to a state size, then: the
//! `clusterhost snapshot` time and size, a follower's restart after kill -9
//! until caught up, a new node's join until caught up, a hot-swap under
//! writes, and the RSS of every node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use clusterhost_tests::{NodeOptions, TestCluster};

use crate::bench::{STABILIZATION, directory_bytes, start_nodes};
use crate::growth_load::{self, Puts, SwapWriters};

/// Nodes of every state-size cluster (before the new one joins).
const NODES: usize = 3;
/// Value size the state is loaded with.
const LOAD_VALUE_BYTES: usize = 64 * 1024;
/// Concurrent clients loading it.
const LOAD_CLIENTS: u64 = 16;
/// The slowest rate any step moving the state (load, snapshot, restart,
/// catch-up) is given time for, plus [`STEP_TIME_BASE`].
const STEP_BYTES_PER_SECOND_MIN: u64 = 1_000_000;
const STEP_TIME_BASE: Duration = Duration::from_secs(60);
/// The quota is raised to the state size times this (over 100) when the
/// default is too small: keys and encoding take room beyond the values.
const QUOTA_HEADROOM_PERCENT: u64 = 150;
/// How long writers run before the deploy and after it: a load schedule,
/// not a wait for a condition.
const SWAP_LEAD_IN: Duration = Duration::from_millis(500);
const SWAP_LEAD_OUT: Duration = Duration::from_millis(500);

/// The plugin a row runs and what it hot-swaps to.
pub struct Plugin {
    /// Its name in the report (`kv`, `kv_disk`).
    pub name: &'static str,
    pub wasm: PathBuf,
    /// The plugin to deploy over it: another plugin, or `None` for a
    /// second build of this one (the same bytes with a custom section).
    pub swap_to: Option<PathBuf>,
}

/// Time allowed to a step that moves `bytes`.
fn step_limit(bytes: u64) -> Duration {
    STEP_TIME_BASE + Duration::from_secs(bytes / STEP_BYTES_PER_SECOND_MIN)
}

/// The row for `plugin` at `state_bytes`, measured on a cluster under
/// `directory`, which is removed afterwards but for the node logs.
pub async fn measure(plugin: &Plugin, state_bytes: u64, directory: &Path) -> Value {
    eprintln!(
        "\n== growth: {} with {} bytes of state",
        plugin.name, state_bytes
    );
    let mut cluster = TestCluster::in_directory(directory);
    start_nodes(&mut cluster, &plugin.wasm, NODES, Vec::new).await;
    let mut row = json!({"plugin": plugin.name, "state_bytes": state_bytes});
    let measured = measure_on(&mut cluster, plugin, state_bytes, directory).await;
    match measured {
        Ok(Measured::Done(fields)) => merge(&mut row, fields),
        Ok(Measured::NotPossible(reason)) => row["not_possible"] = json!(reason),
        Err(error) => row["error"] = json!(format!("{error:#}")),
    }
    eprintln!("growth: {row}");
    stop_and_clean(&mut cluster).await;
    row
}

enum Measured {
    Done(Value),
    /// The cluster refused the state (its quota, say): why.
    NotPossible(String),
}

async fn measure_on(
    cluster: &mut TestCluster,
    plugin: &Plugin,
    state_bytes: u64,
    directory: &Path,
) -> Result<Measured> {
    let leader = cluster.leader_index().await.map_err(anyhow::Error::msg)?;
    let endpoint = cluster.node(leader).endpoint();
    if let Err(refused) = raise_quota(&endpoint, state_bytes).await {
        return Ok(Measured::NotPossible(refused));
    }
    let puts = Puts {
        count: state_bytes.div_ceil(LOAD_VALUE_BYTES as u64),
        key_space: u64::MAX,
        value_bytes: LOAD_VALUE_BYTES,
        clients: LOAD_CLIENTS,
    };
    let limit = step_limit(state_bytes);
    let load = match growth_load::write_puts(&endpoint, puts, limit).await {
        Ok(load) => load,
        Err(error) if format!("{error:#}").contains("quota") => {
            return Ok(Measured::NotPossible(format!("{error:#}")));
        }
        Err(error) => return Err(error),
    };
    for n in cluster.running() {
        growth_load::wait_caught_up(cluster, n, leader, limit).await?;
    }
    let rss_after_load = cluster.rss_kib();
    // Each step on its own: one that fails (a snapshot past its time, say)
    // is reported in its cell and the others are still measured.
    let snapshot = outcome(snapshot_all(cluster, leader, limit).await);
    let restart = outcome(
        restart_follower(cluster, leader, limit)
            .await
            .map(milliseconds),
    );
    let join = outcome(
        join_new_node(cluster, leader, limit)
            .await
            .map(milliseconds),
    );
    let hot_swap = outcome(hot_swap(cluster, leader, plugin, directory, limit).await);
    Ok(Measured::Done(json!({
        "load_ms": load.as_millis() as u64,
        "load_puts": puts.count,
        "load_value_bytes": LOAD_VALUE_BYTES,
        "load_clients": LOAD_CLIENTS,
        "snapshot": snapshot,
        "restart": restart,
        "join": join,
        "hot_swap": hot_swap,
        "rss_kib_after_load": rss_after_load,
        "rss_kib_at_end": cluster.rss_kib(),
    })))
}

/// A step's fields, or `{"error": …}`.
fn outcome(result: Result<Value>) -> Value {
    result.unwrap_or_else(|error| json!({"error": format!("{error:#}")}))
}

fn milliseconds(took: Duration) -> Value {
    json!({"ms": took.as_millis() as u64})
}

/// Raise the cluster's state quota when its default is below what
/// `state_bytes` needs; the cluster's refusal when it cannot be raised.
async fn raise_quota(endpoint: &str, state_bytes: u64) -> Result<(), String> {
    let wanted = state_bytes.saturating_mul(QUOTA_HEADROOM_PERCENT) / 100;
    if wanted <= clusterhost::limits::STATE_QUOTA_BYTES_DEFAULT {
        return Ok(());
    }
    let wanted = wanted.to_string();
    let args = [
        "config",
        "set",
        "state_quota_bytes",
        &wanted,
        "-e",
        endpoint,
    ];
    growth_load::timed_cli(&args, STEP_TIME_BASE)
        .await
        .map(|_| ())
        .map_err(|error| format!("state quota: {error:#}"))
}

/// `clusterhost snapshot` on every node, the leader first: the leader's
/// time and the size of its snapshot directory.
async fn snapshot_all(cluster: &TestCluster, leader: usize, limit: Duration) -> Result<Value> {
    let mut order = vec![leader];
    order.extend(cluster.running().into_iter().filter(|n| *n != leader));
    let mut leader_ms = 0;
    for n in order {
        let endpoint = cluster.node(n).endpoint();
        let (took, _) = growth_load::timed_cli(&["snapshot", "-e", &endpoint], limit).await?;
        if n == leader {
            leader_ms = took.as_millis() as u64;
        }
    }
    let bytes = directory_bytes(&cluster.node(leader).data_dir().join("snapshots"));
    Ok(json!({"ms": leader_ms, "bytes": bytes}))
}

/// kill -9 a follower and start it again: the time until it has applied
/// what the leader has.
async fn restart_follower(
    cluster: &mut TestCluster,
    leader: usize,
    limit: Duration,
) -> Result<Duration> {
    let follower = cluster
        .running()
        .into_iter()
        .find(|n| *n != leader)
        .ok_or_else(|| anyhow!("no follower"))?;
    cluster.kill9(follower);
    let started = std::time::Instant::now();
    cluster.restart_without_waiting(follower).await;
    growth_load::wait_caught_up(cluster, follower, leader, limit).await?;
    Ok(started.elapsed())
}

/// Start a new node joining through the leader: the time until it has
/// applied what the leader has.
async fn join_new_node(
    cluster: &mut TestCluster,
    leader: usize,
    limit: Duration,
) -> Result<Duration> {
    let options = NodeOptions {
        stabilization: Some(STABILIZATION),
        ..NodeOptions::default()
    };
    let n = cluster.add_node(options);
    cluster.set_join(n, &[leader]);
    let started = std::time::Instant::now();
    cluster.restart_without_waiting(n).await;
    growth_load::wait_caught_up(cluster, n, leader, limit).await?;
    Ok(started.elapsed())
}

/// Deploy the row's swap target while writers put to the leader: the
/// deploy's time and the longest write across it.
async fn hot_swap(
    cluster: &TestCluster,
    leader: usize,
    plugin: &Plugin,
    directory: &Path,
    limit: Duration,
) -> Result<Value> {
    let (target, to) = match &plugin.swap_to {
        Some(path) => (path.clone(), file_stem(path)),
        None => {
            let bytes = std::fs::read(&plugin.wasm)?;
            let rebuilt = growth_load::with_custom_section(&bytes, "growth-bench", b"second build");
            let path = directory.join(format!("{}-second-build.wasm", plugin.name));
            std::fs::write(&path, rebuilt)?;
            (path, format!("{}, second build", plugin.name))
        }
    };
    let endpoint = cluster.node(leader).endpoint();
    let writers = SwapWriters::start(&endpoint).await?;
    tokio::time::sleep(SWAP_LEAD_IN).await;
    let target = target.to_string_lossy().into_owned();
    let deployed =
        growth_load::timed_cli(&["plugin", "deploy", "-e", &endpoint, &target], limit).await;
    tokio::time::sleep(SWAP_LEAD_OUT).await;
    let writes = writers.stop().await;
    let (deploy, _) = deployed?;
    Ok(json!({
        "to": to,
        "deploy_ms": deploy.as_millis() as u64,
        "write_max_ms": writes.longest.as_millis() as u64,
        "writes": writes.writes,
        "write_errors": writes.errors,
    }))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map_or(String::new(), |stem| stem.to_string_lossy().into_owned())
}

/// Add `fields` (an object) to `row`.
pub fn merge(row: &mut Value, fields: Value) {
    if let (Some(row), Value::Object(fields)) = (row.as_object_mut(), fields) {
        row.extend(fields);
    }
}

/// SIGTERM every running node, then remove their data (the state can be
/// gigabytes); their logs stay.
pub async fn stop_and_clean(cluster: &mut TestCluster) {
    for n in cluster.running() {
        cluster.terminate(n).await;
    }
    for node in cluster.nodes() {
        let _ = std::fs::remove_dir_all(node.data_dir());
    }
}
