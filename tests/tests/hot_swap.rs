//! Hot-swapping the plugin cluster-wide through the log, against real
//! `clusterhost` processes: a deploy switches every replica at the same
//! index with its state carried over while clients keep writing; failed
//! deploys change nothing anywhere; lagging, restarted and late nodes run
//! the right version; rollback.

use std::ops::Range;
use std::time::Duration;

use clusterhost_client::Client;
use clusterhost_client::proto::{ApplyResponse, Consistency, apply_response};
use clusterhost_tests::kv::{self, apply_ok, query_ok};
use clusterhost_tests::load::WriteStream;
use clusterhost_tests::paths::{kv_plugin, plugin};
use clusterhost_tests::{
    NodeOptions, TestCluster, assert_acknowledged_present, assert_replicas_agree, exit, wait_for,
};
use serde_json::Value;

/// Longest a gossip-driven membership change may take in these tests.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest the nodes may take to agree on a deploy's outcome.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Fuel for snapshot/restore: small enough that a spinning restore stops
/// within a second, large enough for kv's real state (and no less than the
/// per-call fuel, as the node requires).
const BULK_FUEL: u64 = 1_000_000_000;

fn options(node_id: u64) -> NodeOptions {
    NodeOptions {
        node_id: Some(node_id),
        stabilization: Some(Duration::from_secs(1)),
        extra_args: vec!["--plugin-bulk-fuel".to_string(), BULK_FUEL.to_string()],
        ..NodeOptions::default()
    }
}

async fn three_nodes(extra: impl Fn(u64) -> NodeOptions) -> TestCluster {
    let mut cluster = TestCluster::start_bootstrap_with(&kv_plugin(), extra(1)).await;
    cluster.start_joining(0, extra(2)).await;
    cluster.start_joining(1, extra(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    cluster
}

/// `clusterhost plugin list --json` of node `n`.
async fn history(cluster: &TestCluster, n: usize) -> Value {
    cluster
        .cli(n, &["plugin", "list", "--json"])
        .await
        .success_json()
}

/// Which kv answers on node `n` ("kv/1" or "kv/2"), read locally.
async fn plugin_version(cluster: &TestCluster, n: usize) -> Value {
    let mut client = cluster.client(n).await;
    query_ok(
        &mut client,
        br#""plugin_version""#.to_vec(),
        Consistency::Stale,
    )
    .await
}

/// Wait until every running node has applied the same deploy history and
/// runs `expected` ("kv/1" / "kv/2"); return that history.
async fn wait_for_same_history(cluster: &TestCluster, expected: &str) -> Value {
    wait_for(
        "every node to run the same plugin history",
        CONVERGENCE_TIMEOUT,
        || async {
            let mut histories = Vec::new();
            for n in cluster.running() {
                let version = plugin_version(cluster, n).await;
                if version != expected {
                    return Err(format!("node {n} answers {version}"));
                }
                histories.push(history(cluster, n).await);
            }
            if histories.windows(2).all(|pair| pair[0] == pair[1]) {
                Ok(histories.swap_remove(0))
            } else {
                Err(format!("histories differ: {histories:?}"))
            }
        },
    )
    .await
}

/// Write `probe000`, `probe001`, ... for each of `rounds` through `probe`,
/// one at a time; the answers, in order.
async fn probe_writes(probe: &mut Client, rounds: Range<u32>) -> Vec<ApplyResponse> {
    let mut answers = Vec::new();
    for round in rounds {
        let response = probe
            .apply(kv::put(&format!("probe{round:03}"), "x"))
            .await
            .expect("probe write");
        answers.push(response);
    }
    answers
}

fn deploys(history: &Value) -> Vec<Value> {
    history["deploys"].as_array().cloned().unwrap_or_default()
}

// Goal: a deploy under continuous writes switches every replica at one
// index; writes before it were answered by v1 and after it by v2; nothing
// acknowledged is lost; v2's feature works on every node.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_under_writes_switches_every_replica_at_one_index() {
    let cluster = three_nodes(options).await;
    let endpoints: Vec<String> = (0..3).map(|n| cluster.node(n).endpoint()).collect();
    let stream = WriteStream::start(&endpoints, "load-");

    // A probe writer records which plugin answered each committed index.
    let mut probe = cluster.client(1).await;
    let mut answers = probe_writes(&mut probe, 0..20).await;
    let deploy = cluster
        .cli(
            2,
            &["plugin", "deploy", &plugin("kv_v2.wasm").to_string_lossy()],
        )
        .await;
    let printed = deploy.success().to_string();
    assert!(printed.contains("cluster version 2"), "{printed}");
    answers.extend(probe_writes(&mut probe, 20..40).await);
    let (acknowledged, _attempted) = stream.finish().await;
    assert!(
        acknowledged.len() > 10,
        "the writers made progress: {}",
        acknowledged.len()
    );

    let history = wait_for_same_history(&cluster, "kv/2").await;
    assert_eq!(history["cluster_version"], 2, "{history}");
    let switch = deploys(&history)
        .iter()
        .find(|deploy| deploy["version"] == 2)
        .and_then(|deploy| deploy["index"].as_u64())
        .unwrap_or_else(|| panic!("no successful v2 deploy in {history}"));
    for response in &answers {
        let Some(apply_response::Result::Ok(bytes)) = &response.result else {
            panic!("probe write not accepted: {response:?}");
        };
        let body: Value = serde_json::from_slice(bytes).expect("JSON");
        let from_v2 = body.get("version").is_some();
        assert_eq!(
            from_v2,
            response.index > switch,
            "entry {} (switch at {switch}) answered {body}",
            response.index
        );
    }

    assert_acknowledged_present(&cluster, &acknowledged).await;
    for n in 0..3 {
        let mut client = cluster.client(n).await;
        let version = query_ok(
            &mut client,
            br#"{"version":{"key":"probe039"}}"#.to_vec(),
            Consistency::Linearizable,
        )
        .await;
        // probe039 was written once by v2; each node then writes it once more.
        assert_eq!(version["version"], n as u64 + 1, "node {n}: {version}");
        let (_, put) = apply_ok(&mut client, kv::put("probe039", &format!("again{n}"))).await;
        assert_eq!(put["version"], n as u64 + 2, "node {n}: {put}");
    }
}

// Goal: every kind of bad deploy leaves v1 serving on every node with a
// clear error; the ones that reached the log are recorded as failures.
#[tokio::test(flavor = "multi_thread")]
async fn failed_deploys_change_nothing_anywhere() {
    let cluster = three_nodes(options).await;
    let mut client = cluster.client(0).await;
    apply_ok(&mut client, kv::put("kept", "v1-state")).await;

    let refused_in_restore = [
        ("test/restore_fails.wasm", "refused"),
        ("test/restore_traps.wasm", "trap"),
        ("test/restore_spins.wasm", "fuel"),
    ];
    for (file, reason) in refused_in_restore {
        cluster
            .cli(1, &["plugin", "deploy", &plugin(file).to_string_lossy()])
            .await
            .failure(exit::REJECTED, &["running plugin stays", reason]);
    }

    let directory = tempfile::tempdir().expect("temp dir");
    let garbage = directory.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not webassembly").expect("write");
    let core_module = directory.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").expect("write");
    let invalid = [
        (garbage, "not a webassembly"),
        (core_module, "core webassembly module"),
        (plugin("test/wrong_world.wasm"), "does not implement"),
        (plugin("test/bad_import.wasm"), "imports something"),
    ];
    for (file, reason) in invalid {
        cluster
            .cli(2, &["plugin", "deploy", &file.to_string_lossy()])
            .await
            .failure(exit::INVALID_INPUT, &[reason]);
    }

    let history = wait_for_same_history(&cluster, "kv/1").await;
    assert_eq!(history["cluster_version"], 1, "{history}");
    let records = deploys(&history);
    assert_eq!(
        records.len(),
        4,
        "bootstrap + three failed restores: {history}"
    );
    for record in &records[1..] {
        assert!(record["version"].is_null(), "{record}");
        assert!(
            record["outcome"]
                .as_str()
                .is_some_and(|outcome| outcome.starts_with("failed")),
            "{record}"
        );
    }
    for n in 0..3 {
        let mut client = cluster.client(n).await;
        let value = query_ok(&mut client, kv::get("kept"), Consistency::Linearizable).await;
        assert_eq!(value["value"], "v1-state", "node {n}");
    }
    apply_ok(&mut client, kv::put("after", "still writable")).await;
    assert_replicas_agree(&cluster).await;
}

// Goal: a follower that was down during the deploy converges to v2 at the
// same index when it returns; a node joining after the deploy (log purged
// behind a snapshot) gets v2 from the snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn lagging_and_late_nodes_run_the_deployed_version() {
    let snapshotting = |id| NodeOptions {
        snapshot_every: Some(30),
        log_keep: Some(5),
        ..options(id)
    };
    let mut cluster = three_nodes(snapshotting).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    cluster.kill9(follower);

    let mut client = cluster.client(leader).await;
    for key in 0..20 {
        apply_ok(&mut client, kv::put(&format!("before{key:02}"), "1")).await;
    }
    cluster
        .cli(
            leader,
            &["plugin", "deploy", &plugin("kv_v2.wasm").to_string_lossy()],
        )
        .await
        .success();
    for key in 0..80 {
        apply_ok(&mut client, kv::put(&format!("after{key:02}"), "2")).await;
    }
    cluster.cli(leader, &["snapshot"]).await.success();

    cluster.restart(follower).await;
    let late = cluster.start_joining(leader, snapshotting(4)).await;
    cluster.wait_for_voters(4, MEMBERSHIP_TIMEOUT).await;
    let history = wait_for_same_history(&cluster, "kv/2").await;
    assert_eq!(history["cluster_version"], 2, "{history}");
    for n in [follower, late] {
        let mut client = cluster.client(n).await;
        let read = query_ok(&mut client, kv::get("before07"), Consistency::Stale).await;
        assert_eq!(read["value"], "1", "node {n}: {read}");
        assert_eq!(
            read["version"], 1,
            "node {n} carries v1 state into v2: {read}"
        );
    }
    assert_replicas_agree(&cluster).await;
}

// Goal: rolling back from v2 to v1 fails cleanly when v1 cannot read v2's
// state (v2 keeps serving, the history says why); and a restart of the
// whole cluster after a deploy runs v2 everywhere.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_fails_cleanly_and_full_restart_keeps_v2() {
    let mut cluster = three_nodes(options).await;
    let mut client = cluster.client(0).await;
    apply_ok(&mut client, kv::put("a", "1")).await;
    cluster
        .cli(
            1,
            &["plugin", "deploy", &plugin("kv_v2.wasm").to_string_lossy()],
        )
        .await
        .success();
    cluster.cli(2, &["plugin", "rollback"]).await.failure(
        exit::REJECTED,
        &["running plugin stays", "newer than this plugin understands"],
    );
    let history = wait_for_same_history(&cluster, "kv/2").await;
    let last = deploys(&history).last().cloned().expect("a record");
    assert!(
        last["version"].is_null(),
        "the rollback is recorded as failed: {last}"
    );

    for n in 0..3 {
        cluster.kill9(n);
    }
    for n in 0..3 {
        cluster.restart_without_waiting(n).await;
    }
    for n in 0..3 {
        cluster.wait_ready(n).await;
    }
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    // A restarted node re-applies what it knew was committed; the rest of
    // the log is committed again by the new leader's first entry. Compare
    // once the history's newest record is back everywhere.
    let after = wait_for(
        "the full history on every node",
        CONVERGENCE_TIMEOUT,
        || async {
            let after = wait_for_same_history(&cluster, "kv/2").await;
            if after == history {
                Ok(after)
            } else {
                Err(format!("history so far: {after}"))
            }
        },
    )
    .await;
    assert_eq!(after, history, "the history survives a full restart");
    let mut client = cluster.client(1).await;
    let read = query_ok(&mut client, kv::get("a"), Consistency::Linearizable).await;
    assert_eq!(read, serde_json::json!({"value": "1", "version": 1}));
}
