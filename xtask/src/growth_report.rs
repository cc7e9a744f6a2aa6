//! The report of `cargo xtask bench --only growth`: sizes as people write
//! them (`100MB`), and the measurements rendered as markdown tables
//! (`target/bench/growth.md`). Pure: no I/O here.

use serde_json::Value;

/// Bytes in `text`: a number with an optional unit, decimal (`kB`, `MB`,
/// `GB`) or binary (`KiB`, `MiB`, `GiB`), case-insensitive (`100MB`,
/// `1 GB`, `512KiB`, `4096`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 100MB or 1GB"))?;
    let multiple: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (kB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    number
        .checked_mul(multiple)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `bytes` for a table cell: `256 B`, `4 KiB`, `10 MB`, `1.2 GB`.
pub fn format_bytes(bytes: u64) -> String {
    if bytes < 1_000 {
        return format!("{bytes} B");
    }
    if bytes.is_multiple_of(1024) && bytes < 1 << 20 {
        return format!("{} KiB", bytes / 1024);
    }
    let (value, unit) = if bytes >= 1_000_000_000 {
        (bytes as f64 / 1e9, "GB")
    } else if bytes >= 1_000_000 {
        (bytes as f64 / 1e6, "MB")
    } else {
        (bytes as f64 / 1e3, "kB")
    };
    if value >= 10.0 || value.fract() == 0.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// Milliseconds for a table cell: `85 ms` below ten seconds, `12.3 s` above.
pub fn format_ms(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// RSS per node (KiB) as `min–max MB` (one value when they agree).
pub fn format_rss(per_node_kib: &Value) -> String {
    let megabytes: Vec<u64> = per_node_kib
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .map(|kib| kib * 1024 / 1_000_000)
        .collect();
    match (megabytes.iter().min(), megabytes.iter().max()) {
        (Some(low), Some(high)) if low == high => format!("{low} MB"),
        (Some(low), Some(high)) => format!("{low}–{high} MB"),
        _ => "–".to_string(),
    }
}

/// The whole report as markdown.
pub fn render(report: &Value) -> String {
    let mut lines = vec!["## How cost grows".to_string(), String::new()];
    lines.extend(throughput_table(report));
    lines.push(String::new());
    lines.extend(state_table(report));
    lines.push(String::new());
    lines.extend(log_table(report));
    lines.push(String::new());
    lines.push(notes(report));
    lines.push(String::new());
    lines.push(format!("Settings: {}.", report["settings"]));
    lines.push(format!("Machine: {}.", report["machine"]));
    lines.join("\n")
}

/// How the state rows were measured, from what the first loaded row says.
fn notes(report: &Value) -> String {
    let loaded = rows(report, "state")
        .into_iter()
        .find(|row| row["load_value_bytes"].is_u64())
        .unwrap_or_default();
    format!(
        "State loaded as puts of {} by {} clients to the leader of three nodes; \
         `clusterhost snapshot` timed on the leader (then taken on every node), so a \
         restart reads a snapshot and the log after it; restart and join count until \
         the node has applied the leader's index; hot-swap: deploy time end to end and \
         the longest of the writes four clients make across it; RSS from VmRSS, the \
         new node included at the end. Log rows: puts of small values to {} keys, no \
         snapshot taken.",
        format_bytes(loaded["load_value_bytes"].as_u64().unwrap_or(0)),
        loaded["load_clients"],
        report["log_keys"],
    )
}

fn rows(report: &Value, key: &str) -> Vec<Value> {
    report[key].as_array().cloned().unwrap_or_default()
}

/// A millisecond field as a cell (`–` when absent).
fn ms_cell(row: &Value, key: &str) -> String {
    row[key].as_u64().map_or("–".to_string(), format_ms)
}

/// Writes at the leader: one row per cluster size and value size.
fn throughput_table(report: &Value) -> Vec<String> {
    let mut lines = vec![
        "| nodes | value | clients | writes/s | p50 | p99 | errors |".to_string(),
        "|---:|---:|---:|---:|---:|---:|---:|".to_string(),
    ];
    for row in rows(report, "throughput") {
        if let Some(error) = row["error"].as_str() {
            lines.push(format!(
                "| {} | {} | {} | failed: {error} | | | |",
                row["nodes"],
                format_bytes(row["value_bytes"].as_u64().unwrap_or(0)),
                row["clients"]
            ));
            continue;
        }
        let us = |key: &str| format!("{:.2} ms", row[key].as_f64().unwrap_or(0.0) / 1000.0);
        lines.push(format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} |",
            row["nodes"],
            format_bytes(row["value_bytes"].as_u64().unwrap_or(0)),
            row["clients"],
            row["ops_per_second"].as_f64().unwrap_or(0.0),
            us("latency_us_p50"),
            us("latency_us_p99"),
            row["errors"],
        ));
    }
    lines
}

/// State size: one row per plugin and size.
fn state_table(report: &Value) -> Vec<String> {
    let mut lines = vec![
        "| plugin | state | load | `clusterhost snapshot` | snapshot on disk | follower restart (kill -9 → caught up) | new node (→ caught up) | hot-swap: deploy / longest write | RSS per node after load | RSS per node at the end |".to_string(),
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|".to_string(),
    ];
    for row in rows(report, "state") {
        let plugin = row["plugin"].as_str().unwrap_or_default();
        let state = format_bytes(row["state_bytes"].as_u64().unwrap_or(0));
        if let Some(reason) = row["not_possible"].as_str() {
            lines.push(format!(
                "| {plugin} | {state} | not possible: {reason} | | | | | | | |"
            ));
            continue;
        }
        if let Some(error) = row["error"].as_str() {
            lines.push(format!(
                "| {plugin} | {state} | failed: {error} | | | | | | | |"
            ));
            continue;
        }
        lines.push(format!(
            "| {plugin} | {state} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ms_cell(&row, "load_ms"),
            step_cell(&row["snapshot"], |step| ms_cell(step, "ms")),
            step_cell(&row["snapshot"], |step| {
                step["bytes"].as_u64().map_or("–".to_string(), format_bytes)
            }),
            step_cell(&row["restart"], |step| ms_cell(step, "ms")),
            step_cell(&row["join"], |step| ms_cell(step, "ms")),
            step_cell(&row["hot_swap"], hot_swap_cell),
            format_rss(&row["rss_kib_after_load"]),
            format_rss(&row["rss_kib_at_end"]),
        ));
    }
    lines
}

/// A step's cell: `failed: …` when it failed, else what `show` makes of it.
fn step_cell(step: &Value, show: impl Fn(&Value) -> String) -> String {
    match step["error"].as_str() {
        Some(error) => format!("failed: {error}"),
        None => show(step),
    }
}

/// `deploy ms / longest write ms (to …)`, or why there was no swap.
fn hot_swap_cell(hot_swap: &Value) -> String {
    if let Some(skipped) = hot_swap["skipped"].as_str() {
        return format!("skipped: {skipped}");
    }
    format!(
        "{} / {} (to {})",
        ms_cell(hot_swap, "deploy_ms"),
        ms_cell(hot_swap, "write_max_ms"),
        hot_swap["to"].as_str().unwrap_or("?"),
    )
}

/// Log length behind the last snapshot: one row per length.
fn log_table(report: &Value) -> Vec<String> {
    let mut lines = vec![
        "| log entries behind the last snapshot | append | follower restart (kill -9 → caught up) | RSS per node after the restart |".to_string(),
        "|---:|---:|---:|---|".to_string(),
    ];
    for row in rows(report, "log") {
        let entries = row["entries"].as_u64().unwrap_or(0);
        if let Some(error) = row["error"].as_str() {
            lines.push(format!("| {entries} | failed: {error} | | |"));
            continue;
        }
        lines.push(format!(
            "| {entries} | {} | {} | {} |",
            ms_cell(&row, "append_ms"),
            ms_cell(&row, "restart_ms"),
            format_rss(&row["rss_kib_after_restart"]),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Goal: `--growth-max-state` takes sizes as the issue writes them, and
    // a typo is an error rather than a silent default.
    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert_eq!(parse_bytes("1 GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("10mb"), Ok(10_000_000));
        assert_eq!(parse_bytes("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1_000"), Ok(1000));
        assert!(parse_bytes("MB").is_err());
        assert!(parse_bytes("10 parsecs").is_err());
        assert!(parse_bytes("99999999999999GB").is_err());
    }

    #[test]
    fn cells_are_short_and_readable() {
        assert_eq!(format_bytes(256), "256 B");
        assert_eq!(format_bytes(4096), "4 KiB");
        assert_eq!(format_bytes(65_536), "64 KiB");
        assert_eq!(format_bytes(10_000_000), "10 MB");
        assert_eq!(format_bytes(1_500_000), "1.5 MB");
        assert_eq!(format_bytes(1_000_000_000), "1 GB");
        assert_eq!(format_ms(85), "85 ms");
        assert_eq!(format_ms(12_345), "12.3 s");
        assert_eq!(format_rss(&json!([128_000, 190_000])), "131–194 MB");
        assert_eq!(format_rss(&json!([100_000, 100_000])), "102 MB");
        assert_eq!(format_rss(&json!(null)), "–");
    }

    // Goal: a row that could not be measured says why instead of showing
    // zeros that look like measurements.
    #[test]
    fn rows_that_could_not_run_say_why() {
        let report = json!({
            "throughput": [{"nodes": 3, "value_bytes": 256, "clients": 64,
                "ops_per_second": 5000.4, "latency_us_p50": 9000, "latency_us_p99": 30000, "errors": 0}],
            "state": [
                {"plugin": "kv", "state_bytes": 1_000_000_000u64, "not_possible": "memory cap"},
                {"plugin": "kv_disk", "state_bytes": 10_000_000, "load_ms": 500,
                 "snapshot": {"ms": 65, "bytes": 10_100_000}, "restart": {"ms": 230},
                 "join": {"error": "timed out"}, "hot_swap": {"skipped": "no second build"},
                 "rss_kib_after_load": [120_000, 130_000], "rss_kib_at_end": [140_000]},
            ],
            "log": [{"entries": 100_000, "append_ms": 15_000, "restart_ms": 2_000,
                     "rss_kib_after_restart": [50_000]}],
        });
        let markdown = render(&report);
        assert!(
            markdown.contains("| 3 | 256 B | 64 | 5000 | 9.00 ms | 30.00 ms | 0 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| kv | 1 GB | not possible: memory cap |"),
            "{markdown}"
        );
        assert!(markdown.contains("| kv_disk | 10 MB | 500 ms | 65 ms | 10 MB | 230 ms | failed: timed out | skipped: no second build | 122–133 MB | 143 MB |"), "{markdown}");
        assert!(
            markdown.contains("| 100000 | 15.0 s | 2000 ms | 51 MB |"),
            "{markdown}"
        );
    }
}
