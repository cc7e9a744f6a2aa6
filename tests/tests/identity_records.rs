//! End-to-end scenarios of node names recorded in the Raft membership (TLS
//! clusters at protocol level 4): the leader records each member's verified
//! certificate name, every replica binds names from the log, so losing the
//! bindings files reopens no trust on first use, and a node certificate
//! cannot speak Raft for a named member. Each refusal changes nothing.

use std::time::Duration;

use futures::StreamExt;

use clusterhost::consensus::transport::codec;
use clusterhost::consensus::transport::proto::{RaftCall, SnapshotChunk};
use clusterhost::consensus::types::{SnapshotMeta, TypeConfig, Vote};
use clusterhost_tests::cli::{CLI_TIMEOUT, run_cli};
use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::paths::{clusterhost_binary, kv_plugin};
use clusterhost_tests::process::Process;
use clusterhost_tests::scenario::{LEAVE_TIMEOUT, MEMBERSHIP_TIMEOUT, fast};
use clusterhost_tests::{TestCluster, exit, wait_for};
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

/// Wait until node `n` logged that it ignored gossip about `node_id`, and
/// return that line; panics if the members node `leader` records change
/// from `before` first (the spoof took effect).
async fn wait_for_refusal(
    cluster: &TestCluster,
    n: usize,
    node_id: u64,
    (leader, before): (usize, &[(u64, String, String)]),
) -> String {
    let needle = format!("gossip about node {node_id} ignored");
    let outcome = wait_for(
        &format!("node {n} to ignore the spoofer"),
        REFUSAL_TIMEOUT,
        || {
            let needle = needle.clone();
            async move {
                let members = cluster.recorded_members(leader).await;
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
    outcome.unwrap_or_else(|members| panic!("the spoof moved a member: {before:?} -> {members:?}"))
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
    let before = cluster.recorded_members(leader).await;

    let spoofer = cluster.add_node(fast(victim_id));
    cluster.set_join(spoofer, &survivors);
    cluster.restart_without_waiting(spoofer).await;
    for n in &survivors {
        let refusal = wait_for_refusal(&cluster, *n, victim_id, (leader, &before)).await;
        assert!(
            refusal.contains("node-3") && refusal.contains(&format!("node-{victim}")),
            "{refusal}"
        );
    }
    apply_ok(&mut cluster.client(leader).await, kv::put("after", "yes")).await;
    assert_eq!(cluster.recorded_members(leader).await, before);
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
    // they were. The same certificate claiming an id that is no member
    // (a made-up leader 4242: a committed vote, entries, a snapshot, a
    // pre-vote) is refused too: openraft itself checks no membership.
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
    let append = |leader| openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(before.term + 1, leader),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let forged = [
        codec::request(RaftCall::PreVote, &vote(leader_id), before.node_id),
        codec::request(RaftCall::Vote, &vote(leader_id), before.node_id),
        codec::request(RaftCall::AppendEntries, &append(leader_id), before.node_id),
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
    let made_up = [
        codec::request(RaftCall::PreVote, &vote(MADE_UP_ID), before.node_id),
        codec::request(RaftCall::Vote, &vote(MADE_UP_ID), before.node_id),
        codec::request(RaftCall::AppendEntries, &append(MADE_UP_ID), before.node_id),
    ];
    for request in made_up {
        let status = raft
            .call(request.expect("encode"))
            .await
            .expect_err("a made-up id was heard");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("not a member"), "{status:?}");
    }
    let snapshot = snapshot_from(MADE_UP_ID, before.term + 1, before.node_id);
    let status = raft
        .install_snapshot(futures::stream::iter([snapshot]))
        .await
        .expect_err("a snapshot from a made-up leader was taken");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let after = cluster.try_status(follower).await.expect("status");
    assert_eq!(after.term, before.term, "a forged message moved the term");
    assert_eq!(
        after.last_log_index, before.last_log_index,
        "the log changed"
    );
    assert_eq!(after.leader_id, before.leader_id, "the leader changed");
}

/// An id no member has: what a node certificate holder makes up.
const MADE_UP_ID: u64 = 4242;

/// The one chunk of a (tiny, empty) snapshot sent to node `to_node` by
/// `leader` with a committed vote in `term`.
fn snapshot_from(leader: u64, term: u64, to_node: u64) -> SnapshotChunk {
    let vote = Vote::new_committed(term, leader);
    let meta = SnapshotMeta::default();
    SnapshotChunk {
        to_node,
        header: codec::encode(&(vote, meta)).expect("encode"),
        data: Vec::new(),
        format: codec::WIRE_FORMAT,
    }
}

/// The leader's dead grace in the leaving scenario: a forged `leaving`
/// must outlast it without removing anyone.
const DEAD_GRACE: Duration = Duration::from_secs(2);

/// A process holding the gossip key but no certificate, gossiping node
/// `node_id` at `advertise` (it joins through `seed`); logs to `dir`.
fn keyholder(
    dir: &std::path::Path,
    node_id: u64,
    advertise: &str,
    seed: &str,
    key: &str,
) -> (Process, String) {
    let (listen, gossip) = clusterhost_tests::cluster::free_addresses();
    let data_dir = dir.join("data").to_string_lossy().into_owned();
    let args = [
        "run",
        "--node-id",
        &node_id.to_string(),
        "--listen",
        &listen.to_string(),
        "--advertise",
        advertise,
        "--gossip",
        &gossip.to_string(),
        "--join",
        seed,
        "--gossip-key-file",
        key,
        "--data-dir",
        &data_dir,
    ];
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let process =
        Process::spawn(clusterhost_binary(), &args, &dir.join("node.log")).expect("spawn");
    (process, listen.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_leaving_entry_does_not_remove_a_live_learner() {
    // Goal: a gossip-key holder (no certificate) gossiping a learner's id
    // at the learner's own address with `leaving` set is believed by the
    // leader (the certificate there is the learner's), yet the learner,
    // answering Raft, is not removed past the grace period; writes go on.
    // The learner's own `clusterhost leave` then removes it at once.
    let mut cluster = TestCluster::with_tls().await;
    let mut first = fast(1);
    first.dead_grace = Some(DEAD_GRACE);
    first.extra_args = vec!["--voter-cap".into(), "1".into()];
    cluster.bootstrap_node(&kv_plugin(), first).await;
    cluster.start_joining(0, fast(2)).await;
    let learner = (2, cluster.node(1).endpoint(), "learner".to_string());
    wait_for("node 2 to be a learner", MEMBERSHIP_TIMEOUT, || {
        let cluster = &cluster;
        let learner = learner.clone();
        async move {
            cluster
                .recorded_members(0)
                .await
                .contains(&learner)
                .then_some(())
        }
    })
    .await;
    let before = cluster.recorded_members(0).await;

    let key = cluster.pki().expect("TLS").gossip_key("gossip.key").await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let seed = cluster.node(0).gossip_addr().to_string();
    let (forger, forger_endpoint) =
        keyholder(scratch.path(), 2, &learner.1, &seed, &key.to_string_lossy());
    let env = [("CLUSTERHOST_ENDPOINT", forger_endpoint.as_str())];
    wait_for("the forger to start", MEMBERSHIP_TIMEOUT, || async {
        let log = std::fs::read_to_string(scratch.path().join("node.log")).unwrap_or_default();
        log.contains("node started").then_some(())
    })
    .await;
    // It cannot reach the leader without a certificate; its `leaving` is
    // gossiped all the same.
    run_cli(["leave"], &env, CLI_TIMEOUT).await;
    wait_for(
        "the leader to believe node 2 is leaving",
        MEMBERSHIP_TIMEOUT,
        || async {
            let members = cluster.members(0).await;
            let leaving = members["members"]
                .as_array()
                .and_then(|members| members.iter().find(|member| member["id"] == 2))
                .is_some_and(|member| member["leaving"] == true);
            leaving.then_some(())
        },
    )
    .await;
    let window = std::time::Instant::now() + DEAD_GRACE * 3;
    while std::time::Instant::now() < window {
        assert_eq!(
            cluster.recorded_members(0).await,
            before,
            "a forged leave removed the learner"
        );
        apply_ok(&mut cluster.client(0).await, kv::put("during", "yes")).await;
    }
    forger.kill();

    cluster.cli(1, &["leave"]).await.success();
    let status = cluster.wait_exit(1, LEAVE_TIMEOUT).await;
    assert_eq!(status.code(), Some(exit::OK), "learner leave: {status}");
    // The leader removes a learner that really left once it sees it gone.
    wait_for(
        "the leader to remove the learner",
        MEMBERSHIP_TIMEOUT,
        || async {
            let members = cluster.recorded_members(0).await;
            if members.iter().all(|(id, _, _)| *id != 2) {
                Ok(())
            } else {
                Err(format!("{members:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_gossiped_at_a_joining_nodes_address_does_not_keep_it_out() {
    // Goal: a gossip-key holder keeps a made-up id alive at a joining
    // node's address before and while it joins. The leader asks the node
    // there for its id: the made-up id is never added, and the real node
    // joins (before, the two ids shared the address and neither was
    // believed, locking the node out for as long as the forger ran).
    let mut cluster = TestCluster::with_tls().await;
    cluster.bootstrap_node(&kv_plugin(), fast(1)).await;
    let joining = cluster.add_node(fast(2));
    cluster.set_join(joining, &[0]);
    let address = cluster.node(joining).endpoint();
    let key = cluster.pki().expect("TLS").gossip_key("gossip.key").await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let seed = cluster.node(0).gossip_addr().to_string();
    let (_forger, _) = keyholder(
        scratch.path(),
        MADE_UP_ID,
        &address,
        &seed,
        &key.to_string_lossy(),
    );
    wait_for("the forger to start", MEMBERSHIP_TIMEOUT, || async {
        let log = std::fs::read_to_string(scratch.path().join("node.log")).unwrap_or_default();
        log.contains("node started").then_some(())
    })
    .await;
    cluster.restart_without_waiting(joining).await;
    cluster.wait_ready(joining).await;
    let joined = cluster.id_of(joining);
    wait_for("the real node to be a member", MEMBERSHIP_TIMEOUT, || {
        let cluster = &cluster;
        async move {
            let members = cluster.recorded_members(0).await;
            members
                .iter()
                .any(|(id, _, _)| *id == joined)
                .then_some(members)
        }
    })
    .await;
    let refusal = format!(
        "gossip claims node {MADE_UP_ID} at {address}, but the node there is node {joined}"
    );
    wait_for(
        "the leader to refuse the made-up id",
        REFUSAL_TIMEOUT,
        || {
            let found = cluster.node(0).log().contains(&refusal);
            async move { found.then_some(()) }
        },
    )
    .await;
    let members = cluster.recorded_members(0).await;
    assert!(
        members.iter().all(|(id, _, _)| *id != MADE_UP_ID),
        "the made-up id was added: {members:?}"
    );
}

/// Most attempts at seeing the receiving slot taken.
const SLOT_ATTEMPTS_MAX: usize = 200;

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_snapshot_holds_the_slot_only_until_its_idle_limit() {
    // Goal: while a member's snapshot stream holds the one receiving slot
    // (it sent its first chunk and stalls), a snapshot from an id that is
    // no member is refused as such (its sender is checked before the slot
    // is asked for), and the stalled stream is cut after the idle limit.
    let (cluster, leader) = three_named_tls_nodes().await;
    let follower = (leader + 1) % 3;
    let pki = cluster.pki().expect("a TLS cluster");
    let ip = cluster.node(follower).gossip_addr().ip();
    pki.node("node-3", ip).await;
    let before = cluster.try_status(follower).await.expect("status");
    let endpoint = cluster.node(follower).endpoint();
    let leader_tls = pki.load(&format!("node-{leader}"));
    let as_leader = codec::raft_client(&endpoint, Some(&leader_tls)).expect("client");
    let mut outsider = codec::raft_client(&endpoint, Some(&pki.load("node-3"))).expect("client");
    let leader_id = cluster.id_of(leader);

    let stall = || {
        let mut client = as_leader.clone();
        let first = snapshot_from(leader_id, before.term, before.node_id);
        tokio::spawn(async move {
            let chunks = futures::stream::iter([first]).chain(futures::stream::pending());
            client.install_snapshot(chunks).await
        })
    };
    let mut stalled = stall();
    // The slot is taken once another stream of the leader's is told so. A
    // probe holds the slot for a moment too: a stalled stream that arrived
    // in that moment was refused, and is started again.
    let mut taken = false;
    for _ in 0..SLOT_ATTEMPTS_MAX {
        if stalled.is_finished() {
            let refused = stalled
                .await
                .expect("task")
                .expect_err("a stalled stream ended");
            assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
            stalled = stall();
        }
        let mut probe = as_leader.clone();
        let chunk = snapshot_from(leader_id, before.term, before.node_id);
        let status = probe
            .install_snapshot(futures::stream::iter([chunk]))
            .await
            .expect_err("an empty snapshot body is refused");
        if status.code() == Code::ResourceExhausted {
            taken = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(taken, "the stalled stream never held the receiving slot");
    let made_up = snapshot_from(MADE_UP_ID, before.term + 1, before.node_id);
    let status = outsider
        .install_snapshot(futures::stream::iter([made_up]))
        .await
        .expect_err("a snapshot from a made-up leader was taken");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let limit = clusterhost::limits::RAFT_SNAPSHOT_CHUNK_IDLE_TIMEOUT;
    let ended = tokio::time::timeout(limit * 2, stalled)
        .await
        .expect("the stalled stream outlived twice its idle limit")
        .expect("task");
    let status = ended.expect_err("a stalled snapshot was installed");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let after = cluster.try_status(follower).await.expect("status");
    assert_eq!(after.term, before.term, "the term moved");
    assert_eq!(after.leader_id, before.leader_id, "the leader changed");
}
