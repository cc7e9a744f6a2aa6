//! The Python kv (`plugins/kv-py`) in a real 3-node cluster: writes through
//! any node reach every replica, and a hot swap to the Rust kv keeps the data
//! (the snapshot format is the contract between them).

use clusterhost_client::proto::Consistency;
use clusterhost_tests::languages::{
    deploy, every_replica_has_every_key, plugin_version, three_nodes_on, write_keys,
};
use clusterhost_tests::paths::{kv_plugin, plugin};

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_run_the_python_kv_and_hand_its_state_to_the_rust_kv() {
    let cluster = three_nodes_on(&plugin("kv_py.wasm")).await;
    write_keys(&cluster).await;
    assert_eq!(
        plugin_version(&cluster, 0, Consistency::Linearizable).await,
        "kv-py/1"
    );
    every_replica_has_every_key(&cluster).await;

    deploy(&cluster, 1, &kv_plugin(), "kv/1").await;
    every_replica_has_every_key(&cluster).await;
}
