//! The report `cargo xtask bench` writes: the criterion estimates and the
//! machine it ran on are collected here, and the measurements rendered as
//! markdown (`target/bench/report.md`).

use std::path::Path;

use serde_json::{Value, json};

use crate::{bench_languages, compare, metrics_overhead, tls_overhead};

/// Point estimates (ns) from criterion's output for the plugin path.
pub fn criterion_estimates(root: &Path) -> Value {
    let base = root.join("target/criterion");
    let mut estimates = serde_json::Map::new();
    for (name, path) in [
        ("apply_component", "apply_100B_put/component"),
        ("apply_native", "apply_100B_put/native"),
        ("counter_component", "apply_counter_add/component"),
        ("counter_native", "apply_counter_add/native"),
        ("worker_one_per_call", "worker/apply_one_per_call"),
        ("worker_batch_of_64", "worker/apply_batch_of_64"),
        ("compile_kv", "load_kv/compile"),
        ("instantiate_kv", "load_kv/instantiate"),
        (
            "load_from_compiled_cache",
            "load_kv/load_from_compiled_cache",
        ),
        ("applied_digest_256B", "applied_digest/entry_256B"),
        ("applied_digest_4KiB", "applied_digest/entry_4KiB"),
        ("kv_put_256B_rust", "kv_put_256B/rust"),
        ("kv_put_256B_python", "kv_put_256B/python"),
        ("kv_put_256B_javascript", "kv_put_256B/javascript"),
        ("kv_get_rust", "kv_get/rust"),
        ("kv_get_python", "kv_get/python"),
        ("kv_get_javascript", "kv_get/javascript"),
        ("kv_compile_rust", "kv_compile/rust"),
        ("kv_compile_python", "kv_compile/python"),
        ("kv_compile_javascript", "kv_compile/javascript"),
    ] {
        let file = base.join(path).join("new/estimates.json");
        if let Some(point) = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|value| value["mean"]["point_estimate"].as_f64())
        {
            estimates.insert(name.to_string(), json!(point.round()));
        }
    }
    Value::Object(estimates)
}

/// The machine the bench ran on: cores, memory, CPU model, OS.
pub fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| info.lines().next().map(str::to_string))
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .map(|line| line.to_string())
        })
        .unwrap_or_default();
    json!({"cores": cores, "memory": memory, "cpu": cpu, "os": std::env::consts::OS})
}

/// "total (node, node, …)" of the per-node CPU costs.
fn cpu_column(per_node: &Value) -> String {
    let costs: Vec<f64> = per_node
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    let listed: Vec<String> = costs.iter().map(|ms| format!("{ms:.0}")).collect();
    format!("{:.0} ({})", costs.iter().sum::<f64>(), listed.join(", "))
}

/// The report as markdown: the load table, then one line per measurement.
pub fn render(report: &Value) -> String {
    let mut lines = load_table(report);
    lines.push(String::new());
    lines.extend(plugin_path_lines(&report["plugin_path_ns"]));
    lines.extend(cluster_lines(report));
    lines.extend(metrics_overhead::render(&report["metrics_overhead"]));
    lines.extend(tls_overhead::render(&report["tls_overhead"]));
    lines.extend(tls_overhead::render(&report["tls_overhead_one_client"]));
    lines.push(format!("Machine: {}.", report["machine"]));
    lines.extend(compare::render(report));
    lines.join("\n")
}

/// One row per clusterhost load run.
fn load_table(report: &Value) -> Vec<String> {
    let mut lines = vec![
        "| workload | target | clients | ops/s | p50 | p99 | max | errors | node CPU ms per 1k ops |".to_string(),
        "|---|---|---:|---:|---:|---:|---:|---:|---|".to_string(),
    ];
    let clusterhost_rows = report["load"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row["report"]["system"] == "clusterhost");
    for row in clusterhost_rows {
        let load = &row["report"];
        let ms = |key: &str| format!("{:.2} ms", load[key].as_f64().unwrap_or(0.0) / 1000.0);
        lines.push(format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            row["workload"].as_str().unwrap_or_default(),
            row["target"].as_str().unwrap_or_default(),
            load["clients"],
            load["ops_per_second"].as_f64().unwrap_or(0.0),
            ms("latency_us_p50"),
            ms("latency_us_p99"),
            ms("latency_us_max"),
            load["errors"],
            cpu_column(&load["node_cpu_ms_per_1k_ops"]),
        ));
    }
    lines
}

/// The criterion estimates of the plugin path.
fn plugin_path_lines(plugin: &Value) -> Vec<String> {
    // `--only cluster` runs no criterion.
    if plugin.is_null() {
        return Vec::new();
    }
    let component = plugin["apply_component"].as_f64().unwrap_or(0.0);
    let native = plugin["apply_native"].as_f64().unwrap_or(0.0);
    vec![
        format!(
            "Plugin path (100-byte kv put): component {:.0} ns, native {:.0} ns ({:.2}x); through the worker: {} ns one per call, {} ns per entry in batches of 64.",
            component,
            native,
            if native > 0.0 {
                component / native
            } else {
                0.0
            },
            plugin["worker_one_per_call"],
            plugin["worker_batch_of_64"]
                .as_f64()
                .map_or(0.0, |batch| batch / 64.0)
                .round(),
        ),
        format!(
            "Fixed cost of a call into the component (counter `{{\"add\":1}}`): component {:.0} ns, native {:.0} ns.",
            plugin["counter_component"].as_f64().unwrap_or(0.0),
            plugin["counter_native"].as_f64().unwrap_or(0.0),
        ),
        format!(
            "kv.wasm: compile {:.1} ms, instantiate {:.1} µs, load from the compiled cache {:.1} ms.",
            plugin["compile_kv"].as_f64().unwrap_or(0.0) / 1e6,
            plugin["instantiate_kv"].as_f64().unwrap_or(0.0) / 1e3,
            plugin["load_from_compiled_cache"].as_f64().unwrap_or(0.0) / 1e6,
        ),
        format!(
            "Applied digest (the divergence check's hash), per entry and replica: {:.2} µs for a 256 B command, {:.2} µs for 4 KiB.",
            plugin["applied_digest_256B"].as_f64().unwrap_or(0.0) / 1e3,
            plugin["applied_digest_4KiB"].as_f64().unwrap_or(0.0) / 1e3,
        ),
    ]
    .into_iter()
    .chain(bench_languages::rows(plugin))
    .collect()
}

/// Failover, hot-swap, memory and disk of the running cluster.
fn cluster_lines(report: &Value) -> Vec<String> {
    let hot_swap = &report["hot_swap"];
    vec![
        format!(
            "Failover (kill -9 leader → first acknowledged write through a survivor), median {} ms of runs {} ms.",
            report["failover_ms_median"], report["failover_ms"]
        ),
        format!(
            "Hot-swap kv → kv_v2 with {:.1} MB of state under {} writing clients: deploy {} ms end to end; writes across it: max {:.1} ms, p99 {:.1} ms, {} errors.",
            hot_swap["state_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            hot_swap["writes"]["clients"],
            hot_swap["deploy_ms"],
            hot_swap["writes"]["latency_us_max"].as_f64().unwrap_or(0.0) / 1e3,
            hot_swap["writes"]["latency_us_p99"].as_f64().unwrap_or(0.0) / 1e3,
            hot_swap["writes"]["errors"],
        ),
        format!(
            "RSS per node, KiB: idle {}, after the write runs {}. Data dir per node after {} acknowledged writes (snapshots and purging keep it bounded), bytes: {}.",
            report["rss_kib_per_node_idle"],
            report["rss_kib_per_node_after_writes"],
            report["writes_acknowledged_before_data_dir"],
            report["data_dir_bytes_per_node"]
        ),
    ]
}
