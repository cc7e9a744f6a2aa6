//! Building blocks the multi-node scenarios share: timing bounds for
//! debug builds on two cores, a three-node cluster, and waits for leaders
//! and membership to settle.

use std::collections::BTreeSet;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::kv::{self, apply_ok};
use crate::paths::kv_plugin;
use crate::{Acknowledged, NodeOptions, TestCluster, wait_for};

/// Longest a membership change driven by gossip may take (failure detection,
/// stabilization, reconciliation every 500 ms, a Raft change): generous for
/// debug builds on two cores running two tests at once.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a new leader may take to be elected and agreed on.
pub const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a node may take to exit after `leave`.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client's write may wait through a missing quorum before the
/// CLI gives up with exit 4: the host's 10 s request bound plus slack.
pub const UNAVAILABLE_BOUND: Duration = Duration::from_secs(15);

/// Flags every node of these tests gets: promote learners after 1 s instead
/// of 5 s, so that joins take seconds.
pub fn fast(node_id: u64) -> NodeOptions {
    NodeOptions {
        node_id: Some(node_id),
        stabilization: Some(Duration::from_secs(1)),
        ..NodeOptions::default()
    }
}

pub fn kv_digest() -> String {
    hex::encode(Sha256::digest(
        std::fs::read(kv_plugin()).expect("read kv.wasm"),
    ))
}

/// Node 0 bootstraps (id 1); node 1 joins through node 0 (id 2); node 2
/// joins through node 1 (id 3). Waits until all three are voters and agree
/// on a leader. Every node gets `options` with its own id.
pub async fn three_nodes(options: NodeOptions) -> TestCluster {
    let with_id = |id| NodeOptions {
        node_id: Some(id),
        ..options.clone()
    };
    let mut cluster = TestCluster::start_bootstrap_with(&kv_plugin(), with_id(1)).await;
    cluster.start_joining(0, with_id(2)).await;
    cluster.start_joining(1, with_id(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    cluster
}

/// Three nodes running the counter plugin (ids 1, 2, 3), all voters.
pub async fn counter_cluster() -> TestCluster {
    let counter = crate::paths::plugin("counter.wasm");
    let mut cluster = TestCluster::start_bootstrap_with(&counter, fast(1)).await;
    cluster.start_joining(0, fast(2)).await;
    cluster.start_joining(1, fast(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    cluster
}

/// Put `key` = `value` through node `n`'s gRPC API (followers forward);
/// panics unless acknowledged.
pub async fn put_through(cluster: &TestCluster, n: usize, key: &str, value: &str) {
    let mut client = cluster.client(n).await;
    apply_ok(&mut client, kv::put(key, value)).await;
}

/// Every key of `state` holds a value some writer attempted (nothing
/// invented, nothing torn).
pub fn assert_only_attempted_values(
    state: &std::collections::BTreeMap<String, String>,
    attempted: &Acknowledged,
) {
    for (key, value) in state {
        if let Some(sent) = attempted.get(key) {
            assert_eq!(sent, value, "{key} holds a value never sent");
        }
    }
}

/// The ids of the members in node `n`'s status.
pub async fn member_ids(cluster: &TestCluster, n: usize) -> BTreeSet<u64> {
    let status = cluster.status(n).await;
    status["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {status}"))
        .iter()
        .map(|member| member["id"].as_u64().expect("member id"))
        .collect()
}

/// Ask node `asker` to hand leadership to node `target` (`leader transfer`)
/// and wait until `target` leads.
pub async fn transfer_leadership(cluster: &TestCluster, asker: usize, target: usize) {
    let target_id = cluster.id_of(target).to_string();
    cluster
        .cli(asker, &["leader", "transfer", "--to", &target_id])
        .await
        .success();
    wait_for("leadership at the target", ELECTION_TIMEOUT, || async {
        match cluster.leader_index().await {
            Ok(leader) if leader == target => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Wait until the running nodes agree on a leader other than `old` and
/// return its index.
pub async fn wait_for_new_leader(cluster: &TestCluster, old: usize) -> usize {
    wait_for(
        &format!("a leader other than node {old}"),
        ELECTION_TIMEOUT,
        || async {
            match cluster.leader_index().await {
                Ok(leader) if leader != old => Ok(leader),
                Ok(leader) => Err(format!("node {leader} still leads")),
                Err(why) => Err(why),
            }
        },
    )
    .await
}

/// Wait until node `observer`'s gossip no longer sees node id `departed`
/// alive: from then on the leader's reconciler cannot (re-)add it, so the
/// membership seen afterwards is settled.
pub async fn wait_until_not_alive(cluster: &TestCluster, observer: usize, departed: u64) {
    wait_for(
        &format!("node {observer} to see node id {departed} gone from gossip"),
        MEMBERSHIP_TIMEOUT,
        || async {
            let members = cluster.members(observer).await;
            let alive = members["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|member| member["id"] == departed && member["liveness"] == "alive");
            if alive {
                Err(format!("members: {members}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
}
