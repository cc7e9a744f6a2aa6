//! The side-by-side table of `cargo xtask bench --compare etcd`: each row
//! the two systems both ran (same workload, target and clients, run back to
//! back), with clusterhost ÷ etcd for throughput and latency.

use serde_json::Value;

use crate::failover::median;

/// The rows of one system in the report's `load` list.
fn rows<'a>(report: &'a Value, system: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    report["load"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |row| row["report"]["system"] == system)
}

/// "a ÷ b" with two decimals, or "–" when either is missing.
fn ratio(ours: f64, theirs: f64) -> String {
    if ours > 0.0 && theirs > 0.0 {
        format!("{:.2}", ours / theirs)
    } else {
        "–".to_string()
    }
}

fn milliseconds(load: &Value, key: &str) -> f64 {
    load[key].as_f64().unwrap_or(0.0) / 1000.0
}

fn failover_median(report: &Value, system: &str) -> f64 {
    let times: Vec<u128> = report["failover_ms_by_system"][system]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ms| ms.as_u64().map(u128::from))
        .collect();
    median(&times).map_or(0.0, |ms| ms as f64)
}

/// The side-by-side section, or nothing when etcd did not run.
pub fn render(report: &Value) -> Vec<String> {
    if rows(report, "etcd").next().is_none() {
        return Vec::new();
    }
    let mut lines = vec![
        String::new(),
        "Side by side with etcd (same machine, same load generator, rows interleaved; ratio = clusterhost ÷ etcd):".to_string(),
        String::new(),
        "| workload | target | clients | clusterhost ops/s | etcd ops/s | ratio | clusterhost p50 | etcd p50 | ratio | clusterhost p99 | etcd p99 | ratio |".to_string(),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".to_string(),
    ];
    for ours in rows(report, "clusterhost") {
        let theirs = rows(report, "etcd").find(|row| {
            row["workload"] == ours["workload"]
                && row["target"] == ours["target"]
                && row["report"]["clients"] == ours["report"]["clients"]
        });
        let Some(theirs) = theirs else { continue };
        let (a, b) = (&ours["report"], &theirs["report"]);
        let rate = |load: &Value| load["ops_per_second"].as_f64().unwrap_or(0.0);
        lines.push(format!(
            "| {} | {} | {} | {:.0} | {:.0} | {} | {:.2} ms | {:.2} ms | {} | {:.2} ms | {:.2} ms | {} |",
            ours["workload"].as_str().unwrap_or_default(),
            ours["target"].as_str().unwrap_or_default(),
            a["clients"],
            rate(a),
            rate(b),
            ratio(rate(a), rate(b)),
            milliseconds(a, "latency_us_p50"),
            milliseconds(b, "latency_us_p50"),
            ratio(milliseconds(a, "latency_us_p50"), milliseconds(b, "latency_us_p50")),
            milliseconds(a, "latency_us_p99"),
            milliseconds(b, "latency_us_p99"),
            ratio(milliseconds(a, "latency_us_p99"), milliseconds(b, "latency_us_p99")),
        ));
    }
    let (ours, theirs) = (
        failover_median(report, "clusterhost"),
        failover_median(report, "etcd"),
    );
    lines.push(format!(
        "| failover (kill -9 leader → first acknowledged write), median ms | | | {ours:.0} | {theirs:.0} | {} | | | | | | |",
        ratio(ours, theirs)
    ));
    lines.push(String::new());
    lines.push(format!(
        "Failover runs, ms: clusterhost {}, etcd {}. Elections during the load rows: clusterhost {}, etcd {}. etcd {} with its default settings (heartbeat 100 ms, election timeout 1 s).",
        report["failover_ms_by_system"]["clusterhost"],
        report["failover_ms_by_system"]["etcd"],
        report["elections_during_load"]["clusterhost"],
        report["elections_during_load"]["etcd"],
        report["etcd_version"].as_str().unwrap_or("?"),
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(system: &str, target: &str, ops: f64, p50_us: u64) -> Value {
        json!({"workload": "write", "target": target, "report": {
            "system": system, "clients": 64, "ops_per_second": ops,
            "latency_us_p50": p50_us, "latency_us_p99": p50_us * 4,
        }})
    }

    // Goal: each clusterhost row is set against etcd's run of the same
    // workload, target and clients, with clusterhost ÷ etcd; rows etcd has
    // no counterpart for (sessions) are left out.
    #[test]
    fn rows_are_paired_by_workload_target_and_clients() {
        let report = json!({
            "load": [
                row("clusterhost", "leader", 8000.0, 2000),
                row("clusterhost", "leader, sessions", 7000.0, 2500),
                row("etcd", "leader", 4000.0, 4000),
            ],
            "failover_ms_by_system": {"clusterhost": [800, 700, 900], "etcd": [1500, 1400, 1600]},
            "elections_during_load": {"clusterhost": 0, "etcd": 0},
        });
        let text = render(&report).join("\n");
        assert!(
            text.contains(
                "| write | leader | 64 | 8000 | 4000 | 2.00 | 2.00 ms | 4.00 ms | 0.50 |"
            ),
            "{text}"
        );
        assert!(!text.contains("sessions"), "{text}");
        assert!(text.contains("| 800 | 1500 | 0.53 |"), "{text}");
    }

    // Goal: without an etcd run the report has no side-by-side section.
    #[test]
    fn no_section_without_etcd() {
        let report = json!({"load": [row("clusterhost", "leader", 1.0, 1)]});
        assert!(render(&report).is_empty());
    }
}
