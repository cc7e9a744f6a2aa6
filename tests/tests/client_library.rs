//! The Rust client library as a user meets it: `Cluster::connect` with the
//! nodes one knows, writes that keep going through a leader crash and apply
//! exactly once, and errors typed by what they mean for the command.

use clusterhost_client::{Cluster, Consistency, Error};
use clusterhost_tests::TestCluster;
use clusterhost_tests::cluster::free_addresses;
use clusterhost_tests::scenario::*;

/// Writes in the failover test; the leader dies after a third of them.
const WRITES: i64 = 45;

#[derive(serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Add(i64),
}

#[derive(Debug, serde::Deserialize)]
struct Total {
    value: i64,
}

fn endpoints(cluster: &TestCluster) -> Vec<String> {
    (0..3).map(|n| cluster.node(n).endpoint()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_survive_a_leader_crash_and_apply_exactly_once() {
    // Goal: a program writing through the library sees every write succeed
    // across a kill -9 of the leader (it moves to another node and retries
    // in its session), and the counter ends at exactly the number of writes:
    // none lost, none applied twice.
    let mut cluster = counter_cluster().await;
    let mut client = Cluster::connect(endpoints(&cluster))
        .await
        .expect("connect");
    let leader = cluster.leader_index().await.expect("a leader");
    for written in 1..=WRITES {
        let total: Total = client
            .apply_json(&Command::Add(1))
            .await
            .unwrap_or_else(|error| panic!("write {written}: {error}"));
        assert!(total.value <= written, "write {written} applied twice");
        if written == WRITES / 3 {
            cluster.kill9(leader);
        }
    }
    let total: Total = client.query_json(&"get").await.expect("read");
    assert_eq!(total.value, WRITES);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_node_in_the_list_is_passed_over_and_errors_say_what_happened() {
    // Goal: the first node a user lists is down; the client still connects
    // and writes. A plugin rejection, an empty command and an unknown
    // session are each their own error kind, and none changes the state.
    let cluster = counter_cluster().await;
    let (dead, _) = free_addresses();
    let mut listed = vec![dead.to_string()];
    listed.extend(endpoints(&cluster));
    let mut client = Cluster::connect(listed)
        .await
        .expect("connect past a dead node");
    let applied = client.apply(br#"{"add":5}"#.to_vec()).await.expect("write");
    assert!(applied.index > 0);
    let overflow = client
        .apply(format!(r#"{{"add":{}}}"#, i64::MAX).into_bytes())
        .await
        .expect_err("overflow");
    assert!(matches!(overflow, Error::Rejected(_)), "{overflow:?}");
    let empty = client.apply(Vec::new()).await.expect_err("empty command");
    assert!(matches!(empty, Error::InvalidArgument(_)), "{empty:?}");
    let total = client
        .query(b"\"get\"".to_vec(), Consistency::Linearizable)
        .await
        .expect("read");
    assert_eq!(total, br#"{"value":5}"#);
    let status = client.status().await.expect("status");
    assert_eq!(status.sessions_open, 1, "one session for this client");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_reachable_node_is_unavailable() {
    // Goal: a client given only addresses where nothing listens fails with
    // `Unavailable` once its retry budget is spent, not a hang.
    let (first, second) = free_addresses();
    let options = clusterhost_client::Options {
        retry_budget: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let error = Cluster::connect_with([first.to_string(), second.to_string()], options)
        .await
        .err()
        .expect("nothing listens");
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_answer_points_the_client_at_the_new_leader() {
    // Goal: after leadership moves, the client's next write lands on the old
    // leader, which forwards it; the answer names the new leader, and the
    // client sends there directly from then on (no status call, no hop).
    let cluster = counter_cluster().await;
    let mut client = Cluster::connect(endpoints(&cluster))
        .await
        .expect("connect");
    let leader = cluster.leader_index().await.expect("a leader");
    assert_eq!(client.preferred_endpoint(), cluster.node(leader).endpoint());
    let target = (leader + 1) % 3;
    transfer_leadership(&cluster, leader, target).await;
    assert_eq!(
        client.preferred_endpoint(),
        cluster.node(leader).endpoint(),
        "nothing told the client yet"
    );
    client.apply(br#"{"add":1}"#.to_vec()).await.expect("write");
    assert_eq!(
        client.preferred_endpoint(),
        cluster.node(target).endpoint(),
        "the forwarded answer named the new leader"
    );
    let total = client
        .query(b"\"get\"".to_vec(), Consistency::Linearizable)
        .await
        .expect("read");
    assert_eq!(total, br#"{"value":1}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_nobody_answered_is_ambiguous_not_unavailable() {
    // Goal: a write sent to a leader that then stops answering (frozen with
    // SIGSTOP) may still commit, so the library says `Ambiguous`, never
    // `Unavailable` — with sessions off at once, with sessions on once its
    // retries in the same session ran out of budget. A write that was never
    // sent (its session could not be opened) is `Unavailable`. After the
    // leader resumes, the counter shows each write at most once.
    let cluster = counter_cluster().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let only_the_leader = [cluster.node(leader).endpoint()];
    let options = |sessions| clusterhost_client::Options {
        sessions,
        request_timeout: std::time::Duration::from_secs(1),
        retry_budget: std::time::Duration::from_secs(3),
        ..Default::default()
    };
    let mut once = Cluster::connect_with(only_the_leader.clone(), options(false))
        .await
        .expect("connect");
    let mut exactly_once = Cluster::connect_with(only_the_leader.clone(), options(true))
        .await
        .expect("connect");
    let mut unopened = Cluster::connect_with(only_the_leader, options(true))
        .await
        .expect("connect");
    // The session is open before the leader stops answering.
    exactly_once
        .apply(br#"{"add":1}"#.to_vec())
        .await
        .expect("first write");
    cluster.pause(leader);
    let plain = once.apply(br#"{"add":1}"#.to_vec()).await;
    let in_session = exactly_once.apply(br#"{"add":1}"#.to_vec()).await;
    // A client whose session could not even be opened sent no command.
    let never_sent = unopened.apply(br#"{"add":1}"#.to_vec()).await;
    cluster.resume(leader);
    assert!(
        matches!(never_sent, Err(Error::Unavailable(_))),
        "{never_sent:?}"
    );
    assert!(matches!(plain, Err(Error::Ambiguous(_))), "{plain:?}");
    assert!(
        matches!(in_session, Err(Error::Ambiguous(_))),
        "{in_session:?}"
    );
    let mut reader = Cluster::connect(endpoints(&cluster))
        .await
        .expect("connect");
    let total: Total = reader.query_json(&"get").await.expect("read");
    assert!(
        (1..=3).contains(&total.value),
        "the first write, and two more each at most once: {total:?}"
    );
}
