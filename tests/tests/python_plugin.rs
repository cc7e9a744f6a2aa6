//! The Python kv (`plugins/kv-py`) in a real 3-node cluster: writes through
//! any node reach every replica, and a hot swap to the Rust kv keeps the data
//! (the snapshot format is the contract between them).

use std::time::Duration;

use clusterhost_client::proto::Consistency;
use clusterhost_tests::kv::{self, apply_ok, get_value, query_ok};
use clusterhost_tests::paths::{kv_plugin, plugin};
use clusterhost_tests::{NodeOptions, TestCluster, wait_for};

/// Longest a gossip-driven membership change may take.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest every replica may take to show a write or a deploy. Each node
/// compiles the 18 MB component itself, slowly in an unoptimized build.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(120);
/// Keys written.
const KEYS: usize = 12;

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_run_the_python_kv_and_hand_its_state_to_the_rust_kv() {
    let options = |id: u64| NodeOptions {
        node_id: Some(id),
        stabilization: Some(Duration::from_secs(1)),
        ..NodeOptions::default()
    };
    let mut cluster = TestCluster::start_bootstrap_with(&plugin("kv_py.wasm"), options(1)).await;
    cluster.start_joining(0, options(2)).await;
    cluster.start_joining(1, options(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;

    for key in 0..KEYS {
        let mut client = cluster.client(key % 3).await;
        let (_, answer) = apply_ok(
            &mut client,
            kv::put(&format!("k{key:02}"), &key.to_string()),
        )
        .await;
        assert_eq!(answer, serde_json::json!({"prev": null}));
    }
    let mut client = cluster.client(0).await;
    let version = query_ok(
        &mut client,
        br#""plugin_version""#.to_vec(),
        Consistency::Linearizable,
    )
    .await;
    assert_eq!(version, "kv-py/1");
    every_replica_has_every_key(&cluster).await;

    let deployed = cluster
        .cli(1, &["plugin", "deploy", &kv_plugin().to_string_lossy()])
        .await;
    deployed.success();
    wait_for(
        "every node to answer as the Rust kv",
        CONVERGENCE_TIMEOUT,
        || async {
            for n in cluster.running() {
                let mut client = cluster.client(n).await;
                let version = query_ok(
                    &mut client,
                    br#""plugin_version""#.to_vec(),
                    Consistency::Stale,
                )
                .await;
                if version != "kv/1" {
                    return Err(format!("node {n} answers {version}"));
                }
            }
            Ok(())
        },
    )
    .await;
    every_replica_has_every_key(&cluster).await;
}

async fn every_replica_has_every_key(cluster: &TestCluster) {
    wait_for(
        "every replica to hold every key",
        CONVERGENCE_TIMEOUT,
        || async {
            for n in cluster.running() {
                let mut client = cluster.client(n).await;
                for key in 0..KEYS {
                    let value =
                        get_value(&mut client, &format!("k{key:02}"), Consistency::Stale).await;
                    if value != Some(key.to_string()) {
                        return Err(format!("node {n}: k{key:02} = {value:?}"));
                    }
                }
            }
            Ok(())
        },
    )
    .await;
}
