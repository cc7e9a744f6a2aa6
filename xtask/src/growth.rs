//! `cargo xtask bench --only growth [--quick] [--growth-max-state 100MB]
//! [--duration 10s]`: how cost grows, measured on release builds over
//! loopback and written to `target/bench/growth.md` and `growth.json`:
//!
//! - writes at 64 clients to the leader: 3 vs 5 nodes, and 256 B vs 4 KiB
//!   vs 64 KiB values on 3 nodes;
//! - state size with the kv plugin (10 MB, 100 MB; 1 GB is not possible:
//!   its state lives in plugin memory, capped at 512 MiB, and its snapshots
//!   are whole in memory) and with kv_disk (10 MB, 100 MB, 1 GB): see
//!   [`crate::growth_state`];
//! - log length behind the last snapshot (100k, 1M entries): a follower's
//!   restart after kill -9 until caught up.
//!
//! `--growth-max-state` leaves out the larger states; `--quick` keeps
//! 10 MB states and 100k entries only, and shortens the load rows.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use clusterhost_tests::{TestCluster, paths};

use crate::bench::{bench_report, start_nodes};
use crate::bench_report as machine_report;
use crate::growth_load::{self, Puts};
use crate::growth_report::{self, parse_bytes};
use crate::growth_state::{self, Plugin, merge, stop_and_clean};

/// Measured time and warm-up of every throughput row (`--duration`
/// overrides the first), and both with `--quick`.
const DURATION: &str = "10s";
const WARMUP: &str = "2s";
const QUICK_DURATION: &str = "3s";
const QUICK_WARMUP: &str = "1s";
/// Clients of every throughput row, all writing to the leader.
const CLIENTS: u64 = 64;
/// Cluster sizes compared at [`SMALL_VALUE_BYTES`].
const NODE_COUNTS: [usize; 2] = [3, 5];
const SMALL_VALUE_BYTES: usize = 256;
/// Value sizes compared on three nodes.
const VALUE_SIZES: [usize; 3] = [SMALL_VALUE_BYTES, 4 * 1024, 64 * 1024];
/// Distinct keys a throughput row writes, at most...
const KEYS_MAX: u64 = 10_000;
/// ...and fewer for large values, so the kv state stays about this size
/// (far below the plugin memory cap).
const THROUGHPUT_STATE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// State sizes per plugin (decimal megabytes, as the issue names them).
const KV_STATE_SIZES: [u64; 2] = [10_000_000, 100_000_000];
const KV_DISK_STATE_SIZES: [u64; 3] = [10_000_000, 100_000_000, 1_000_000_000];
/// The size the kv row names as not possible, and why.
const KV_IMPOSSIBLE_STATE_BYTES: u64 = 1_000_000_000;
const KV_IMPOSSIBLE_REASON: &str =
    "kv keeps its state in plugin memory (capped at 512 MiB) and snapshots it whole in memory";
/// The largest state `--quick` loads.
const QUICK_STATE_BYTES_MAX: u64 = 10_000_000;
/// Log lengths behind the last snapshot; `--quick` runs the first only.
const LOG_LENGTHS: [u64; 2] = [100_000, 1_000_000];
/// Keys and value size of the log rows' puts: the state stays tiny, so
/// only the log grows.
const LOG_KEYS: u64 = 1_000;
const LOG_VALUE_BYTES: usize = 64;
/// Nodes of the log-length clusters.
const LOG_NODES: usize = 3;
/// Clients appending the log.
const LOG_CLIENTS: u64 = 64;
/// `--snapshot-every` of the log rows: above every length, so no snapshot
/// is taken and every entry stays in the log.
const LOG_SNAPSHOT_EVERY: u64 = 100_000_000;
/// The slowest append and replay the log rows are given time for, plus
/// [`LOG_TIME_BASE`].
const LOG_ENTRIES_PER_SECOND_MIN: u64 = 500;
const LOG_TIME_BASE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    quick: bool,
    state_max_bytes: u64,
    duration: String,
}

fn parse(args: &[String]) -> Result<Settings> {
    let mut settings = Settings {
        quick: false,
        state_max_bytes: u64::MAX,
        duration: DURATION.to_string(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--only" => match value()?.as_str() {
                "growth" => {}
                other => bail!("this is the growth bench; `--only {other}` is not"),
            },
            "--quick" => settings.quick = true,
            "--growth-max-state" => {
                settings.state_max_bytes = parse_bytes(value()?).map_err(anyhow::Error::msg)?;
            }
            "--duration" => settings.duration = value()?.clone(),
            other => bail!("unknown flag `{other}` for --only growth (see xtask/src/growth.rs)"),
        }
    }
    if settings.quick {
        settings.state_max_bytes = settings.state_max_bytes.min(QUICK_STATE_BYTES_MAX);
        settings.duration = QUICK_DURATION.to_string();
    }
    Ok(settings)
}

impl Settings {
    fn warmup(&self) -> &'static str {
        if self.quick { QUICK_WARMUP } else { WARMUP }
    }

    fn log_lengths(&self) -> &'static [u64] {
        if self.quick {
            &LOG_LENGTHS[..1]
        } else {
            &LOG_LENGTHS
        }
    }
}

/// Whether `args` ask for the growth bench.
pub fn wanted(args: &[String]) -> bool {
    args.windows(2)
        .any(|pair| pair[0] == "--only" && pair[1] == "growth")
}

/// Entry point of `cargo xtask bench --only growth`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let settings = parse(args)?;
    crate::plugins::build_release(root)?;
    let out_dir = root.join("target/bench");
    let work = out_dir.join("growth");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    paths::use_binary(&root.join("target/release/clusterhost")).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let plugins = root.join("target/plugins");
    let report = runtime.block_on(async {
        let throughput = throughput_rows(&plugins.join("kv.wasm"), &work, &settings).await;
        let state = state_rows(&plugins, &work, &settings).await;
        let log = log_rows(&plugins.join("kv.wasm"), &work, &settings).await;
        json!({
            "settings": {"quick": settings.quick, "state_max_bytes": settings.state_max_bytes,
                "duration": settings.duration, "clients": CLIENTS},
            "throughput": throughput,
            "state": state,
            "log": log,
            "log_keys": LOG_KEYS,
            "machine": machine_report::machine(),
        })
    });
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(
        out_dir.join("growth.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let markdown = growth_report::render(&report);
    std::fs::write(out_dir.join("growth.md"), format!("{markdown}\n"))?;
    println!("{markdown}");
    eprintln!(
        "wrote {} and growth.json",
        out_dir.join("growth.md").display()
    );
    Ok(())
}

/// Writes at the leader: every value size on three nodes, then the small
/// values on five.
async fn throughput_rows(kv: &Path, work: &Path, settings: &Settings) -> Vec<Value> {
    let mut rows = Vec::new();
    for nodes in NODE_COUNTS {
        let mut cluster = TestCluster::in_directory(&work.join(format!("throughput-{nodes}")));
        start_nodes(&mut cluster, kv, nodes, Vec::new).await;
        let sizes: &[usize] = if nodes == 3 {
            &VALUE_SIZES
        } else {
            &[SMALL_VALUE_BYTES]
        };
        for &value_bytes in sizes {
            let mut row = json!({"nodes": nodes, "value_bytes": value_bytes, "clients": CLIENTS});
            match write_row(&cluster, value_bytes, settings).await {
                Ok(report) => merge(&mut row, report),
                Err(error) => row["error"] = json!(format!("{error:#}")),
            }
            eprintln!("growth: {row}");
            rows.push(row);
        }
        stop_and_clean(&mut cluster).await;
    }
    rows
}

/// One `clusterhost bench` write run at the leader.
async fn write_row(
    cluster: &TestCluster,
    value_bytes: usize,
    settings: &Settings,
) -> Result<Value> {
    let leader = cluster.leader_index().await.map_err(anyhow::Error::msg)?;
    let keys = KEYS_MAX.min(THROUGHPUT_STATE_BYTES_MAX / value_bytes as u64);
    let args: Vec<String> = [
        "--clients",
        &CLIENTS.to_string(),
        "--endpoints",
        &cluster.node(leader).endpoint(),
        "--value-bytes",
        &value_bytes.to_string(),
        "--keys",
        &keys.to_string(),
        "--duration",
        &settings.duration,
        "--warmup",
        settings.warmup(),
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    let report = bench_report(&args)?;
    let fields = [
        "ops_per_second",
        "latency_us_p50",
        "latency_us_p99",
        "errors",
    ];
    Ok(fields
        .into_iter()
        .map(|field| (field.to_string(), report[field].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into())
}

/// The state rows: kv, then kv_disk, each size up to the maximum asked.
async fn state_rows(plugins: &Path, work: &Path, settings: &Settings) -> Vec<Value> {
    let kv = Plugin {
        name: "kv",
        wasm: plugins.join("kv.wasm"),
        swap_to: Some(plugins.join("kv_v2.wasm")),
    };
    let kv_disk = Plugin {
        name: "kv_disk",
        wasm: plugins.join("kv_disk.wasm"),
        swap_to: None,
    };
    let mut rows = Vec::new();
    for (plugin, sizes) in [
        (&kv, &KV_STATE_SIZES[..]),
        (&kv_disk, &KV_DISK_STATE_SIZES[..]),
    ] {
        for &size in sizes
            .iter()
            .filter(|size| **size <= settings.state_max_bytes)
        {
            let directory = work.join(format!("state-{}-{size}", plugin.name));
            rows.push(growth_state::measure(plugin, size, &directory).await);
        }
    }
    if KV_IMPOSSIBLE_STATE_BYTES <= settings.state_max_bytes {
        rows.insert(
            KV_STATE_SIZES.len(),
            json!({"plugin": "kv", "state_bytes": KV_IMPOSSIBLE_STATE_BYTES,
                "not_possible": KV_IMPOSSIBLE_REASON}),
        );
    }
    rows
}

/// The log rows: a fresh cluster that never snapshots, `entries` small
/// puts, then a follower's restart after kill -9 until caught up.
async fn log_rows(kv: &Path, work: &Path, settings: &Settings) -> Vec<Value> {
    let mut rows = Vec::new();
    for &entries in settings.log_lengths() {
        eprintln!("\n== growth: {entries} log entries behind the last snapshot");
        let mut cluster = TestCluster::in_directory(&work.join(format!("log-{entries}")));
        let never = || {
            vec![
                "--snapshot-every".to_string(),
                LOG_SNAPSHOT_EVERY.to_string(),
            ]
        };
        start_nodes(&mut cluster, kv, LOG_NODES, never).await;
        let mut row = json!({"entries": entries});
        match log_row(&mut cluster, entries).await {
            Ok(fields) => merge(&mut row, fields),
            Err(error) => row["error"] = json!(format!("{error:#}")),
        }
        eprintln!("growth: {row}");
        rows.push(row);
        stop_and_clean(&mut cluster).await;
    }
    rows
}

async fn log_row(cluster: &mut TestCluster, entries: u64) -> Result<Value> {
    let leader = cluster.leader_index().await.map_err(anyhow::Error::msg)?;
    let limit = LOG_TIME_BASE + Duration::from_secs(entries / LOG_ENTRIES_PER_SECOND_MIN);
    let puts = Puts {
        count: entries,
        key_space: LOG_KEYS,
        value_bytes: LOG_VALUE_BYTES,
        clients: LOG_CLIENTS,
    };
    let append = growth_load::write_puts(&cluster.node(leader).endpoint(), puts, limit).await?;
    for n in cluster.running() {
        growth_load::wait_caught_up(cluster, n, leader, limit).await?;
    }
    let follower = cluster
        .running()
        .into_iter()
        .find(|n| *n != leader)
        .context("no follower")?;
    cluster.kill9(follower);
    let started = std::time::Instant::now();
    cluster.restart_without_waiting(follower).await;
    growth_load::wait_caught_up(cluster, follower, leader, limit).await?;
    let restart = started.elapsed();
    let snapshot_index = cluster
        .try_status(follower)
        .await
        .map_err(anyhow::Error::msg)?
        .snapshot_index;
    Ok(json!({
        "append_ms": append.as_millis() as u64,
        "restart_ms": restart.as_millis() as u64,
        "follower_snapshot_index": snapshot_index,
        "rss_kib_after_restart": cluster.rss_kib(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    // Goal: `--quick` really is small, whatever maximum is given, and
    // `--growth-max-state` leaves out only the larger states.
    #[test]
    fn quick_keeps_the_small_sizes() {
        let quick = parse(&args("--only growth --quick --growth-max-state 1GB")).unwrap();
        assert_eq!(quick.state_max_bytes, QUICK_STATE_BYTES_MAX);
        assert_eq!(quick.log_lengths(), &[100_000]);
        let full = parse(&args("--only growth --growth-max-state 100MB")).unwrap();
        assert_eq!(full.state_max_bytes, 100_000_000);
        assert_eq!(full.log_lengths(), &[100_000, 1_000_000]);
        assert_eq!(
            parse(&args("--only growth")).unwrap().state_max_bytes,
            u64::MAX
        );
    }

    #[test]
    fn unknown_flags_and_sizes_are_refused() {
        assert!(parse(&args("--only growth --nodes 5")).is_err());
        assert!(parse(&args("--only growth --growth-max-state lots")).is_err());
        assert!(parse(&args("--only growth --growth-max-state")).is_err());
    }

    #[test]
    fn growth_is_wanted_only_when_named() {
        assert!(wanted(&args("--quick --only growth")));
        assert!(!wanted(&args("--only tls-overhead")));
        assert!(!wanted(&args("growth")));
    }
}
