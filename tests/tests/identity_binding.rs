//! End-to-end scenarios of node identity on a TLS cluster: a node holding
//! a valid node certificate cannot take another member's id, nor advertise
//! another node's address; each refusal changes nothing (the members and
//! their addresses stay as they were, writes keep working), while a real
//! member that moves is still followed.

use std::time::Duration;

use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::paths::kv_plugin;
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast};
use clusterhost_tests::{TestCluster, wait_for};

/// How long a refusal may take to show up: a few gossip rounds, one dial.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// A 3-node TLS cluster (ids 1, 2, 3; certificates node-0..node-2), all
/// voters; returns it and its leader's index.
async fn three_tls_nodes() -> (TestCluster, usize) {
    let mut cluster = TestCluster::with_tls().await;
    cluster.bootstrap_node(&kv_plugin(), fast(1)).await;
    cluster.start_joining(0, fast(2)).await;
    cluster.start_joining(1, fast(3)).await;
    let leader = cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    (cluster, leader)
}

/// Wait until node `n` logged that it ignored gossip about `node_id`, and
/// return that line; panics if the members node `n` records change from
/// `before` first (the spoof took effect).
async fn wait_for_refusal(
    cluster: &TestCluster,
    n: usize,
    node_id: u64,
    before: &[(u64, String, String)],
) -> String {
    let needle = format!("gossip about node {node_id} ignored");
    let outcome = wait_for(
        &format!("node {n} to ignore gossip about node {node_id}"),
        REFUSAL_TIMEOUT,
        || {
            let needle = needle.clone();
            async move {
                let members = cluster.recorded_members(n).await;
                if members != before {
                    return Some(Err(members));
                }
                let log = cluster.node(n).log();
                let refusal = log.lines().find(|line| line.contains(&needle));
                refusal.map(|line| Ok(line.to_string()))
            }
        },
    )
    .await;
    outcome.unwrap_or_else(|members| panic!("the members changed: {before:?} -> {members:?}"))
}

/// No node's log shows a membership change naming `endpoint`.
fn assert_never_recorded(cluster: &TestCluster, endpoint: &str) {
    for n in 0..3 {
        let log = cluster.node(n).log();
        let changed = log
            .lines()
            .filter(|line| line.contains("membership change"))
            .find(|line| line.contains(endpoint));
        assert_eq!(changed, None, "node {n} recorded {endpoint}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spoofed_member_id_is_ignored_and_a_real_move_is_followed() {
    // Goal: a process with a valid node certificate (node-3) gossiping a
    // follower's id at its own address changes nothing: that member's
    // address stays, writes through the cluster keep working. The follower
    // itself, restarted at a new port, is then followed (its certificate
    // proves it).
    let (mut cluster, leader) = three_tls_nodes().await;
    let victim = (leader + 1) % 3;
    let victim_id = cluster.id_of(victim);
    let before = cluster.recorded_members(leader).await;

    let spoofer = cluster.add_node(fast(victim_id));
    cluster.set_join(spoofer, &[leader]);
    cluster.restart_without_waiting(spoofer).await;
    let spoofer_endpoint = cluster.node(spoofer).endpoint();
    let refusal = wait_for_refusal(&cluster, leader, victim_id, &before).await;
    assert!(
        refusal.contains("node-3") && refusal.contains(&format!("node-{victim}")),
        "the refusal names both certificates: {refusal}"
    );
    // The leader acts on what it refused in the round it refused it; a
    // write it commits after that round (through the victim, forwarded
    // over the address book) proves later rounds passed too.
    apply_ok(&mut cluster.client(victim).await, kv::put("spoofed", "no")).await;
    apply_ok(&mut cluster.client(leader).await, kv::put("after", "yes")).await;
    assert_eq!(cluster.recorded_members(leader).await, before);
    assert_never_recorded(&cluster, &spoofer_endpoint);
    cluster.kill9(spoofer);

    cluster.kill9(victim);
    cluster.restart_at_new_addresses(victim).await;
    let moved_to = cluster.node(victim).endpoint();
    wait_for(
        "the leader to record the victim's new address",
        MEMBERSHIP_TIMEOUT,
        || {
            let cluster = &cluster;
            let moved_to = moved_to.clone();
            async move {
                let members = cluster.recorded_members(leader).await;
                members
                    .iter()
                    .any(|(id, addr, _)| *id == victim_id && *addr == moved_to)
                    .then_some(())
            }
        },
    )
    .await;
    apply_ok(&mut cluster.client(victim).await, kv::put("moved", "yes")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_advertising_another_nodes_address_is_not_added() {
    // Goal: a new node (id 9, certificate node-3) advertising a member's
    // gRPC address, where that member's certificate is presented, is never
    // added; the members stay as they were.
    let (mut cluster, leader) = three_tls_nodes().await;
    let other = (leader + 1) % 3;
    let before = cluster.recorded_members(leader).await;

    let mut options = fast(9);
    options.extra_args = vec!["--advertise".into(), cluster.node(other).endpoint()];
    let intruder = cluster.add_node(options);
    cluster.set_join(intruder, &[leader]);
    cluster.restart_without_waiting(intruder).await;
    let refusal = wait_for_refusal(&cluster, leader, 9, &before).await;
    assert!(
        refusal.contains("node-3") && refusal.contains(&format!("node-{other}")),
        "the refusal names both certificates: {refusal}"
    );
    apply_ok(&mut cluster.client(other).await, kv::put("after", "yes")).await;
    assert_eq!(cluster.recorded_members(leader).await, before);
    let ids: Vec<u64> = before.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    cluster.kill9(intruder);
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_speaking_for_a_member_at_its_address_is_ignored() {
    // Goal: a process (certificate node-3) gossiping a follower's id and
    // the follower's own gRPC address is ignored as a whole: the leader
    // keeps seeing the follower's own gossip entry (its gossip address),
    // and the members stay as they were.
    let (mut cluster, leader) = three_tls_nodes().await;
    let victim = (leader + 1) % 3;
    let victim_id = cluster.id_of(victim);
    let before = cluster.recorded_members(leader).await;

    let mut options = fast(victim_id);
    options.extra_args = vec!["--advertise".into(), cluster.node(victim).endpoint()];
    let spoofer = cluster.add_node(options);
    cluster.set_join(spoofer, &[leader]);
    cluster.restart_without_waiting(spoofer).await;
    let refusal = wait_for_refusal(&cluster, leader, victim_id, &before).await;
    assert!(refusal.contains("node-3"), "{refusal}");
    apply_ok(&mut cluster.client(victim).await, kv::put("after", "yes")).await;
    let members = cluster.members(leader).await;
    let seen = members["members"]
        .as_array()
        .and_then(|members| members.iter().find(|member| member["id"] == victim_id))
        .map(|member| member["gossip_addr"].clone());
    let own = cluster.node(victim).gossip_addr().to_string();
    assert_eq!(seen, Some(own.as_str().into()), "{members}");
    assert_eq!(cluster.recorded_members(leader).await, before);
    cluster.kill9(spoofer);
}

/// Wait until every node of `cluster` logged the names of the two others
/// as verified (the bindings a restart must keep).
async fn wait_for_all_bindings(cluster: &TestCluster) {
    for n in 0..3 {
        for other in (0..3).filter(|other| *other != n) {
            let needle = format!("node {} is node-{other}", cluster.id_of(other));
            wait_for(
                &format!("node {n} to verify node {other}"),
                MEMBERSHIP_TIMEOUT,
                || {
                    let found = cluster.node(n).log().contains(&needle);
                    async move { found.then_some(()) }
                },
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_restarted_with_every_node_at_a_new_address_regains_quorum() {
    // Goal: the names verified survive a restart: once every node verified
    // the others, all stop and start again on new ports (same data dirs);
    // each recognises the others at their new addresses, a leader is
    // elected and writes commit.
    let (mut cluster, leader) = three_tls_nodes().await;
    apply_ok(&mut cluster.client(leader).await, kv::put("before", "yes")).await;
    wait_for_all_bindings(&cluster).await;
    for n in 0..3 {
        cluster.terminate(n).await;
    }
    for n in 0..3 {
        cluster.move_to_new_addresses(n);
    }
    for n in 0..3 {
        let others: Vec<usize> = (0..3).filter(|other| *other != n).collect();
        cluster.set_join(n, &others);
    }
    for n in 0..3 {
        cluster.restart_without_waiting(n).await;
    }
    let leader = cluster.wait_for_leader().await;
    apply_ok(&mut cluster.client(leader).await, kv::put("after", "yes")).await;
}
