//! Replicas provably identical: settings that change apply outcomes live in
//! the log, not in node flags, and a replica that applied something else
//! than the majority is found within seconds, marked corrupt and kept from
//! serving. Each test owns its nodes through a `TestCluster`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::scenario::*;
use clusterhost_tests::{TestCluster, exit, wait_for};

/// How long the cluster may take to notice a corrupt replica.
const DETECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Entries between two digest checkpoints (the host's
/// `CHECKPOINT_EVERY_ENTRIES`): the alarm names the first differing one.
const CHECKPOINT_EVERY_ENTRIES: u64 = 64;

/// Keep writing through node `n` until the returned flag is set.
fn keep_writing(cluster: &TestCluster, n: usize) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let endpoint = cluster.node(n).endpoint();
    let stopped = stop.clone();
    let writer = tokio::spawn(async move {
        let mut client = clusterhost_client::Client::connect(&endpoint)
            .await
            .expect("connect the writer");
        let mut key = 0u64;
        while !stopped.load(Ordering::SeqCst) {
            key += 1;
            apply_ok(&mut client, kv::put(&format!("later/{key}"), "x")).await;
        }
    });
    (stop, writer)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_log_was_tampered_with_is_found_corrupt_and_serves_nothing() {
    // Goal: stop a follower, rewrite one committed command in its log (as
    // disk corruption would), restart it: within 10 s the cluster reports it
    // corrupt at the checkpoint after that entry, it refuses reads, and the
    // other two keep taking writes.
    let mut cluster = three_nodes(fast(0)).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let (follower, healthy) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut client = cluster.client(leader).await;
    for key in 0..80 {
        apply_ok(&mut client, kv::put(&format!("before/{key}"), "v")).await;
    }
    let (tampered, _) = apply_ok(&mut client, kv::put("target", "original")).await;
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    cluster.kill9(follower);
    let log = cluster.node(follower).data_dir().join("raft.redb");
    clusterhost::consensus::log_store::rewrite_command_offline(
        &log,
        tampered,
        kv::put("target", "tampered"),
    )
    .await
    .expect("rewrite the entry");
    let (stop, writer) = keep_writing(&cluster, leader);
    let restarted = Instant::now();
    cluster.restart(follower).await;
    let corrupt_since = wait_for(
        "the follower to be reported corrupt",
        DETECTION_TIMEOUT,
        || async {
            let status = cluster.try_status(follower).await?;
            status.corrupt_since.ok_or("not yet".to_string())
        },
    )
    .await;
    eprintln!(
        "entry {tampered} tampered with; reported corrupt since index {corrupt_since} {:.1?} after the restart",
        restarted.elapsed()
    );
    assert!(
        (tampered..tampered + CHECKPOINT_EVERY_ENTRIES).contains(&corrupt_since),
        "the alarm names the checkpoint after entry {tampered}, not {corrupt_since}"
    );
    let read = cluster
        .cli(follower, &["query", r#"{"get":{"key":"target"}}"#])
        .await;
    read.failure(exit::REJECTED, &["corrupt"]);
    let members = cluster.members(leader).await;
    let marked = members["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|member| member["corrupt_since"].is_u64())
        .count();
    assert_eq!(marked, 1, "members shows the corrupt replica: {members}");
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the writer kept writing");
    let mut other = cluster.client(healthy).await;
    apply_ok(&mut other, kv::put("after", "still writable")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_started_with_its_own_fuel_flag_applies_with_the_clusters_and_says_so() {
    // Goal: a third node started with --plugin-fuel 20000 (too little for a
    // put of 3 KB) ends with the same state as the others after 20 such
    // puts — it applies with the cluster's fuel — and its log names the flag,
    // the cluster's value and how to change it cluster-wide.
    let mut cluster =
        TestCluster::start_bootstrap_with(&clusterhost_tests::paths::kv_plugin(), fast(1)).await;
    cluster.start_joining(0, fast(2)).await;
    let starved = clusterhost_tests::NodeOptions {
        plugin_fuel: Some(20_000),
        ..fast(3)
    };
    let third = cluster.start_joining(1, starved).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let mut client = cluster.client(leader).await;
    let value = "v".repeat(3_000);
    for key in 0..20 {
        apply_ok(&mut client, kv::put(&format!("big/{key:02}"), &value)).await;
    }
    let index = clusterhost_tests::assert_replicas_agree(&cluster).await;
    let keys = clusterhost_tests::kv::scan_all(
        &mut cluster.client(third).await,
        "big/",
        clusterhost_client::proto::Consistency::Stale,
    )
    .await;
    assert_eq!(
        keys.len(),
        20,
        "node {third} holds every key at index {index}"
    );
    let log = cluster.node(third).log();
    assert!(
        log.contains("--plugin-fuel 20000 differs from the cluster's fuel_per_call = 1000000000")
            && log.contains("clusterhost config set fuel_per_call 20000"),
        "the starved node's log has no warning about its flag"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setting_changes_on_every_replica_and_a_bad_value_changes_nothing() {
    // Goal: `config set` changes a cluster setting through the log, so every
    // node reports it; a value out of range or an unknown name is refused
    // with a clear error and nothing changes.
    let cluster = three_nodes(fast(0)).await;
    let set = cluster
        .cli(1, &["config", "set", "fuel_per_call", "2000000000"])
        .await;
    assert!(
        set.success()
            .contains("fuel_per_call = 2000000000 from index"),
        "{set}"
    );
    for n in 0..3 {
        wait_for(
            "every node to apply the setting",
            MEMBERSHIP_TIMEOUT,
            || async {
                let settings = cluster
                    .cli(n, &["config", "get", "--json"])
                    .await
                    .success_json();
                settings["fuel_per_call"] == 2_000_000_000u64
            },
        )
        .await;
    }
    let too_small = cluster
        .cli(2, &["config", "set", "fuel_per_call", "5"])
        .await;
    too_small.failure(
        exit::INVALID_INPUT,
        &["fuel_per_call must be a number from"],
    );
    let unknown = cluster.cli(0, &["config", "set", "fuel", "5"]).await;
    unknown.failure(exit::INVALID_INPUT, &["there is no cluster setting `fuel`"]);
    let settings = cluster
        .cli(0, &["config", "get", "--json"])
        .await
        .success_json();
    assert_eq!(
        settings["fuel_per_call"], 2_000_000_000u64,
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_past_the_state_quota_are_refused_and_reads_still_served() {
    // Goal: with the quota set to 1 MiB, writes go on until the state
    // reaches it, then are refused with `resource exhausted` while reads are
    // still served; raising the quota lets writes in again.
    let cluster = TestCluster::start_bootstrap(&clusterhost_tests::paths::kv_plugin()).await;
    cluster
        .cli(0, &["config", "set", "state_quota_bytes", "1048576"])
        .await
        .success();
    let mut client = cluster.client(0).await;
    let value = "q".repeat(100_000);
    let mut refused = None;
    for key in 0..100 {
        match client
            .apply(kv::put(&format!("quota/{key:03}"), &value))
            .await
        {
            Ok(_) => {}
            Err(clusterhost_client::ClientError::Status(status)) => {
                refused = Some(status);
                break;
            }
            Err(error) => panic!("write {key}: {error}"),
        }
    }
    let refused = refused.expect("the quota was never reached");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("state_quota_bytes"),
        "{refused:?}"
    );
    let read = cluster
        .cli(0, &["query", r#"{"get":{"key":"quota/000"}}"#])
        .await;
    read.success();
    cluster
        .cli(0, &["config", "set", "state_quota_bytes", "16777216"])
        .await
        .success();
    apply_ok(&mut client, kv::put("quota/after", "x")).await;
}
