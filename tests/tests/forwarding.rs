//! Writes a follower forwards to the leader: many at once travel in few
//! batches, and each still gets its own answer, applied once; below the
//! protocol level of batches each travels in a call of its own.

use std::net::SocketAddr;
use std::time::Duration;

use clusterhost_client::Client;
use clusterhost_client::proto::Consistency;
use clusterhost_tests::kv::{apply_ok, get_value, put};
use clusterhost_tests::ops::{
    Scraped, free_ops_addr, scrape, three_nodes_with_ops, value_or_zero, with_ops,
};
use clusterhost_tests::paths::kv_plugin;
use clusterhost_tests::scenario::MEMBERSHIP_TIMEOUT;
use clusterhost_tests::{TestCluster, wait_for};

/// Concurrent writers sending to one follower.
const WRITERS: usize = 32;
/// Writes each writer sends, one after another.
const WRITES_PER_WRITER: usize = 8;
/// The protocol level from which followers forward in batches.
const LEVEL_FORWARD_BATCHES: u64 = 4;
/// Longest a setting may take to reach a follower.
const SETTING_TIMEOUT: Duration = Duration::from_secs(30);

const FORWARD_BATCH: &str =
    "clusterhost_grpc_forwarded_requests_total{method=\"/clusterhost.v1.Cluster/ForwardBatch\"}";
const FORWARD_APPLY: &str =
    "clusterhost_grpc_forwarded_requests_total{method=\"/clusterhost.v1.Cluster/Apply\"}";

/// Forwarded calls the leader received between two scrapes: (batches,
/// single applies).
fn forwarded_calls(before: &Scraped, after: &Scraped) -> (f64, f64) {
    let delta = |key| value_or_zero(after, key) - value_or_zero(before, key);
    (delta(FORWARD_BATCH), delta(FORWARD_APPLY))
}

/// [`WRITERS`] writers each put [`WRITES_PER_WRITER`] keys named after
/// `prefix` through node `follower` at once; every write is acknowledged
/// with its own log index and then read back from the leader.
async fn write_concurrently(cluster: &TestCluster, follower: usize, leader: usize, prefix: &str) {
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let mut client = cluster.client(follower).await;
        let prefix = prefix.to_string();
        writers.spawn(async move {
            let mut indexes = Vec::new();
            for write in 0..WRITES_PER_WRITER {
                let key = format!("{prefix}{writer}-{write}");
                let (index, _) = apply_ok(&mut client, put(&key, &key)).await;
                indexes.push(index);
            }
            indexes
        });
    }
    let mut indexes: Vec<u64> = writers.join_all().await.into_iter().flatten().collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), WRITERS * WRITES_PER_WRITER, "one entry each");

    let mut reader = cluster.client(leader).await;
    for writer in 0..WRITERS {
        for write in 0..WRITES_PER_WRITER {
            let key = format!("{prefix}{writer}-{write}");
            let value = get_value(&mut reader, &key, Consistency::Linearizable).await;
            assert_eq!(value.as_deref(), Some(key.as_str()));
        }
    }
}

/// The cluster's protocol level as node `client` serves it.
async fn protocol_level(client: &mut Client) -> Result<u64, String> {
    let settings = client.settings().await.map_err(|error| error.to_string())?;
    settings
        .settings
        .iter()
        .find(|setting| setting.name == "protocol_level")
        .map(|setting| setting.value)
        .ok_or_else(|| "no protocol_level setting".to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_to_a_follower_travel_in_batches_and_each_applies_once() {
    // Goal: 256 writes sent at once to a follower all succeed, each with
    // its own log index, and each key then holds its value; the leader
    // received them in fewer ForwardBatch calls than writes (batched), none
    // as a forwarded Apply of its own.
    let (cluster, ops) = three_nodes_with_ops().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    let before = scrape(ops[leader]).await.expect("scrape the leader");
    write_concurrently(&cluster, follower, leader, "w").await;
    let after = scrape(ops[leader]).await.expect("scrape the leader");
    let (batches, alone) = forwarded_calls(&before, &after);
    assert!(batches >= 1.0, "no ForwardBatch call reached the leader");
    assert!(
        batches < (WRITERS * WRITES_PER_WRITER) as f64,
        "{batches} batches for {} writes: nothing was batched",
        WRITERS * WRITES_PER_WRITER
    );
    assert_eq!(alone, 0.0, "writes were forwarded one call each");
}

/// Three kv nodes whose cluster starts at protocol level `level`, each
/// serving its ops listener at the address returned for it.
async fn three_nodes_at_level(level: u64) -> (TestCluster, Vec<SocketAddr>) {
    let ops: Vec<SocketAddr> = (0..3).map(|_| free_ops_addr()).collect();
    let mut first = with_ops(1, ops[0]);
    first
        .extra_args
        .extend(["--protocol-level".to_string(), level.to_string()]);
    let mut cluster = TestCluster::start_bootstrap_with(&kv_plugin(), first).await;
    cluster.start_joining(0, with_ops(2, ops[1])).await;
    cluster.start_joining(1, with_ops(3, ops[2])).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    (cluster, ops)
}

#[tokio::test(flavor = "multi_thread")]
async fn below_the_batches_level_a_follower_forwards_each_write_alone_and_batches_once_raised() {
    // Goal: in a cluster one level below batches (members that could lack
    // ForwardBatch may be present), a follower forwards each write in an
    // Apply call of its own and sends no ForwardBatch; once
    // `protocol_level` is raised, the same load travels in batches.
    let (cluster, ops) = three_nodes_at_level(LEVEL_FORWARD_BATCHES - 1).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    let mut follower_client = cluster.client(follower).await;
    let level = protocol_level(&mut follower_client)
        .await
        .expect("settings");
    assert_eq!(level, LEVEL_FORWARD_BATCHES - 1, "the flag seeds the level");

    let before = scrape(ops[leader]).await.expect("scrape the leader");
    write_concurrently(&cluster, follower, leader, "below").await;
    let after = scrape(ops[leader]).await.expect("scrape the leader");
    let (batches, alone) = forwarded_calls(&before, &after);
    assert_eq!(batches, 0.0, "a batch was sent below the level");
    // At least one each (a retry after "not the leader" adds one).
    assert!(
        alone >= (WRITERS * WRITES_PER_WRITER) as f64,
        "{alone} calls: not one each"
    );

    let mut leader_client = cluster.client(leader).await;
    leader_client
        .set_setting("protocol_level", &LEVEL_FORWARD_BATCHES.to_string())
        .await
        .expect("raise the level");
    wait_for("the follower at the raised level", SETTING_TIMEOUT, || {
        let mut client = follower_client.clone();
        async move {
            match protocol_level(&mut client).await {
                Ok(level) if level == LEVEL_FORWARD_BATCHES => Ok(()),
                Ok(level) => Err(format!("at level {level}")),
                Err(error) => Err(error),
            }
        }
    })
    .await;

    let before = scrape(ops[leader]).await.expect("scrape the leader");
    write_concurrently(&cluster, follower, leader, "at").await;
    let after = scrape(ops[leader]).await.expect("scrape the leader");
    let (batches, alone) = forwarded_calls(&before, &after);
    assert!(batches >= 1.0, "no ForwardBatch call reached the leader");
    assert!(
        batches < (WRITERS * WRITES_PER_WRITER) as f64,
        "{batches} batches: nothing was batched"
    );
    assert_eq!(alone, 0.0, "writes were forwarded one call each");
}
