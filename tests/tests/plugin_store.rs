//! The host's plugin store with real processes: `kv_disk` keeps its entries
//! in the store, replicated; a node that joins by snapshot gets the store
//! with it; a trapped entry's writes vanish on every replica; and `kill -9`
//! loses nothing acknowledged. Each test owns its nodes through a
//! `TestCluster`.

use std::time::Duration;

use clusterhost_client::proto::{Consistency, apply_response};
use clusterhost_tests::kv::{self, apply_ok, scan_all};
use clusterhost_tests::paths::plugin;
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast};
use clusterhost_tests::{Acknowledged, NodeOptions, TestCluster, assert_replicas_agree, wait_for};

/// How long replicas may take to report the same applied digest.
const DIGEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Three voters running `plugin_name` (ids 1, 2, 3), each with `options`.
async fn three_nodes_running(plugin_name: &str, options: NodeOptions) -> TestCluster {
    let with_id = |id| NodeOptions {
        node_id: Some(id),
        ..options.clone()
    };
    let mut cluster = TestCluster::start_bootstrap_with(&plugin(plugin_name), with_id(1)).await;
    cluster.start_joining(0, with_id(2)).await;
    cluster.start_joining(1, with_id(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    cluster
}

/// Put `count` keys `prefix-NNNN` through node `n`, values of a few KiB.
async fn put_keys(cluster: &TestCluster, n: usize, prefix: &str, count: usize) -> Acknowledged {
    let mut client = cluster.client(n).await;
    let mut acknowledged = Acknowledged::new();
    for number in 0..count {
        let key = format!("{prefix}-{number:04}");
        let value = format!("{number}:{}", "v".repeat(number % 4096));
        apply_ok(&mut client, kv::put(&key, &value)).await;
        acknowledged.insert(key, value);
    }
    acknowledged
}

/// Every running node holds exactly `expected` under `prefix` (stale reads,
/// so each node answers from its own store).
async fn assert_every_node_holds(cluster: &TestCluster, prefix: &str, expected: &Acknowledged) {
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    for n in cluster.running() {
        let mut client = cluster.client(n).await;
        let state = scan_all(&mut client, prefix, Consistency::Stale).await;
        assert!(
            &state == expected,
            "node {n} holds {} keys under {prefix:?}, {} acknowledged",
            state.len(),
            expected.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_disk_replicates_and_every_key_reads_back_on_every_node() {
    // Goal: three nodes running kv_disk take writes through any node, and
    // every acknowledged key reads back from every node's own store, with
    // one applied digest.
    let cluster = three_nodes_running("kv_disk.wasm", fast(0)).await;
    let mut acknowledged = Acknowledged::new();
    for n in 0..3 {
        acknowledged.extend(put_keys(&cluster, n, &format!("node{n}"), 60).await);
    }
    assert_every_node_holds(&cluster, "node", &acknowledged).await;
    assert_replicas_agree(&cluster).await;
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
    for n in 0..3 {
        let state_files = std::fs::read_dir(cluster.node(n).data_dir())
            .expect("data dir")
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("plugin-store-")
            })
            .count();
        assert_eq!(state_files, 1, "node {n} keeps its store in one state file");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_joining_by_snapshot_gets_the_store_and_the_same_digest() {
    // Goal: after the founders snapshotted and purged their logs, a new node
    // can only catch up by snapshot; it reads every key from its own store
    // and reports the founders' applied digest.
    let options = NodeOptions {
        snapshot_every: Some(50),
        log_keep: Some(10),
        ..fast(0)
    };
    let mut cluster = three_nodes_running("kv_disk.wasm", options).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let acknowledged = put_keys(&cluster, leader, "old", 150).await;
    for n in 0..3 {
        cluster.cli(n, &["snapshot"]).await.success();
        let status = cluster.status(n).await;
        let purged = status["purged_index"].as_u64().expect("purged_index");
        assert!(purged >= 100, "node {n} did not purge its log: {status}");
    }
    let joiner = cluster.start_joining(0, fast(4)).await;
    cluster.wait_for_voters(4, MEMBERSHIP_TIMEOUT).await;
    let status = cluster.status(joiner).await;
    assert!(
        status["snapshot_index"]
            .as_u64()
            .is_some_and(|index| index >= 100),
        "the joiner holds no snapshot: {status}"
    );
    assert_every_node_holds(&cluster, "old", &acknowledged).await;
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trapped_entrys_store_writes_vanish_on_every_replica() {
    // Goal: entries that write to the store and then trap or run out of
    // fuel leave no write behind, one that returns err keeps its write, and
    // every replica agrees, digest included.
    let options = NodeOptions {
        plugin_fuel: Some(20_000_000),
        ..fast(0)
    };
    let cluster = three_nodes_running("test/store_faults.wasm", options).await;
    let mut client = cluster.client(0).await;
    let put = |verb: &str, key: &str| {
        format!(r#"{{"{verb}":{{"key":"{key}","value":"x"}}}}"#).into_bytes()
    };
    apply_ok(&mut client, put("put", "kept")).await;
    for (verb, key, outcome) in [
        ("trap", "trapped", "fault"),
        ("spin", "spun", "fault"),
        ("fail", "failed", "rejected"),
    ] {
        let response = client.apply(put(verb, key)).await.expect("committed");
        let ended = match response.result {
            Some(apply_response::Result::Fault(_)) => "fault",
            Some(apply_response::Result::Rejected(_)) => "rejected",
            other => panic!("{verb}: expected it to fail, got {other:?}"),
        };
        assert_eq!(ended, outcome, "{verb}");
    }
    apply_ok(&mut client, put("put", "after")).await;
    let queries = [
        r#"{"get":{"key":"kept"}}"#,
        r#"{"get":{"key":"trapped"}}"#,
        r#"{"get":{"key":"spun"}}"#,
        r#"{"get":{"key":"failed"}}"#,
        r#""count""#,
    ];
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    for n in 0..3 {
        let mut client = cluster.client(n).await;
        let mut answers = Vec::new();
        for query in queries {
            answers.push(
                kv::query_ok(&mut client, query.as_bytes().to_vec(), Consistency::Stale).await,
            );
        }
        let expected: Vec<serde_json::Value> = ["x", "", "", "x"]
            .iter()
            .map(|value| serde_json::json!({"value": (!value.is_empty()).then_some(*value)}))
            .chain([serde_json::json!({"count": 3})])
            .collect();
        assert_eq!(answers, expected, "node {n}");
    }
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_and_restart_loses_nothing_acknowledged() {
    // Goal: every node killed with SIGKILL at some point (one after the
    // other, with writes in between, and snapshots taken along the way)
    // restarts with every acknowledged key in its store and the same
    // applied digest as the others: no entry's writes lost or applied twice.
    let options = NodeOptions {
        snapshot_every: Some(40),
        ..fast(0)
    };
    let mut cluster = three_nodes_running("kv_disk.wasm", options).await;
    let mut acknowledged = Acknowledged::new();
    for victim in 0..3 {
        let writer = (victim + 1) % 3;
        acknowledged.extend(put_keys(&cluster, writer, &format!("round{victim}"), 30).await);
        cluster.kill9(victim);
        // A write forwarded to a leader that just died has an unknown
        // outcome; write once the writer follows a live leader.
        let victim_id = cluster.id_of(victim);
        wait_for(
            "a leader other than the killed node",
            MEMBERSHIP_TIMEOUT,
            || async {
                let status = cluster.try_status(writer).await?;
                match status.leader_id {
                    Some(leader) if leader != victim_id => Ok(()),
                    other => Err(format!("leader {other:?}")),
                }
            },
        )
        .await;
        acknowledged.extend(put_keys(&cluster, writer, &format!("down{victim}"), 30).await);
        cluster.restart(victim).await;
    }
    assert_every_node_holds(&cluster, "", &acknowledged).await;
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
}
