//! Deploy trust as a cluster setting: `plugin_signers` is seeded from the
//! bootstrapping node's `--plugin-signers`, decides on every node (flag or
//! not), and changes through the log at one index on every replica.

use std::time::Duration;

use clusterhost_client::proto::Consistency;
use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::paths::{kv_plugin, plugin};
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast};
use clusterhost_tests::signing::sign_kv_plugins;
use clusterhost_tests::{TestCluster, exit, wait_for};
use serde_json::json;

/// How long replicas may take to agree after a change.
const AGREE_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait until every node reports `signers` as the cluster's
/// `plugin_signers`, then until all report one applied digest at one index
/// (the settings entry is folded into it); that index.
async fn every_node_has(cluster: &TestCluster, signers: &serde_json::Value) -> u64 {
    for n in 0..cluster.nodes().len() {
        wait_for(
            &format!("node {n} to apply plugin_signers = {signers}"),
            AGREE_TIMEOUT,
            || async move {
                let output = cluster.cli(n, &["config", "get", "--json"]).await;
                let settings = output.success_json();
                (settings["plugin_signers"] == *signers).then_some(())
            },
        )
        .await;
    }
    cluster.wait_for_same_applied_digest(AGREE_TIMEOUT).await
}

/// Deploy `file` through node `n` and expect a refusal that leaves the log
/// and the running plugin as they were.
async fn refused_unchanged(cluster: &TestCluster, n: usize, file: &str) {
    let before = cluster.try_status(0).await.unwrap();
    let output = cluster.cli(n, &["plugin", "deploy", file]).await;
    output.failure(exit::PERMISSION_DENIED, &["deploy refused", "not signed"]);
    let after = cluster.try_status(0).await.unwrap();
    assert_eq!(
        after.last_log_index, before.last_log_index,
        "a refused deploy reached the log"
    );
    assert_eq!(after.cluster_version, before.cluster_version);
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_signers_is_a_cluster_setting_every_node_enforces() {
    // Goal: the seed from node 0's flag reaches nodes started without it,
    // which then refuse unsigned deploys (the log unchanged) and take
    // signed ones; `config set plugin_signers` on any node changes what
    // every node accepts, at one index with one applied digest.
    let scratch = tempfile::tempdir().unwrap();
    let path = |name: &str| scratch.path().join(name).to_string_lossy().into_owned();
    let public = sign_kv_plugins(scratch.path()).await;
    let mut seeded = fast(1);
    seeded.extra_args = vec!["--plugin-signers".into(), path("signers")];
    let mut cluster =
        TestCluster::start_bootstrap_with(&scratch.path().join("kv.signed.wasm"), seeded).await;
    cluster.start_joining(0, fast(2)).await;
    cluster.start_joining(0, fast(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    apply_ok(&mut cluster.client(1).await, kv::put("k", "v")).await;
    every_node_has(&cluster, &json!([public])).await;

    let unsigned_v2 = plugin("kv_v2.wasm").to_string_lossy().into_owned();
    refused_unchanged(&cluster, 2, &unsigned_v2).await;
    let signed = cluster
        .cli(1, &["plugin", "deploy", &path("kv_v2.signed.wasm")])
        .await;
    assert!(signed.success().contains("deployed"), "{signed}");

    let cleared = cluster
        .cli(2, &["config", "set", "plugin_signers", "none"])
        .await;
    assert!(cleared.success().contains("none (any plugin)"), "{cleared}");
    let index = every_node_has(&cluster, &json!([])).await;
    // Unsigned kv_v2: other bytes than the signed one running, so a real
    // switch (kv could not take kv_v2's state).
    let deployed = cluster.cli(1, &["plugin", "deploy", &unsigned_v2]).await;
    assert!(deployed.success().contains("deployed"), "{deployed}");

    let set = cluster
        .cli(0, &["config", "set", "plugin_signers", &path("signers")])
        .await;
    assert!(set.success().contains(&public), "{set}");
    assert!(every_node_has(&cluster, &json!([public])).await > index);
    let unsigned_kv = kv_plugin().to_string_lossy().into_owned();
    refused_unchanged(&cluster, 1, &unsigned_kv).await;
    let linearizable = Consistency::Linearizable;
    let kv_value = kv::get_value(&mut cluster.client(2).await, "k", linearizable).await;
    assert_eq!(kv_value.as_deref(), Some("v"), "state carried over");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signers_files_are_refused_before_anything_is_proposed() {
    // Goal: a file with a malformed key, or none, is refused by the CLI
    // naming the file; the cluster's setting stays as it was.
    let scratch = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start_bootstrap_with(&kv_plugin(), fast(1)).await;
    let bad = scratch.path().join("bad");
    std::fs::write(&bad, "# ops\nnot-a-key\n").unwrap();
    let empty = scratch.path().join("empty");
    std::fs::write(&empty, "# nobody\n").unwrap();
    for (file, needle) in [(&bad, "line 2"), (&empty, "no signer keys")] {
        let file = file.to_string_lossy().into_owned();
        let output = cluster
            .cli(0, &["config", "set", "plugin_signers", &file])
            .await;
        output.failure(exit::INVALID_INPUT, &[&file, needle]);
    }
    let settings = cluster.cli(0, &["config", "get", "--json"]).await;
    assert_eq!(settings.success_json()["plugin_signers"], json!([]));
}
