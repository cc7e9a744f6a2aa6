//! End-to-end scenarios in which members of a cluster of real `clusterhost`
//! processes fail or go: crashes of leaders and followers under writes,
//! automatic removal of dead members, a lost quorum, graceful leaving, and
//! leadership transfer. Each test owns its nodes, ports and temp dirs
//! through a `TestCluster`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clusterhost_tests::kv::{self, apply_ok};
use clusterhost_tests::load::WriteStream;
use clusterhost_tests::scenario::*;
use clusterhost_tests::{
    Acknowledged, NodeOptions, TestCluster, assert_acknowledged_present, assert_replicas_agree_on,
    exit, wait_for,
};
use serde_json::Value;

/// Commands written while a follower is down, and the size of each value:
/// together more than the largest Raft message (65 MiB).
const LARGE_WRITES: usize = 110;
const LARGE_VALUE_BYTES: usize = 900_000;

#[tokio::test(flavor = "multi_thread")]
async fn kill9_leader_under_writes_loses_no_acknowledged_write() {
    // Goal: SIGKILL the leader while six clients write through all three
    // nodes: a new leader is elected, writes resume, every acknowledged write
    // is on every live node, and the killed node restarts on its data dir and
    // ports and catches up. Prints the time from the kill to the first
    // acknowledged write after it.
    let mut cluster = three_nodes(fast(0)).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let endpoints: Vec<String> = (0..6).map(|w| cluster.node(w % 3).endpoint()).collect();
    let stream = WriteStream::start(&endpoints, "");
    wait_for("100 acknowledged writes", ELECTION_TIMEOUT, || async {
        stream.acknowledged_count() >= 100
    })
    .await;
    let killed_at = Instant::now();
    cluster.kill9(leader);
    let resumed = wait_for(
        "a write acknowledged after the leader was killed",
        ELECTION_TIMEOUT,
        || async { stream.first_acknowledged_after(killed_at) },
    )
    .await;
    eprintln!(
        "leader kill -9 to first acknowledged write: {} ms",
        (resumed - killed_at).as_millis()
    );
    let new_leader = wait_for_new_leader(&cluster, leader).await;
    let before = stream.acknowledged_count();
    wait_for("50 more acknowledged writes", ELECTION_TIMEOUT, || async {
        stream.acknowledged_count() >= before + 50
    })
    .await;
    let (acknowledged, attempted) = stream.finish().await;
    eprintln!(
        "node {new_leader} leads; {} writes acknowledged, {} attempted",
        acknowledged.len(),
        attempted.len()
    );
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_only_attempted_values(&state, &attempted);

    cluster.restart(leader).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_only_attempted_values(&state, &attempted);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_follower_writes_continue_and_it_catches_up() {
    // Goal: SIGKILL a follower while clients write through the leader: the
    // writes keep being acknowledged; the follower restarts and catches up.
    let mut cluster = three_nodes(fast(0)).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    let endpoints = vec![cluster.node(leader).endpoint(); 4];
    let stream = WriteStream::start(&endpoints, "");
    wait_for("50 acknowledged writes", ELECTION_TIMEOUT, || async {
        stream.acknowledged_count() >= 50
    })
    .await;
    let killed_at = Instant::now();
    cluster.kill9(follower);
    let before = stream.acknowledged_count();
    wait_for(
        "100 writes acknowledged without the follower",
        ELECTION_TIMEOUT,
        || async { stream.acknowledged_count() >= before + 100 },
    )
    .await;
    eprintln!(
        "100 writes acknowledged {:.1?} after the follower died",
        killed_at.elapsed()
    );
    cluster.restart(follower).await;
    let before = stream.acknowledged_count();
    wait_for(
        "50 more writes with the follower back",
        ELECTION_TIMEOUT,
        || async { stream.acknowledged_count() >= before + 50 },
    )
    .await;
    let (acknowledged, attempted) = stream.finish().await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_only_attempted_values(&state, &attempted);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_that_missed_100_mb_of_writes_catches_up_by_log() {
    // Goal: while a follower is down, 110 commands of 900 KB each (99 MB,
    // more than one Raft message may carry) are written; it restarts and
    // catches up from the log — batches are cut by bytes, so none is too
    // large to send — and every replica ends with the same state.
    let mut cluster = three_nodes(fast(0)).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    cluster.kill9(follower);
    let mut client = cluster.client(leader).await;
    let value = "v".repeat(LARGE_VALUE_BYTES);
    for key in 0..LARGE_WRITES {
        apply_ok(&mut client, kv::put(&format!("large/{key:03}"), &value)).await;
    }
    let restarted = Instant::now();
    cluster.restart(follower).await;
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    eprintln!("caught up {:.1?} after the restart", restarted.elapsed());
    // (A whole scan of 99 MB is more than one query may return.)
    let probes: Vec<String> = [0, LARGE_WRITES / 2, LARGE_WRITES - 1]
        .iter()
        .map(|key| format!(r#"{{"get":{{"key":"large/{key:03}"}}}}"#))
        .collect();
    let probes: Vec<&str> = probes.iter().map(String::as_str).collect();
    assert_replicas_agree_on(&cluster, &probes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_follower_is_removed_after_the_grace_period() {
    // Goal: with --dead-grace 3s, a SIGKILLed follower is removed from the
    // membership once dead past the grace, leaving two voters that still
    // take writes.
    let options = NodeOptions {
        dead_grace: Some(Duration::from_secs(3)),
        ..fast(0)
    };
    let mut cluster = three_nodes(options).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    let follower_id = cluster.id_of(follower);
    let killed_at = Instant::now();
    cluster.kill9(follower);
    cluster.wait_for_voters(2, MEMBERSHIP_TIMEOUT).await;
    let elapsed = killed_at.elapsed();
    eprintln!("dead follower removed {elapsed:.1?} after kill -9");
    assert!(
        elapsed >= Duration::from_secs(3),
        "removed before the 3 s grace: {elapsed:?}"
    );
    for n in cluster.running() {
        assert!(!member_ids(&cluster, n).await.contains(&follower_id));
        let status = cluster.status(n).await;
        assert_eq!(status["health"], "ok", "{status}");
    }
    let mut acknowledged = Acknowledged::new();
    for n in cluster.running() {
        let key = format!("after-removal-via-{n}");
        put_through(&cluster, n, &key, "ok").await;
        acknowledged.insert(key, "ok".to_string());
    }
    assert_acknowledged_present(&cluster, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_dead_of_three_voters_are_kept_and_writes_fail_unavailable() {
    // Goal: with --dead-grace 3s and two of three voters SIGKILLed, nothing
    // is removed (that would need a quorum), a write fails with exit 4 within
    // the client's bound, and the survivor says why: its health reports no
    // quorum, and `members` names what it is holding back.
    let options = NodeOptions {
        dead_grace: Some(Duration::from_secs(3)),
        ..fast(0)
    };
    let mut cluster = three_nodes(options).await;
    put_through(&cluster, 0, "before", "1").await;
    let survivor = cluster.leader_index().await.expect("a leader");
    for n in 0..3 {
        if n != survivor {
            cluster.kill9(n);
        }
    }
    let killed_at = Instant::now();
    // The survivor knows both are dead and the grace has passed once it
    // reports what it is holding back.
    let members = wait_for_held_removals(&cluster, survivor).await;
    eprintln!(
        "holding reported {:.1?} after the kills: {}",
        killed_at.elapsed(),
        members["holding"]
    );
    assert!(killed_at.elapsed() >= Duration::from_secs(3));
    let holding = members["holding"].to_string().to_lowercase();
    assert!(
        holding.contains("alive"),
        "holding names no reason: {holding}"
    );
    assert_eq!(
        member_ids(&cluster, survivor).await,
        BTreeSet::from([1, 2, 3]),
        "a voter was removed without a quorum"
    );
    let started = Instant::now();
    let write = cluster
        .cli(survivor, &["apply", r#"{"put":{"key":"k","value":"v"}}"#])
        .await;
    let took = started.elapsed();
    write.failure(exit::UNAVAILABLE, &[]);
    eprintln!("write without quorum failed (exit 4) in {took:.1?}");
    assert!(took <= UNAVAILABLE_BOUND, "took {took:?}");
    let status = wait_for_no_quorum(&cluster, survivor).await;
    assert!(
        status["health"]
            .as_str()
            .is_some_and(|health| health.contains("1 of 3 voters alive")),
        "{status}"
    );
    assert_eq!(member_ids(&cluster, survivor).await.len(), 3);
}

/// Wait until node `survivor`'s membership names removals it holds back;
/// returns that membership.
async fn wait_for_held_removals(cluster: &TestCluster, survivor: usize) -> Value {
    wait_for(
        "the survivor to report the removals it holds back",
        MEMBERSHIP_TIMEOUT,
        || async {
            let members = cluster.members(survivor).await;
            let holding = members["holding"].as_array().cloned().unwrap_or_default();
            if holding.is_empty() {
                Err(format!("members: {members}"))
            } else {
                Ok(members)
            }
        },
    )
    .await
}

/// Wait until node `survivor`'s health reports no quorum; returns its status.
async fn wait_for_no_quorum(cluster: &TestCluster, survivor: usize) -> Value {
    wait_for(
        "the survivor's health to report no quorum",
        ELECTION_TIMEOUT,
        || async {
            let status = cluster.status(survivor).await;
            let health = status["health"].as_str().unwrap_or_default().to_string();
            if health.starts_with("unavailable") && health.contains("no quorum") {
                Ok(status)
            } else {
                Err(format!("health {health:?}, role {}", status["role"]))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_leave_of_a_follower_then_of_the_leader() {
    // Goal: `clusterhost leave` on a follower makes it exit 0 and shrinks the
    // membership to two voters that take writes; then `leave` on the leader
    // hands leadership over first, shrinks the membership to one, exits 0,
    // and the remaining node takes writes.
    let mut cluster = three_nodes(fast(0)).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    let remaining = (leader + 2) % 3;
    let follower_id = cluster.id_of(follower);
    cluster.cli(follower, &["leave"]).await.success();
    let status = cluster.wait_exit(follower, LEAVE_TIMEOUT).await;
    assert_eq!(status.code(), Some(exit::OK), "follower leave: {status}");
    wait_until_not_alive(&cluster, leader, follower_id).await;
    cluster.wait_for_voters(2, MEMBERSHIP_TIMEOUT).await;
    assert!(!member_ids(&cluster, leader).await.contains(&follower_id));
    put_through(&cluster, remaining, "after-follower-left", "1").await;

    let leader_id = cluster.id_of(leader);
    let term_before = cluster.status(leader).await["term"].as_u64().unwrap();
    cluster.cli(leader, &["leave"]).await.success();
    let status = cluster.wait_exit(leader, LEAVE_TIMEOUT).await;
    assert_eq!(status.code(), Some(exit::OK), "leader leave: {status}");
    let log = cluster.node(leader).log();
    assert!(
        log.contains("transferring leadership before stopping")
            && !log.contains("leadership transfer before stopping failed"),
        "the leader did not hand over leadership before leaving"
    );
    wait_until_not_alive(&cluster, remaining, leader_id).await;
    let new_leader = cluster.wait_for_voters(1, MEMBERSHIP_TIMEOUT).await;
    assert_eq!(new_leader, remaining);
    let status = cluster.status(remaining).await;
    assert!(status["term"].as_u64().unwrap() > term_before, "{status}");
    assert!(!member_ids(&cluster, remaining).await.contains(&leader_id));
    put_through(&cluster, remaining, "after-leader-left", "2").await;
    let acknowledged = Acknowledged::from([
        ("after-follower-left".to_string(), "1".to_string()),
        ("after-leader-left".to_string(), "2".to_string()),
    ]);
    assert_acknowledged_present(&cluster, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_transfer_and_sigterm_on_the_leader() {
    // Goal: `leader transfer --to ID` moves leadership (every node agrees);
    // SIGTERM on the leader during writes exits 0, another node leads within
    // seconds, no acknowledged write is lost, and the node rejoins on restart.
    let mut cluster = three_nodes(fast(0)).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let target = (leader + 1) % 3;
    let asker = (leader + 2) % 3;
    transfer_leadership(&cluster, asker, target).await;
    for n in 0..3 {
        let status = cluster.status(n).await;
        assert_eq!(status["leader_id"], cluster.id_of(target), "{status}");
    }

    let endpoints: Vec<String> = (0..4).map(|w| cluster.node(w % 3).endpoint()).collect();
    let stream = WriteStream::start(&endpoints, "");
    wait_for("50 acknowledged writes", ELECTION_TIMEOUT, || async {
        stream.acknowledged_count() >= 50
    })
    .await;
    let terminated_at = Instant::now();
    let status = cluster.terminate(target).await;
    assert_eq!(status.code(), Some(exit::OK), "SIGTERM exit: {status}");
    let new_leader = wait_for_new_leader(&cluster, target).await;
    let handover = terminated_at.elapsed();
    eprintln!("SIGTERM on the leader to an agreed new leader (node {new_leader}): {handover:.1?}");
    assert!(handover < Duration::from_secs(10), "took {handover:?}");
    let before = stream.acknowledged_count();
    wait_for("50 more acknowledged writes", ELECTION_TIMEOUT, || async {
        stream.acknowledged_count() >= before + 50
    })
    .await;
    let (acknowledged, attempted) = stream.finish().await;
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_only_attempted_values(&state, &attempted);
    cluster.restart(target).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    assert_acknowledged_present(&cluster, &acknowledged).await;
}
