//! Exactly-once writes: a command sent within a client session applies once
//! however often, and through whichever nodes, it is retried — across a
//! leader crash, a snapshot, a restart of every node and a node that joins
//! later — and sessions expire by the log's clock at the same entry on every
//! replica. The counter plugin makes a second apply visible: its total
//! counts every apply.

use std::time::{Duration, Instant};

use clusterhost_client::proto::{self, SessionStamp, apply_response};
use clusterhost_client::{Client, ClientError};
use clusterhost_tests::scenario::*;
use clusterhost_tests::{TestCluster, wait_for};

/// Header naming why a session command was refused.
const SESSION_HEADER: &str = "x-clusterhost-session";

fn stamp(client_id: u64, sequence: u64) -> SessionStamp {
    SessionStamp {
        client_id,
        sequence,
        first_outstanding: sequence,
    }
}

/// A stamp from a client that keeps every answer open for a retry.
fn stamp_keeping_all(client_id: u64, sequence: u64) -> SessionStamp {
    SessionStamp {
        client_id,
        sequence,
        first_outstanding: 1,
    }
}

const ADD_ONE: &[u8] = br#"{"add":1}"#;

/// The counter's total in an apply response.
fn total(response: &proto::ApplyResponse) -> i64 {
    match &response.result {
        Some(apply_response::Result::Ok(bytes)) => {
            let value: serde_json::Value = serde_json::from_slice(bytes).expect("JSON");
            value["value"].as_i64().expect("a total")
        }
        other => panic!("expected ok, got {other:?}"),
    }
}

async fn add_one(client: &mut Client, stamp: SessionStamp) -> proto::ApplyResponse {
    client
        .apply_stamped(ADD_ONE.to_vec(), stamp)
        .await
        .unwrap_or_else(|error| panic!("apply {stamp:?}: {error}"))
}

/// The counter's total read linearizably through node `n`.
async fn read_total(cluster: &TestCluster, n: usize) -> i64 {
    let response = cluster
        .client(n)
        .await
        .query(b"\"get\"".to_vec(), proto::Consistency::Linearizable)
        .await
        .expect("read the counter");
    match response.result {
        Some(proto::query_response::Result::Ok(bytes)) => {
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            value["value"].as_i64().expect("a total")
        }
        other => panic!("expected a total, got {other:?}"),
    }
}

fn session_refusal(error: &ClientError) -> Option<String> {
    match error {
        ClientError::Status(status) => status
            .metadata()
            .get(SESSION_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
        ClientError::Unreachable { .. } => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_retried_after_the_leader_crashed_applies_once() {
    // Goal: the leader commits and applies a command, then dies before the
    // client can use the answer; the client retries through another node
    // with the same stamp and gets the first answer again, marked replayed.
    // Two copies of one command racing through two nodes apply once too.
    let mut cluster = counter_cluster().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let (first, second) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut through_leader = cluster.client(leader).await;
    let session = through_leader
        .open_session(0)
        .await
        .expect("open a session");
    let id = session.client_id;
    for sequence in 1..=3 {
        let answer = add_one(&mut through_leader, stamp(id, sequence)).await;
        assert!(!answer.replayed);
    }
    let lost = add_one(&mut through_leader, stamp(id, 4)).await;
    cluster.kill9(leader);
    let mut retry = cluster.client(first).await;
    let replayed = add_one(&mut retry, stamp(id, 4)).await;
    assert!(replayed.replayed, "the retry is answered, not applied");
    assert_eq!((replayed.index, total(&replayed)), (lost.index, 4));

    let mut other = cluster.client(second).await;
    let (a, b) = tokio::join!(
        add_one(&mut retry, stamp(id, 5)),
        add_one(&mut other, stamp(id, 5))
    );
    assert_eq!(total(&a), 5);
    assert_eq!(
        (a.index, total(&a)),
        (b.index, total(&b)),
        "one apply, one answer"
    );
    assert!(
        a.replayed != b.replayed,
        "exactly one of the two applied it"
    );
    assert_eq!(
        read_total(&cluster, first).await,
        5,
        "5 distinct commands, 5 applies"
    );

    // Once the client says it has answers up to 5, a stale retry is refused,
    // never applied again.
    let acknowledged = retry
        .apply_stamped(
            ADD_ONE.to_vec(),
            SessionStamp {
                client_id: id,
                sequence: 4,
                first_outstanding: 6,
            },
        )
        .await
        .expect_err("below first_outstanding");
    assert_eq!(session_refusal(&acknowledged).as_deref(), Some("invalid"));
    add_one(&mut retry, stamp(id, 6)).await;
    let stale = retry
        .apply_stamped(ADD_ONE.to_vec(), stamp(id, 5))
        .await
        .expect_err("acknowledged");
    assert_eq!(session_refusal(&stale).as_deref(), Some("acknowledged"));
    assert_eq!(read_total(&cluster, second).await, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_are_caught_after_a_snapshot_a_full_restart_and_on_a_new_node() {
    // Goal: sessions are replicated state: they survive a snapshot that
    // purges the log, a kill -9 of every node, and reach a node that joins
    // later through a snapshot.
    let mut cluster = counter_cluster().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let mut client = cluster.client(leader).await;
    let id = client.open_session(0).await.expect("session").client_id;
    let mut answers = Vec::new();
    for sequence in 1..=3 {
        answers.push(add_one(&mut client, stamp_keeping_all(id, sequence)).await);
    }
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    for n in 0..3 {
        cluster.client(n).await.snapshot().await.expect("snapshot");
    }
    for n in 0..3 {
        cluster.kill9(n);
    }
    for n in 0..3 {
        cluster.restart_without_waiting(n).await;
    }
    cluster.wait_for_leader().await;
    let joined = cluster.start_joining(0, fast(4)).await;
    cluster.wait_for_voters(4, MEMBERSHIP_TIMEOUT).await;
    for (n, sequence) in [(0, 3), (1, 2), (2, 3), (joined, 3)] {
        let mut retry = cluster.client(n).await;
        let replayed = add_one(&mut retry, stamp_keeping_all(id, sequence)).await;
        assert!(replayed.replayed, "node {n}: sequence {sequence} replayed");
        let first = &answers[(sequence - 1) as usize];
        assert_eq!(
            (replayed.index, total(&replayed)),
            (first.index, total(first))
        );
    }
    assert_eq!(read_total(&cluster, joined).await, 3);
    let status = cluster.try_status(joined).await.expect("status");
    assert_eq!(status.sessions_open, 1, "the new node holds the session");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_expire_by_log_time_at_the_same_entry_everywhere() {
    // Goal: a session idle longer than its timeout, by the leader-stamped
    // time of later entries, is closed on every replica alike: its next
    // command is refused as not open and applies nowhere; replicas end with
    // the same sessions and the same applied digest.
    let cluster = counter_cluster().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let mut client = cluster.client(leader).await;
    let short = client.open_session(1_000).await.expect("short session");
    assert_eq!(short.timeout_ms, 1_000);
    let long = client.open_session(0).await.expect("long session");
    add_one(&mut client, stamp(short.client_id, 1)).await;
    // Entries stamped more than a second later, from the long session only.
    let started = Instant::now();
    let mut sequence = 0;
    while started.elapsed() < Duration::from_millis(1_500) && sequence < 1_000 {
        sequence += 1;
        add_one(&mut client, stamp(long.client_id, sequence)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired = client
        .apply_stamped(ADD_ONE.to_vec(), stamp(short.client_id, 2))
        .await
        .expect_err("the short session expired");
    assert_eq!(session_refusal(&expired).as_deref(), Some("not-open"));
    let expected_total = 1 + sequence as i64;
    assert_eq!(read_total(&cluster, leader).await, expected_total);
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    wait_for(
        "every replica to hold one session and the same digest",
        MEMBERSHIP_TIMEOUT,
        || async {
            let mut seen = Vec::new();
            for n in 0..3 {
                let status = cluster.try_status(n).await?;
                seen.push((
                    status.sessions_open,
                    status.applied_digest_index,
                    status.applied_digest,
                ));
            }
            if seen.iter().all(|view| view == &seen[0]) && seen[0].0 == 1 {
                Ok(())
            } else {
                Err(format!(
                    "(sessions, digest index, digest) per node: {seen:?}"
                ))
            }
        },
    )
    .await;
}
