//! Checks run after every scenario that writes: no acknowledged write is
//! lost, and every replica holds the same state at the same applied index.
//! Written for N nodes; with one node the replica check is trivially small.

use std::collections::BTreeMap;
use std::time::Duration;

use clusterhost_client::Client;
use clusterhost_client::proto::Consistency;
use serde_json::Value;

use crate::cluster::TestCluster;
use crate::kv::scan_all;

/// Writes a client saw acknowledged: key → value (kv plugin).
pub type Acknowledged = BTreeMap<String, String>;

/// How long replicas may take to apply the same index once writes stop.
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every acknowledged write is readable, with its value, through a
/// linearizable read on the leader, and every running replica agrees (see
/// [`assert_replicas_agree`]). Returns the leader's full state.
pub async fn assert_acknowledged_present(
    cluster: &TestCluster,
    acknowledged: &Acknowledged,
) -> BTreeMap<String, String> {
    let leader = cluster.wait_for_leader().await;
    let mut client = cluster.client(leader).await;
    let state = scan_all(&mut client, "", Consistency::Linearizable).await;
    let lost: Vec<(&String, &String, Option<&String>)> = acknowledged
        .iter()
        .filter(|(key, value)| state.get(*key) != Some(*value))
        .map(|(key, value)| (key, value, state.get(key)))
        .take(10)
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes missing or wrong on the leader (node {leader}), \
         first ones as (key, acknowledged value, value read): {lost:?}"
    );
    assert_replicas_agree(cluster).await;
    state
}

/// Once every running node has applied the same index, each one's local
/// (stale) kv state is the same. Returns that index. For other plugins see
/// [`assert_replicas_agree_on`].
pub async fn assert_replicas_agree(cluster: &TestCluster) -> u64 {
    compare_replicas(cluster, async |client: &mut Client| {
        let state = scan_all(client, "", Consistency::Stale).await;
        serde_json::to_value(state).expect("a map serializes")
    })
    .await
}

/// Once every running node has applied the same index, each of `queries`
/// (raw plugin queries, run stale) answers the same on every node. Returns
/// that index.
pub async fn assert_replicas_agree_on(cluster: &TestCluster, queries: &[&str]) -> u64 {
    compare_replicas(cluster, async |client: &mut Client| {
        let mut answers = Vec::new();
        for query in queries {
            let response = client
                .query(query.as_bytes().to_vec(), Consistency::Stale)
                .await
                .unwrap_or_else(|error| panic!("query {query}: {error}"));
            answers.push(Value::String(format!("{:?}", response.result)));
        }
        Value::Array(answers)
    })
    .await
}

/// Wait until every running node has applied the highest commit index, then
/// read each node's state with `read` and require them all equal.
async fn compare_replicas(cluster: &TestCluster, read: impl AsyncFn(&mut Client) -> Value) -> u64 {
    let running = cluster.running();
    assert!(!running.is_empty(), "no running node to check");
    let index = cluster.wait_caught_up(CONVERGENCE_TIMEOUT).await;
    let mut states = Vec::new();
    for &n in &running {
        let mut client = cluster.client(n).await;
        let state = read(&mut client).await;
        let after = client.status().await.expect("status").applied_index;
        assert_eq!(
            after, index,
            "node {n} applied more entries while being compared; is a writer still running?"
        );
        states.push((n, state));
    }
    let (first, reference) = &states[0];
    for (n, state) in &states[1..] {
        assert!(
            state == reference,
            "node {n} and node {first} differ at applied index {index}"
        );
    }
    index
}
