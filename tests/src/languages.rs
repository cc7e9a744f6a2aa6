//! Steps the tests of the kv plugins in other languages share (Python in
//! `tests/tests/python_plugin.rs`, JavaScript in `tests/tests/js_plugin.rs`):
//! three nodes on one kv plugin, numbered keys written through every node,
//! and waits until every replica holds them or answers as a given build.
//! Every kv plugin answers the same commands, so one set of steps checks all.

use std::path::Path;
use std::time::Duration;

use clusterhost_client::proto::Consistency;

use crate::kv::{self, apply_ok, get_value, query_ok};
use crate::scenario::fast;
use crate::{TestCluster, wait_for};

/// Longest every replica may take to show a write or a deploy. Each node
/// compiles a component of 12 MB (JavaScript) or 18 MB (Python) itself,
/// slowly in an unoptimized build on two shared cores.
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(180);

/// Longest the three nodes may take to become voters: a joining node
/// compiles the component before it serves.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

/// Keys written: `k00`, `k01`, … with the key's number as its value.
pub const KEYS: usize = 12;

/// The `plugin_version` query.
const PLUGIN_VERSION: &[u8] = br#""plugin_version""#;

/// Node 0 bootstraps on `plugin` (id 1), nodes 1 and 2 join (ids 2 and 3);
/// returns once all three are voters.
pub async fn three_nodes_on(plugin: &Path) -> TestCluster {
    let mut cluster = TestCluster::start_bootstrap_with(plugin, fast(1)).await;
    cluster.start_joining(0, fast(2)).await;
    cluster.start_joining(1, fast(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    cluster
}

/// Write every key, each through a different node in turn (followers
/// forward); every key is new, so each answer is `{"prev":null}`.
pub async fn write_keys(cluster: &TestCluster) {
    for key in 0..KEYS {
        let mut client = cluster.client(key % 3).await;
        let (_, answer) = apply_ok(&mut client, kv::put(&key_name(key), &key.to_string())).await;
        assert_eq!(answer, serde_json::json!({"prev": null}), "put {key}");
    }
}

/// The plugin build node `n` answers with (`kv/1`, `kv-py/1`, `kv-js/1`).
pub async fn plugin_version(cluster: &TestCluster, n: usize, consistency: Consistency) -> String {
    let mut client = cluster.client(n).await;
    let answer = query_ok(&mut client, PLUGIN_VERSION.to_vec(), consistency).await;
    answer.as_str().unwrap_or_default().to_string()
}

/// Longest `plugin deploy` may take: the host bounds a deploy to 60 s, and
/// the replicas compile the new component before they switch.
const DEPLOY_CLI_TIMEOUT: Duration = Duration::from_secs(90);

/// Deploy `plugin` through node `n` (a hot swap at one log entry), then wait
/// until every running node answers as `version`.
pub async fn deploy(cluster: &TestCluster, n: usize, plugin: &Path, version: &str) {
    let plugin = plugin.to_string_lossy();
    cluster
        .cli_within(n, &["plugin", "deploy", &plugin], DEPLOY_CLI_TIMEOUT)
        .await
        .success();
    every_node_answers_as(cluster, version).await;
}

/// Wait until every running node answers as `version` (after a deploy).
async fn every_node_answers_as(cluster: &TestCluster, version: &str) {
    wait_for(
        &format!("every node to answer as {version}"),
        CONVERGENCE_TIMEOUT,
        || async {
            for n in cluster.running() {
                let answered = plugin_version(cluster, n, Consistency::Stale).await;
                if answered != version {
                    return Err(format!("node {n} answers {answered}"));
                }
            }
            Ok(())
        },
    )
    .await;
}

/// Wait until every running replica holds every key with its value.
pub async fn every_replica_has_every_key(cluster: &TestCluster) {
    wait_for(
        "every replica to hold every key",
        CONVERGENCE_TIMEOUT,
        || async {
            for n in cluster.running() {
                let mut client = cluster.client(n).await;
                for key in 0..KEYS {
                    let value = get_value(&mut client, &key_name(key), Consistency::Stale).await;
                    if value != Some(key.to_string()) {
                        return Err(format!("node {n}: {} = {value:?}", key_name(key)));
                    }
                }
            }
            Ok(())
        },
    )
    .await;
}

fn key_name(key: usize) -> String {
    format!("k{key:02}")
}
