//! Writes a follower forwards to the leader: many at once travel in few
//! batches, and each still gets its own answer, applied once.

use clusterhost_client::proto::Consistency;
use clusterhost_tests::kv::{apply_ok, get_value, put};
use clusterhost_tests::ops::{scrape, three_nodes_with_ops, value_or_zero};

/// Concurrent writers sending to one follower.
const WRITERS: usize = 32;
/// Writes each writer sends, one after another.
const WRITES_PER_WRITER: usize = 8;

const FORWARD_BATCH: &str =
    "clusterhost_grpc_forwarded_requests_total{method=\"/clusterhost.v1.Cluster/ForwardBatch\"}";
const FORWARD_APPLY: &str =
    "clusterhost_grpc_forwarded_requests_total{method=\"/clusterhost.v1.Cluster/Apply\"}";

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
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let mut client = cluster.client(follower).await;
        writers.spawn(async move {
            let mut indexes = Vec::new();
            for write in 0..WRITES_PER_WRITER {
                let key = format!("w{writer}-{write}");
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
            let key = format!("w{writer}-{write}");
            let value = get_value(&mut reader, &key, Consistency::Linearizable).await;
            assert_eq!(value.as_deref(), Some(key.as_str()));
        }
    }
    let after = scrape(ops[leader]).await.expect("scrape the leader");
    let batches = value_or_zero(&after, FORWARD_BATCH) - value_or_zero(&before, FORWARD_BATCH);
    let alone = value_or_zero(&after, FORWARD_APPLY) - value_or_zero(&before, FORWARD_APPLY);
    assert!(batches >= 1.0, "no ForwardBatch call reached the leader");
    assert!(
        batches < (WRITERS * WRITES_PER_WRITER) as f64,
        "{batches} batches for {} writes: nothing was batched",
        WRITERS * WRITES_PER_WRITER
    );
    assert_eq!(alone, 0.0, "writes were forwarded one call each");
}
