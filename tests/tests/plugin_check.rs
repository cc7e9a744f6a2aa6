//! End-to-end tests of `clusterhost plugin check`: the example plugins pass
//! with the command files in `tests/check/`, an upgrade from kv to kv_v2
//! passes, and plugins broken on purpose fail the check that describes them,
//! naming the step.

use clusterhost_tests::cli::run_cli;
use clusterhost_tests::paths::{plugin, workspace_root};
use clusterhost_tests::{CliOutput, exit};
use std::time::Duration;

/// Longest one check may take: the Python kv is an 18 MB component (the
/// interpreter inside), which an unoptimized host build compiles for ~30 s.
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);

/// `plugin check PLUGIN --commands tests/check/COMMANDS EXTRA...`.
async fn check(plugin_name: &str, commands: &str, extra: &[&str]) -> CliOutput {
    let commands = workspace_root().join("tests/check").join(commands);
    let mut args = vec![
        "plugin".to_string(),
        "check".to_string(),
        plugin(plugin_name).to_string_lossy().into_owned(),
        "--commands".to_string(),
        commands.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    run_cli(&args, &[], CHECK_TIMEOUT).await
}

/// The names of the checks that failed, from `--json` output.
fn failed_checks(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks is a list")
        .iter()
        .filter(|check| check["passed"] == false)
        .map(|check| check["name"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[tokio::test]
async fn the_example_plugins_pass() {
    for (name, commands) in [
        ("kv.wasm", "kv.commands"),
        ("kv_v2.wasm", "kv.commands"),
        // kv on the host's store: the round trip carries the store too.
        ("kv_disk.wasm", "kv.commands"),
        ("counter.wasm", "counter.commands"),
    ] {
        let output = check(name, commands, &["--json"]).await;
        let report = output.success_json();
        assert_eq!(failed_checks(&report), Vec::<String>::new(), "{output}");
        let names: Vec<&str> = report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|check| check["name"].as_str())
            .collect();
        assert_eq!(names, ["determinism", "round_trip", "query_purity"]);
        assert!(report["usage"]["fuel_max"].as_u64() > Some(0), "{output}");
    }
}

#[tokio::test]
async fn kv_v2_upgrades_from_kv() {
    let kv = plugin("kv.wasm");
    let output = check(
        "kv_v2.wasm",
        "kv-upgrade.commands",
        &["--against", &kv.to_string_lossy()],
    )
    .await;
    let text = output.success();
    assert!(text.contains("ok   upgrade"), "{output}");
}

#[tokio::test]
async fn an_upgrade_that_answers_differently_is_reported_with_its_step() {
    // kv_v2's `get` adds a version field: a real difference from kv's answer.
    let kv = plugin("kv.wasm");
    let output = check(
        "kv_v2.wasm",
        "kv.commands",
        &["--against", &kv.to_string_lossy()],
    )
    .await;
    assert_eq!(output.code, Some(exit::CHECK_FAILED), "{output}");
    assert!(output.stdout.contains("FAIL upgrade"), "{output}");
    assert!(
        output.stdout.contains("response differs at step 3"),
        "{output}"
    );
    assert!(
        output.stderr.contains("failed the upgrade check"),
        "{output}"
    );
}

#[tokio::test]
async fn a_snapshot_that_drops_a_key_fails_the_round_trip() {
    let output = check("test/snapshot_drops.wasm", "snapshot-drops.commands", &[]).await;
    assert_eq!(output.code, Some(exit::CHECK_FAILED), "{output}");
    assert!(output.stdout.contains("FAIL round_trip"), "{output}");
    // The first point is after step 1: the snapshot of {a} is empty, so the
    // restored instance has lost `a` when step 4 reads it.
    assert!(
        output.stdout.contains("response differs at step 4"),
        "{output}"
    );
    assert!(
        output
            .stdout
            .contains("restored from the snapshot taken after step 1"),
        "{output}"
    );
    assert!(output.stdout.contains("ok   determinism"), "{output}");
    assert!(
        output.stderr.contains("failed the round_trip check"),
        "{output}"
    );
}

#[tokio::test]
async fn an_answer_that_counts_queries_fails_query_purity() {
    let output = check("test/query_counts.wasm", "counter.commands", &["--json"]).await;
    assert_eq!(output.code, Some(exit::CHECK_FAILED), "{output}");
    let report: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON report");
    let failed = failed_checks(&report);
    assert!(failed.contains(&"query_purity".to_string()), "{output}");
    assert!(!failed.contains(&"determinism".to_string()), "{output}");
    let purity = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|check| check["name"] == "query_purity")
        .expect("a query_purity check");
    // Step 3 is the first command after a query: `{"add":-7}`.
    assert_eq!(purity["mismatch"]["step"], 3, "{output}");
    assert_eq!(purity["mismatch"]["what"], "response", "{output}");
}

#[tokio::test]
async fn a_bad_command_file_is_refused() {
    let output = check("kv.wasm", "does-not-exist.commands", &[]).await;
    output.failure(exit::INVALID_INPUT, &["cannot read"]);
}

#[tokio::test]
async fn the_python_kv_passes_and_takes_over_the_rust_kv_state_both_ways() {
    let kv = plugin("kv.wasm");
    let output = check(
        "kv_py.wasm",
        "kv-upgrade.commands",
        &["--against", &kv.to_string_lossy()],
    )
    .await;
    let text = output.success();
    assert!(text.contains("ok   round_trip"), "{output}");
    assert!(text.contains("ok   upgrade"), "{output}");
    let kv_py = plugin("kv_py.wasm");
    let output = check(
        "kv.wasm",
        "kv-upgrade.commands",
        &["--against", &kv_py.to_string_lossy()],
    )
    .await;
    assert!(output.success().contains("ok   upgrade"), "{output}");
}

#[tokio::test]
async fn the_javascript_kv_answers_every_query_as_the_rust_kv_both_ways() {
    // The whole kv command file, errors included: after either plugin takes
    // over the other's snapshot, every query answers byte for byte the same.
    let kv = plugin("kv.wasm");
    let output = check(
        "kv_js.wasm",
        "kv.commands",
        &["--against", &kv.to_string_lossy()],
    )
    .await;
    let text = output.success();
    assert!(text.contains("ok   round_trip"), "{output}");
    assert!(text.contains("ok   upgrade"), "{output}");
    let kv_js = plugin("kv_js.wasm");
    let output = check(
        "kv.wasm",
        "kv.commands",
        &["--against", &kv_js.to_string_lossy()],
    )
    .await;
    assert!(output.success().contains("ok   upgrade"), "{output}");
}

#[tokio::test]
async fn a_migration_that_loses_v1_data_fails_the_upgrade() {
    let kv = plugin("kv.wasm");
    let output = check(
        "test/upgrade_loses_key.wasm",
        "upgrade-loses-key.commands",
        &["--against", &kv.to_string_lossy()],
    )
    .await;
    assert_eq!(output.code, Some(exit::CHECK_FAILED), "{output}");
    // Its own history round-trips; only kv's snapshot loses its first key,
    // `a`, which step 5 reads (step 4 reads `b`, which survived).
    assert!(output.stdout.contains("ok   round_trip"), "{output}");
    assert!(output.stdout.contains("FAIL upgrade"), "{output}");
    assert!(
        output.stdout.contains("response differs at step 5"),
        "{output}"
    );
    assert!(
        output.stderr.contains("failed the upgrade check"),
        "{output}"
    );
}
