//! The metrics-overhead row of `cargo xtask bench` (alone: `cargo xtask
//! bench --only metrics-overhead`): write throughput and p99 at
//! [`CLIENTS`] clients on a fresh three-node cluster with metrics on
//! (`--metrics-listen`, recording everything) and off (no listener, so
//! every recording call returns at once). Runs alternate on/off in pairs,
//! the first of each pair swapping, so both see the same machine noise;
//! the medians are reported.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use clusterhost_tests::ops::{free_ops_addr, scrape};
use clusterhost_tests::{NodeOptions, TestCluster, paths};

/// Writing clients, as the closing note asks.
const CLIENTS: u64 = 64;
/// Nodes per cluster.
const NODES: usize = 3;
/// On/off pairs measured (one with --quick).
const PAIRS: usize = 3;
/// How long a cluster gets to form.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Learners vote after this long: a bench cluster forms quickly.
const STABILIZATION: Duration = Duration::from_secs(1);

/// How each run loads its cluster.
pub struct Load<'a> {
    /// `clusterhost bench --duration`.
    pub duration: &'a str,
    /// `clusterhost bench --warmup`.
    pub warmup: &'a str,
    /// Bytes per value written.
    pub value_bytes: usize,
    /// One pair instead of [`PAIRS`].
    pub quick: bool,
}

/// Every run and the medians with metrics on and off.
pub async fn measure(kv: &Path, out_dir: &Path, load: &Load<'_>) -> Result<Value> {
    let pairs = if load.quick { 1 } else { PAIRS };
    let mut runs = Vec::new();
    for pair in 0..pairs {
        // Swap which goes first, so neither always runs on a warmer machine.
        let order = if pair % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for metrics_on in order {
            let directory = out_dir.join(format!("metrics-overhead/{pair}-{}", label(metrics_on)));
            let report = one_run(kv, &directory, metrics_on, load).await?;
            runs.push(json!({"metrics": label(metrics_on), "report": report}));
        }
    }
    let on = medians(&runs, "on");
    let off = medians(&runs, "off");
    let throughput_change_percent = match (
        on["ops_per_second"].as_f64(),
        off["ops_per_second"].as_f64(),
    ) {
        (Some(on), Some(off)) if off > 0.0 => json!(((on - off) / off * 1000.0).round() / 10.0),
        _ => Value::Null,
    };
    Ok(json!({
        "clients": CLIENTS,
        "nodes": NODES,
        "pairs": pairs,
        "duration": load.duration,
        "on": on,
        "off": off,
        "throughput_change_percent": throughput_change_percent,
        "runs": runs,
    }))
}

fn label(metrics_on: bool) -> &'static str {
    if metrics_on { "on" } else { "off" }
}

/// A fresh cluster with metrics on or off, loaded once, then stopped.
async fn one_run(kv: &Path, directory: &Path, metrics_on: bool, load: &Load<'_>) -> Result<Value> {
    let mut cluster = TestCluster::in_directory(directory);
    let mut ops = Vec::new();
    for n in 0..NODES {
        let mut options = NodeOptions {
            stabilization: Some(STABILIZATION),
            ..NodeOptions::default()
        };
        if metrics_on {
            let addr = free_ops_addr();
            options.extra_args = vec!["--metrics-listen".to_string(), addr.to_string()];
            ops.push(addr);
        }
        if n == 0 {
            cluster.bootstrap_node(kv, options).await;
        } else {
            cluster.start_joining(0, options).await;
        }
    }
    cluster.wait_for_voters(NODES, WAIT_TIMEOUT).await;
    let leader = cluster.leader_index().await.map_err(anyhow::Error::msg)?;
    let report = write_load(&cluster.node(leader).endpoint(), metrics_on, load)?;
    // The "on" runs really recorded: the leader's proposals are counted.
    if metrics_on {
        let scraped = scrape(ops[leader]).await.map_err(anyhow::Error::msg)?;
        let proposed = scraped
            .get("clusterhost_raft_proposals_total{outcome=\"ok\"}")
            .copied()
            .unwrap_or(0.0);
        anyhow::ensure!(proposed > 0.0, "metrics on, yet no proposal counted");
    }
    for n in 0..NODES {
        cluster.terminate(n).await;
    }
    Ok(report)
}

/// `clusterhost bench` writing through `leader` at [`CLIENTS`] clients.
fn write_load(leader: &str, metrics_on: bool, load: &Load<'_>) -> Result<Value> {
    eprintln!(
        "\n== metrics {}: write, {CLIENTS} clients, leader",
        label(metrics_on)
    );
    let output = Command::new(paths::clusterhost_binary())
        .args(["bench", "--json", "--workload", "write"])
        .args(["--clients", &CLIENTS.to_string()])
        .args(["--endpoints", leader])
        .args(["--value-bytes", &load.value_bytes.to_string()])
        .args(["--duration", load.duration, "--warmup", load.warmup])
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("clusterhost bench failed: {}", output.status);
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The medians of the runs with metrics `on_or_off`: writes/s and p99.
fn medians(runs: &[Value], on_or_off: &str) -> Value {
    let of = |key: &str| {
        let mut values: Vec<f64> = runs
            .iter()
            .filter(|run| run["metrics"] == on_or_off)
            .filter_map(|run| run["report"][key].as_f64())
            .collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    json!({
        "ops_per_second": of("ops_per_second"),
        "latency_us_p99": of("latency_us_p99"),
        "errors": runs
            .iter()
            .filter(|run| run["metrics"] == on_or_off)
            .filter_map(|run| run["report"]["errors"].as_u64())
            .sum::<u64>(),
    })
}

/// The overhead as a line of the report.
pub fn render(overhead: &Value) -> Vec<String> {
    if overhead.is_null() {
        return Vec::new();
    }
    let ms = |side: &str| overhead[side]["latency_us_p99"].as_f64().unwrap_or(0.0) / 1000.0;
    let per_run: Vec<String> = overhead["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|run| {
            format!(
                "{} {:.0}",
                run["metrics"].as_str().unwrap_or_default(),
                run["report"]["ops_per_second"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    vec![format!(
        "Metrics overhead ({} clients writing to the leader of a fresh {}-node cluster per run, {} on/off pairs, medians): on {:.0} writes/s, p99 {:.2} ms; off {:.0} writes/s, p99 {:.2} ms; throughput change with metrics on {}%. Runs in order (writes/s): {}.",
        overhead["clients"],
        overhead["nodes"],
        overhead["pairs"],
        overhead["on"]["ops_per_second"].as_f64().unwrap_or(0.0),
        ms("on"),
        overhead["off"]["ops_per_second"].as_f64().unwrap_or(0.0),
        ms("off"),
        overhead["throughput_change_percent"],
        per_run.join(", "),
    )]
}
