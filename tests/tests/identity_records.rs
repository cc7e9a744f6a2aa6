//! End-to-end scenarios of node names recorded in the Raft membership (TLS
//! clusters at protocol level 4): the leader records each member's verified
//! certificate name, every replica binds names from the log, so losing the
//! bindings files reopens no trust on first use, and a node certificate
//! cannot speak Raft for a named member. Each refusal changes nothing.

use std::time::Duration;

use clusterhost::consensus::transport::codec;
use clusterhost::consensus::transport::proto::RaftCall;
use clusterhost::consensus::types::{TypeConfig, Vote};
use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::paths::kv_plugin;
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast};
use clusterhost_tests::{TestCluster, wait_for};
use tonic::Code;

/// How long a refusal may take to show up: a few gossip rounds, one dial.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The bindings file's name in a node's data dir.
const BINDINGS_FILE: &str = "identity-bindings.json";

/// A 3-node TLS cluster (ids 1, 2, 3; certificates node-0..node-2), all
/// voters, each recorded with its name; returns it and its leader's index.
async fn three_named_tls_nodes() -> (TestCluster, usize) {
    let mut cluster = TestCluster::with_tls().await;
    cluster.bootstrap_node(&kv_plugin(), fast(1)).await;
    cluster.start_joining(0, fast(2)).await;
    cluster.start_joining(1, fast(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    for n in 0..3 {
        let needle = format!("name: Some(\"node-{n}\")");
        wait_for(
            &format!("node-{n}'s name to be recorded"),
            MEMBERSHIP_TIMEOUT,
            || {
                let recorded = (0..3).any(|k| {
                    cluster.node(k).log().lines().any(|line| {
                        line.contains("membership change committed") && line.contains(&needle)
                    })
                });
                async move { recorded.then_some(()) }
            },
        )
        .await;
    }
    let leader = cluster.wait_for_leader().await;
    (cluster, leader)
}

/// (id, gRPC address, suffrage) of every member, as node `n` records them.
async fn recorded_members(cluster: &TestCluster, n: usize) -> Vec<(u64, String, String)> {
    let status = cluster
        .try_status(n)
        .await
        .unwrap_or_else(|error| panic!("status of node {n}: {error}"));
    let mut recorded: Vec<(u64, String, String)> = status
        .members
        .into_iter()
        .map(|member| (member.id, member.rpc_addr, member.suffrage))
        .collect();
    recorded.sort();
    recorded
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_member_is_not_captured_after_the_bindings_files_are_lost() {
    // Goal: trust on first use cannot be captured. A follower is down and
    // forgotten by gossip (every other node restarted), one survivor's
    // bindings file is deleted and the other's corrupted; a process with a
    // valid node certificate (node-3) then gossips the follower's id at its
    // own address. Without names in the membership the leader would bind
    // node-3 to that id on first use and move the member's address there;
    // with them it is refused, the members stay as they were, writes work,
    // and the corrupt file is reported and left untouched.
    let (mut cluster, leader) = three_named_tls_nodes().await;
    let victim = (leader + 1) % 3;
    let victim_id = cluster.id_of(victim);
    let survivors: Vec<usize> = (0..3).filter(|n| *n != victim).collect();
    cluster.kill9(victim);
    for n in &survivors {
        cluster.terminate(*n).await;
    }
    let deleted = cluster.node(survivors[0]).data_dir().join(BINDINGS_FILE);
    std::fs::remove_file(&deleted).expect("delete a bindings file");
    let corrupt = cluster.node(survivors[1]).data_dir().join(BINDINGS_FILE);
    std::fs::write(&corrupt, "{corrupt").expect("corrupt a bindings file");
    for n in &survivors {
        cluster.set_join(*n, &survivors);
        cluster.restart_without_waiting(*n).await;
    }
    let leader = cluster.wait_for_leader().await;
    let before = recorded_members(&cluster, leader).await;

    let spoofer = cluster.add_node(fast(victim_id));
    cluster.set_join(spoofer, &survivors);
    cluster.restart_without_waiting(spoofer).await;
    let needle = format!("gossip about node {victim_id} ignored");
    for n in &survivors {
        let outcome = wait_for(
            &format!("node {n} to ignore the spoofer"),
            REFUSAL_TIMEOUT,
            || {
                let needle = needle.clone();
                let cluster = &cluster;
                let before = &before;
                async move {
                    let members = recorded_members(cluster, leader).await;
                    if members != *before {
                        return Some(Err(members));
                    }
                    let log = cluster.node(*n).log();
                    let refusal = log.lines().find(|line| line.contains(&needle));
                    refusal.map(|line| Ok(line.to_string()))
                }
            },
        )
        .await;
        let refusal = outcome.unwrap_or_else(|members| {
            panic!("the spoof moved a member: {before:?} -> {members:?}")
        });
        assert!(
            refusal.contains("node-3") && refusal.contains(&format!("node-{victim}")),
            "{refusal}"
        );
    }
    apply_ok(&mut cluster.client(leader).await, kv::put("after", "yes")).await;
    assert_eq!(recorded_members(&cluster, leader).await, before);
    let corrupt_log = cluster.node(survivors[1]).log();
    assert!(
        corrupt_log.contains("cannot be read"),
        "the corrupt file is reported"
    );
    let kept = std::fs::read_to_string(&corrupt).expect("read the corrupt file");
    assert_eq!(
        kept, "{corrupt",
        "the corrupt file is left for the operator"
    );

    cluster.kill9(spoofer);
    cluster.restart_without_waiting(victim).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    apply_ok(&mut cluster.client(victim).await, kv::put("back", "yes")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn raft_messages_for_a_named_member_need_its_certificate() {
    // Goal: another node's certificate (node-3, valid, role node) cannot
    // speak Raft in a named member's name: a pre-vote, a vote with a higher
    // term and an AppendEntries claiming the leader's id are refused with
    // `permission denied`, and the follower's term, log and leader stay as
    // they were. The same certificate claiming an id no record names is
    // still heard (the role allows Raft).
    let (cluster, leader) = three_named_tls_nodes().await;
    let follower = (leader + 1) % 3;
    let leader_id = cluster.id_of(leader);
    let pki = cluster.pki().expect("a TLS cluster");
    let ip = cluster.node(follower).gossip_addr().ip();
    pki.node("node-3", ip).await;
    let other_node = pki.load("node-3");
    let before = cluster.try_status(follower).await.expect("status");
    let endpoint = cluster.node(follower).endpoint();
    let mut raft = codec::raft_client(&endpoint, Some(&other_node)).expect("client");

    let vote = |candidate| {
        let vote = Vote::new(before.term + 100, candidate);
        openraft::raft::VoteRequest::<TypeConfig>::new(vote, None)
    };
    let heard = codec::request(RaftCall::PreVote, &vote(4242), before.node_id).expect("encode");
    raft.call(heard).await.expect("an unnamed id is heard");

    let append = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(before.term + 100, leader_id),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let forged = [
        codec::request(RaftCall::PreVote, &vote(leader_id), before.node_id),
        codec::request(RaftCall::Vote, &vote(leader_id), before.node_id),
        codec::request(RaftCall::AppendEntries, &append, before.node_id),
    ];
    for request in forged {
        let status = raft
            .call(request.expect("encode"))
            .await
            .expect_err("another node spoke for the leader");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains(&format!("node-{leader}")),
            "{status:?}"
        );
    }
    let after = cluster.try_status(follower).await.expect("status");
    assert_eq!(after.term, before.term, "a forged message moved the term");
    assert_eq!(
        after.last_log_index, before.last_log_index,
        "the log changed"
    );
    assert_eq!(after.leader_id, before.leader_id, "the leader changed");
}
