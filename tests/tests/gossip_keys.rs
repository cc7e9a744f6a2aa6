//! End-to-end: rotating the gossip key of a running 3-node cluster the way
//! Consul's keyring does (install the new key everywhere, make it primary
//! everywhere, remove the old one), each step an edit of one node's key
//! file and a SIGHUP, while a client keeps writing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clusterhost_client::Client;
use clusterhost_client::proto::apply_response;
use clusterhost_tests::cli::{CLI_TIMEOUT, run_cli};
use clusterhost_tests::kv;
use clusterhost_tests::paths::kv_plugin;
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast};
use clusterhost_tests::{NodeOptions, TestCluster, wait_for};

/// Nodes in the cluster.
const NODES: usize = 3;
/// How long a node may take to log that it reloaded its keys.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long gossip may take to carry a new applied index to every node.
const GOSSIP_TIMEOUT: Duration = Duration::from_secs(30);
/// Writes the writer must have made for the run to say anything.
const WRITES_MIN: u64 = 20;
/// What a node logs after taking in its key file again.
const RELOADED: &str = "gossip keyring reloaded";
/// What a node logs when it drops a datagram (at 1, 2, 4, …).
const DROPPED: &str = "gossip_datagrams_dropped=";

/// A new gossip key line from `clusterhost gossip keygen`.
async fn keygen() -> String {
    let output = run_cli(["gossip", "keygen"], &[], CLI_TIMEOUT).await;
    output.success().trim().to_string()
}

/// Fast flags for node `n` plus its own key file.
fn with_key_file(n: usize, key_file: &Path) -> NodeOptions {
    let mut options = fast(n as u64 + 1);
    options.extra_args = vec![
        "--gossip-key-file".into(),
        key_file.to_string_lossy().into_owned(),
    ];
    options
}

/// Writes through `endpoint` until `stop`; returns how many succeeded, or
/// the first failure.
async fn write_until(endpoint: String, stop: Arc<AtomicBool>) -> Result<u64, String> {
    let mut client = Client::connect(&endpoint)
        .await
        .map_err(|error| error.to_string())?;
    let mut written = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("rotation/{written:06}");
        let response = client
            .apply(kv::put(&key, "v"))
            .await
            .map_err(|error| format!("put {key}: {error}"))?;
        if !matches!(response.result, Some(apply_response::Result::Ok(_))) {
            return Err(format!("put {key} not accepted: {response:?}"));
        }
        written += 1;
    }
    Ok(written)
}

#[tokio::test(flavor = "multi_thread")]
async fn gossip_keys_rotate_under_writes_without_losing_a_datagram() {
    // Goal: each node's key file goes old → old+new → new+old → new, one
    // node at a time, reloaded by SIGHUP: every write made meanwhile
    // succeeds, no node ever drops a gossip datagram, gossip still carries
    // news to every node once the old key is gone, and a node holding only
    // the old key is no longer heard (its datagrams dropped, never added).
    let scratch = tempfile::tempdir().unwrap();
    let (old, new) = (keygen().await, keygen().await);
    let key_files: Vec<PathBuf> = (0..=NODES)
        .map(|n| scratch.path().join(format!("node-{n}.keys")))
        .collect();
    for file in &key_files {
        std::fs::write(file, format!("{old}\n")).unwrap();
    }
    let mut cluster = TestCluster::new();
    cluster
        .bootstrap_node(&kv_plugin(), with_key_file(0, &key_files[0]))
        .await;
    for (n, key_file) in key_files.iter().enumerate().take(NODES).skip(1) {
        cluster
            .start_joining(n - 1, with_key_file(n, key_file))
            .await;
    }
    cluster.wait_for_voters(NODES, MEMBERSHIP_TIMEOUT).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(cluster.node(0).endpoint(), stop.clone()));
    let steps = [
        format!("{old}\n{new}\n"),
        format!("{new}\n{old}\n"),
        format!("# old key removed\n{new}\n"),
    ];
    for (step, keys) in steps.iter().enumerate() {
        for (n, key_file) in key_files.iter().enumerate().take(NODES) {
            std::fs::write(key_file, keys).unwrap();
            reload(&cluster, n, step + 1).await;
        }
    }
    gossip_carries_news(&cluster).await;
    for n in 0..NODES {
        let log = cluster.node(n).log();
        assert!(!log.contains(DROPPED), "node {n} dropped gossip datagrams");
    }
    old_key_only_is_not_heard(&mut cluster, &key_files[NODES]).await;

    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("writer task");
    let written = written.unwrap_or_else(|error| panic!("a write failed: {error}"));
    assert!(written >= WRITES_MIN, "only {written} writes were made");
}

/// SIGHUP node `n` and wait for its `count`th reload.
async fn reload(cluster: &TestCluster, n: usize, count: usize) {
    cluster.hangup(n);
    wait_for(
        &format!("node {n} to reload its keys ({count})"),
        RELOAD_TIMEOUT,
        || {
            let log = cluster.node(n).log();
            async move { (log.matches(RELOADED).count() >= count).then_some(()) }
        },
    )
    .await;
    let log = cluster.node(n).log();
    assert!(
        !log.contains("gossip keyring not reloaded"),
        "node {n} refused its key file"
    );
    let line = log.lines().rfind(|line| line.contains(RELOADED));
    assert!(
        line.is_some_and(|line| line.contains("fingerprints")),
        "node {n} logs the fingerprints of its keys: {line:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_without_a_key_file_changes_nothing() {
    // Goal: SIGHUP (systemctl reload, logrotate) never ends a node that has
    // no gossip key file: it logs that there is nothing to reload and
    // keeps serving.
    let cluster = TestCluster::start_bootstrap_with(&kv_plugin(), fast(1)).await;
    cluster.hangup(0);
    wait_for("node 0 to log the SIGHUP", RELOAD_TIMEOUT, || {
        let log = cluster.node(0).log();
        async move { log.contains("SIGHUP: nothing to reload").then_some(()) }
    })
    .await;
    assert!(cluster.node(0).is_running(), "SIGHUP ended the node");
    let mut client = cluster.client(0).await;
    kv::apply_ok(&mut client, kv::put("after-hangup", "yes")).await;
}

/// A write made now reaches every node's gossip view of every other node:
/// gossip flows between all of them.
async fn gossip_carries_news(cluster: &TestCluster) {
    let mut client = cluster.client(0).await;
    let (index, _) = kv::apply_ok(&mut client, kv::put("after", "rotation")).await;
    for n in 0..NODES {
        wait_for(
            &format!("node {n} to hear every member at index {index} or later"),
            GOSSIP_TIMEOUT,
            || async move {
                let members = cluster.members(n).await;
                let members = members["members"].as_array().cloned().unwrap_or_default();
                let heard = members.iter().all(|member| {
                    member["liveness"] == "alive"
                        && member["applied_index"].as_u64().unwrap_or(0) >= index
                });
                (members.len() == NODES && heard).then_some(())
            },
        )
        .await;
    }
}

/// A fourth node whose key file holds only the old key tries to join node
/// 0: node 0 drops what it sends, and it is never added.
async fn old_key_only_is_not_heard(cluster: &mut TestCluster, key_file: &Path) {
    let stale = cluster.add_node(with_key_file(NODES, key_file));
    cluster.set_join(stale, &[0]);
    cluster.restart_without_waiting(stale).await;
    // 8 dropped datagrams are several gossip rounds: ample time to join.
    wait_for(
        "node 0 to drop the old-key node's datagrams",
        GOSSIP_TIMEOUT,
        || {
            let log = cluster.node(0).log();
            async move { log.contains(&format!("{DROPPED}8")).then_some(()) }
        },
    )
    .await;
    let ids = cluster.member_ids(0).await;
    assert_eq!(ids.len(), NODES, "{ids:?}");
    assert!(
        !ids.contains(&(NODES as u64 + 1)),
        "the old-key node was heard: {ids:?}"
    );
}
