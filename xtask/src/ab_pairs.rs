//! Write throughput and p99 at a number of clients on a fresh three-node
//! cluster with one feature on and off, the rows `cargo xtask bench
//! --only metrics-overhead` ([`crate::metrics_overhead`]) and `--only
//! tls-overhead` ([`crate::tls_overhead`]) report. A [`Feature`] says how
//! the two sides differ (the cluster, the node flags, the bench flags);
//! everything else is shared. Runs alternate on/off in pairs, the first of
//! each pair swapping, so both see the same machine noise; the medians are
//! reported.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use clusterhost_tests::TestCluster;

use crate::bench;

/// Nodes per cluster.
const NODES: usize = 3;
/// On/off pairs measured (one with --quick).
const PAIRS: usize = 3;

/// How each run loads its cluster.
pub struct Load<'a> {
    /// `clusterhost bench --duration`.
    pub duration: &'a str,
    /// `clusterhost bench --warmup`.
    pub warmup: &'a str,
    /// Bytes per value written.
    pub value_bytes: usize,
    /// Clients writing at once.
    pub clients: u64,
    /// One pair instead of [`PAIRS`].
    pub quick: bool,
}

/// What the "on" and "off" sides of a pair differ in.
pub trait Feature {
    /// The feature's name in the report and in each run's record
    /// (`{NAME: "on", "report": …}`).
    const NAME: &'static str;
    /// A cluster with no nodes yet, kept in `directory`.
    async fn cluster(&mut self, directory: &Path, on: bool) -> Result<TestCluster>;
    /// Flags for each node besides the harness's.
    fn node_args(&mut self, on: bool) -> Vec<String>;
    /// Flags `clusterhost bench` needs to reach `cluster`.
    async fn bench_args(&self, cluster: &TestCluster, on: bool) -> Result<Vec<String>>;
    /// After the load: proof that the feature really was on (or off).
    async fn check(&self, cluster: &TestCluster, leader: usize, on: bool) -> Result<()>;
}

/// Every run and the medians with the feature on and off.
pub async fn measure<F: Feature>(
    feature: &mut F,
    kv: &Path,
    out_dir: &Path,
    load: &Load<'_>,
) -> Result<Value> {
    let pairs = if load.quick { 1 } else { PAIRS };
    let mut runs = Vec::new();
    for pair in 0..pairs {
        // Swap which goes first, so neither always runs on a warmer machine.
        let order = if pair % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for on in order {
            let name = format!(
                "{}-overhead/{}-clients-{pair}-{}",
                F::NAME,
                load.clients,
                label(on)
            );
            let report = one_run(feature, kv, &out_dir.join(name), on, load).await?;
            runs.push(json!({F::NAME: label(on), "report": report}));
        }
    }
    let on = medians(&runs, F::NAME, "on");
    let off = medians(&runs, F::NAME, "off");
    let ratio = |key: &str| match (on[key].as_f64(), off[key].as_f64()) {
        (Some(on), Some(off)) if off > 0.0 => json!((on / off * 1000.0).round() / 1000.0),
        _ => Value::Null,
    };
    let throughput_change_percent = ratio("ops_per_second")
        .as_f64()
        .map_or(Value::Null, |ratio| {
            json!(((ratio - 1.0) * 1000.0).round() / 10.0)
        });
    Ok(json!({
        "feature": F::NAME,
        "clients": load.clients,
        "nodes": NODES,
        "pairs": pairs,
        "duration": load.duration,
        "value_bytes": load.value_bytes,
        "on": on,
        "off": off,
        "throughput_ratio": ratio("ops_per_second"),
        "p99_ratio": ratio("latency_us_p99"),
        "throughput_change_percent": throughput_change_percent,
        "runs": runs,
    }))
}

fn label(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// A fresh cluster with the feature on or off, loaded once, then stopped.
async fn one_run<F: Feature>(
    feature: &mut F,
    kv: &Path,
    directory: &Path,
    on: bool,
    load: &Load<'_>,
) -> Result<Value> {
    let mut cluster = feature.cluster(directory, on).await?;
    bench::start_nodes(&mut cluster, kv, NODES, || feature.node_args(on)).await;
    let leader = cluster.leader_index().await.map_err(anyhow::Error::msg)?;
    eprintln!(
        "\n== {} {}: write, {} clients, leader",
        F::NAME,
        label(on),
        load.clients
    );
    let bench_args = feature.bench_args(&cluster, on).await?;
    let report = write_load(&cluster.node(leader).endpoint(), &bench_args, load)?;
    feature.check(&cluster, leader, on).await?;
    for n in 0..NODES {
        cluster.terminate(n).await;
    }
    Ok(report)
}

/// `clusterhost bench` writing through `leader` at `load.clients` clients.
fn write_load(leader: &str, bench_args: &[String], load: &Load<'_>) -> Result<Value> {
    let args: Vec<String> = [
        "--workload",
        "write",
        "--clients",
        &load.clients.to_string(),
        "--endpoints",
        leader,
        "--value-bytes",
        &load.value_bytes.to_string(),
        "--duration",
        load.duration,
        "--warmup",
        load.warmup,
    ]
    .into_iter()
    .map(str::to_string)
    .chain(bench_args.iter().cloned())
    .collect();
    bench::bench_report(&args)
}

/// The medians of the runs with `feature` `on_or_off`: writes/s and p99.
fn medians(runs: &[Value], feature: &str, on_or_off: &str) -> Value {
    let side = || runs.iter().filter(|run| run[feature] == on_or_off);
    let of = |key: &str| {
        let mut values: Vec<f64> = side()
            .filter_map(|run| run["report"][key].as_f64())
            .collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    json!({
        "ops_per_second": of("ops_per_second"),
        "latency_us_p99": of("latency_us_p99"),
        "errors": side()
            .filter_map(|run| run["report"]["errors"].as_u64())
            .sum::<u64>(),
    })
}

/// The overhead as a line of the report, `title` first ("Metrics
/// overhead").
pub fn render(overhead: &Value, title: &str) -> Vec<String> {
    if overhead.is_null() {
        return Vec::new();
    }
    let feature = overhead["feature"].as_str().unwrap_or_default();
    let ms = |side: &str| overhead[side]["latency_us_p99"].as_f64().unwrap_or(0.0) / 1000.0;
    let per_run: Vec<String> = overhead["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|run| {
            format!(
                "{} {:.0}",
                run[feature].as_str().unwrap_or_default(),
                run["report"]["ops_per_second"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    vec![format!(
        "{title} ({} clients writing {}-byte values to the leader of a fresh {}-node cluster per run, {} on/off pairs, medians): on {:.0} writes/s, p99 {:.2} ms; off {:.0} writes/s, p99 {:.2} ms; on/off ratio: throughput {}, p99 {} (throughput change with {feature} on {}%). Runs in order (writes/s): {}.",
        overhead["clients"],
        overhead["value_bytes"],
        overhead["nodes"],
        overhead["pairs"],
        overhead["on"]["ops_per_second"].as_f64().unwrap_or(0.0),
        ms("on"),
        overhead["off"]["ops_per_second"].as_f64().unwrap_or(0.0),
        ms("off"),
        overhead["throughput_ratio"],
        overhead["p99_ratio"],
        overhead["throughput_change_percent"],
        per_run.join(", "),
    )]
}
