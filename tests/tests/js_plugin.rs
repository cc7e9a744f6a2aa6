//! The JavaScript kv (`plugins/kv-js`) in a real 3-node cluster: a cluster
//! running the Rust kv hot-swaps to it and keeps its data (the snapshot
//! format is the contract between them), and then writes through any node
//! reach every replica of the JavaScript plugin.

use clusterhost_client::proto::Consistency;
use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::languages::{
    deploy, every_replica_has_every_key, plugin_version, three_nodes_on, write_keys,
};
use clusterhost_tests::paths::{kv_plugin, plugin};

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_hand_the_rust_kv_state_to_the_javascript_kv() {
    let cluster = three_nodes_on(&kv_plugin()).await;
    write_keys(&cluster).await;
    every_replica_has_every_key(&cluster).await;

    deploy(&cluster, 2, &plugin("kv_js.wasm"), "kv-js/1").await;
    every_replica_has_every_key(&cluster).await;

    // The JavaScript plugin now takes writes: answers as kv's, on every node.
    for n in 0..3 {
        let mut client = cluster.client(n).await;
        let (_, answer) = apply_ok(&mut client, kv::put("k00", "0")).await;
        assert_eq!(answer, serde_json::json!({"prev": "0"}), "through node {n}");
    }
    let cas = br#"{"cas":{"key":"js","expected":null,"value":"1"}}"#.to_vec();
    let mut client = cluster.client(1).await;
    let (_, answer) = apply_ok(&mut client, cas).await;
    assert_eq!(answer, serde_json::json!({"ok": true, "current": "1"}));
    assert_eq!(
        plugin_version(&cluster, 1, Consistency::Linearizable).await,
        "kv-js/1"
    );
    every_replica_has_every_key(&cluster).await;
}
