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
