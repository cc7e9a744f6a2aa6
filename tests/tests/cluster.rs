//! End-to-end scenarios against clusters of real `clusterhost` processes:
//! forming by gossip (a seed, `--bootstrap-expect`), catching up by snapshot,
//! forwarding, crashes and restarts of leaders and followers, automatic
//! removal of dead members, leaving, leadership transfer, garbage on the
//! network ports, and nodes that come back at a new address. Each test owns
//! its nodes, ports and temp dirs through a `TestCluster`.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use clusterhost_client::proto::Consistency;
use clusterhost_tests::kv::{self, apply_ok, get_value, scan_all};
use clusterhost_tests::load::WriteStream;
use clusterhost_tests::paths::kv_plugin;
use clusterhost_tests::{
    Acknowledged, NodeOptions, TestCluster, assert_acknowledged_present, assert_replicas_agree,
    exit, wait_for,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest a membership change driven by gossip may take (failure detection,
/// stabilization, reconciliation every 500 ms, a Raft change): generous for
/// debug builds on two cores running two tests at once.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a new leader may take to be elected and agreed on.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a node may take to exit after `leave`.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client's write may wait through a missing quorum before the
/// CLI gives up with exit 4: the host's 10 s request bound plus slack.
const UNAVAILABLE_BOUND: Duration = Duration::from_secs(15);

/// Flags every node of these tests gets: promote learners after 1 s instead
/// of 5 s, so that joins take seconds.
fn fast(node_id: u64) -> NodeOptions {
    NodeOptions {
        node_id: Some(node_id),
        stabilization: Some(Duration::from_secs(1)),
        ..NodeOptions::default()
    }
}

fn kv_digest() -> String {
    hex::encode(Sha256::digest(
        std::fs::read(kv_plugin()).expect("read kv.wasm"),
    ))
}

/// Node 0 bootstraps (id 1); node 1 joins through node 0 (id 2); node 2
/// joins through node 1 (id 3). Waits until all three are voters and agree
/// on a leader. Every node gets `options` with its own id.
async fn three_nodes(options: NodeOptions) -> TestCluster {
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

/// Put `key` = `value` through node `n`'s gRPC API (followers forward);
/// panics unless acknowledged.
async fn put_through(cluster: &TestCluster, n: usize, key: &str, value: &str) {
    let mut client = cluster.client(n).await;
    apply_ok(&mut client, kv::put(key, value)).await;
}

/// Every key of `state` holds a value some writer attempted (nothing
/// invented, nothing torn).
fn assert_only_attempted_values(
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
async fn member_ids(cluster: &TestCluster, n: usize) -> BTreeSet<u64> {
    let status = cluster.status(n).await;
    status["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {status}"))
        .iter()
        .map(|member| member["id"].as_u64().expect("member id"))
        .collect()
}

/// Wait until the running nodes agree on a leader other than `old` and
/// return its index.
async fn wait_for_new_leader(cluster: &TestCluster, old: usize) -> usize {
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
async fn wait_until_not_alive(cluster: &TestCluster, observer: usize, departed: u64) {
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

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_form_from_one_seed() {
    // Goal: a bootstrapped node plus two nodes started with only --join (the
    // third joining through the second's gossip address, not the seed's)
    // form one cluster of three voters; every node's status names the same
    // leader, is healthy, and runs the seed's plugin — nodes 2 and 3 were
    // never given --plugin.
    let mut cluster = TestCluster::start_bootstrap_with(&kv_plugin(), fast(1)).await;
    put_through(&cluster, 0, "before-join", "1").await;
    for (seed, id) in [(0, 2), (1, 3)] {
        let started = Instant::now();
        cluster.start_joining(seed, fast(id)).await;
        let voters = cluster.running().len();
        cluster.wait_for_voters(voters, MEMBERSHIP_TIMEOUT).await;
        eprintln!(
            "node id {id} joined through node {seed} and became a voter in {:.1?}",
            started.elapsed()
        );
    }
    let leader = cluster.leader_index().await.expect("a leader");
    let digest = kv_digest();
    for n in 0..3 {
        let status = cluster.status(n).await;
        assert_eq!(status["leader_id"], cluster.id_of(leader), "{status}");
        assert_eq!(status["health"], "ok", "{status}");
        assert_eq!(status["plugin"]["digest"], digest.as_str(), "{status}");
        let members = status["members"].as_array().expect("members");
        let voters: BTreeSet<u64> = members
            .iter()
            .filter(|member| member["suffrage"] == "voter")
            .map(|member| member["id"].as_u64().unwrap())
            .collect();
        assert_eq!(voters, BTreeSet::from([1, 2, 3]), "{status}");
    }
    let members = cluster.members(2).await;
    let listed = members["members"].as_array().expect("members list");
    assert_eq!(listed.len(), 3, "{members}");
    for member in listed {
        assert_eq!(member["plugin_digest"], digest.as_str(), "{members}");
        assert_eq!(member["liveness"], "alive", "{members}");
    }
    put_through(&cluster, 2, "after-join", "3").await;
    let acknowledged = Acknowledged::from([
        ("before-join".to_string(), "1".to_string()),
        ("after-join".to_string(), "3".to_string()),
    ]);
    assert_acknowledged_present(&cluster, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_expect_five_forms_exactly_one_cluster() {
    // Goal: five nodes started at once with --bootstrap-expect 5 (each
    // joining node 0, node 0 joining node 1) form exactly one cluster: one
    // leader, the same five voters in every node's membership, the plugin
    // deployed on all, and it takes writes.
    let per_node = (1..=5).map(fast).collect();
    let cluster = TestCluster::start_bootstrap_expect(&kv_plugin(), per_node).await;
    let leader = cluster.wait_for_voters(5, MEMBERSHIP_TIMEOUT).await;
    let digest = kv_digest();
    let mut leaders = 0;
    for n in 0..5 {
        let status = cluster.status(n).await;
        if status["role"] == "leader" {
            leaders += 1;
        }
        assert_eq!(status["leader_id"], cluster.id_of(leader), "{status}");
        assert_eq!(status["plugin"]["digest"], digest.as_str(), "{status}");
        assert_eq!(status["health"], "ok", "{status}");
        assert_eq!(
            member_ids(&cluster, n).await,
            BTreeSet::from([1, 2, 3, 4, 5])
        );
    }
    assert_eq!(leaders, 1, "exactly one node says it leads");
    let mut acknowledged = Acknowledged::new();
    for n in 0..5 {
        let key = format!("through-{n}");
        put_through(&cluster, n, &key, "x").await;
        acknowledged.insert(key, "x".to_string());
    }
    assert_acknowledged_present(&cluster, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn late_joiner_catches_up_by_snapshot() {
    // Goal: after the founders snapshotted and purged their logs, a new node
    // can only catch up by snapshot: it does, runs the plugin it was never
    // given, answers a stale read with all the data, and becomes a voter.
    let options = NodeOptions {
        snapshot_every: Some(50),
        log_keep: Some(10),
        ..fast(0)
    };
    let mut cluster = three_nodes(options).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let mut writers = Vec::new();
    for writer in 0..4 {
        let mut client = cluster.client(leader).await;
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Acknowledged::new();
            for write in 0..75 {
                let (key, value) = (format!("old-{writer}-{write:03}"), format!("{write}"));
                apply_ok(&mut client, kv::put(&key, &value)).await;
                acknowledged.insert(key, value);
            }
            acknowledged
        }));
    }
    let mut acknowledged = Acknowledged::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer task"));
    }
    assert_replicas_agree(&cluster).await;
    for n in 0..3 {
        cluster.cli(n, &["snapshot"]).await.success();
        let status = cluster.status(n).await;
        let purged = status["purged_index"].as_u64().expect("purged_index");
        assert!(purged >= 250, "node {n} did not purge its log: {status}");
    }

    let started = Instant::now();
    let joiner = cluster.start_joining(0, fast(4)).await;
    cluster.wait_for_voters(4, MEMBERSHIP_TIMEOUT).await;
    eprintln!(
        "late joiner became a voter in {:.1?} (after a snapshot install)",
        started.elapsed()
    );
    let status = cluster.status(joiner).await;
    assert_eq!(status["plugin"]["digest"], kv_digest().as_str(), "{status}");
    assert!(
        status["snapshot_index"]
            .as_u64()
            .is_some_and(|index| index >= 250),
        "the joiner holds no snapshot: {status}"
    );
    let mut client = cluster.client(joiner).await;
    let stale = scan_all(&mut client, "old-", Consistency::Stale).await;
    assert_eq!(stale, acknowledged, "stale read on the joiner");
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_eq!(state, acknowledged);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_and_linearizable_reads_through_every_node_agree() {
    // Goal: writes through any node (followers forward to the leader) are
    // acknowledged, and a linearizable read through any *other* node right
    // after sees them; at the end every node reads the same state.
    let cluster = three_nodes(fast(0)).await;
    let mut acknowledged = Acknowledged::new();
    for round in 0..10 {
        for n in 0..3 {
            let (key, value) = (format!("k-{round:02}-via-{n}"), format!("{round}/{n}"));
            put_through(&cluster, n, &key, &value).await;
            let reader = (n + 1 + round % 2) % 3;
            let mut client = cluster.client(reader).await;
            let read = get_value(&mut client, &key, Consistency::Linearizable).await;
            assert_eq!(
                read.as_deref(),
                Some(value.as_str()),
                "write through node {n} not seen by a linearizable read through node {reader}"
            );
            acknowledged.insert(key, value);
        }
    }
    for n in 0..3 {
        let mut client = cluster.client(n).await;
        let state = scan_all(&mut client, "", Consistency::Linearizable).await;
        assert_eq!(state, acknowledged, "linearizable scan through node {n}");
    }
    assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_replicas_agree(&cluster).await;
}

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
    let members = wait_for(
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
    .await;
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
    let status = wait_for(
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
    .await;
    assert!(
        status["health"]
            .as_str()
            .is_some_and(|health| health.contains("1 of 3 voters alive")),
        "{status}"
    );
    assert_eq!(member_ids(&cluster, survivor).await.len(), 3);
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

/// A small deterministic generator (xorshift64*): garbage that is the same
/// on every run for a given seed.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, length: usize) -> Vec<u8> {
        (0..length).map(|_| self.next() as u8).collect()
    }
}

/// Send `packets` random datagrams of up to 4 KiB to `target`.
fn spray_udp(target: std::net::SocketAddr, packets: usize, garbage: &mut Garbage) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    for _ in 0..packets {
        let length = 1 + (garbage.next() % 4096) as usize;
        // Loopback may drop datagrams when the receiver's buffer is full.
        let _ = socket.send_to(&garbage.bytes(length), target);
    }
}

/// Open `connections` TCP connections to `target` and write garbage on
/// each: pure noise, and an HTTP/2 preface followed by noise.
fn spray_tcp(target: std::net::SocketAddr, connections: usize, garbage: &mut Garbage) {
    for connection in 0..connections {
        let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            continue;
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        if connection % 2 == 0 {
            let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        }
        let _ = stream.write_all(&garbage.bytes(16 * 1024));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_gossip_and_grpc_ports_changes_nothing() {
    // Goal: thousands of random datagrams (up to 4 KiB) on every gossip port
    // and garbage TCP streams on every gRPC port crash no node; the
    // membership is unchanged and the cluster takes writes through every node.
    let cluster = three_nodes(fast(0)).await;
    let before: Vec<BTreeSet<u64>> = {
        let mut views = Vec::new();
        for n in 0..3 {
            views.push(member_ids(&cluster, n).await);
        }
        views
    };
    let seed = 0x5eed_0f9a_7ba9_e001;
    eprintln!("garbage seed {seed:#x}");
    let mut garbage = Garbage(seed);
    for round in 0..3 {
        for n in 0..3 {
            spray_udp(cluster.node(n).gossip_addr(), 1_000, &mut garbage);
            let grpc = cluster.node(n).endpoint().parse().expect("socket address");
            spray_tcp(grpc, 10, &mut garbage);
        }
        eprintln!("garbage round {round} sent");
    }
    for n in 0..3 {
        assert!(cluster.node(n).is_running(), "node {n} died of garbage");
    }
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    let mut acknowledged = Acknowledged::new();
    for (n, members_before) in before.iter().enumerate() {
        assert_eq!(&member_ids(&cluster, n).await, members_before, "node {n}");
        let key = format!("after-garbage-via-{n}");
        put_through(&cluster, n, &key, "fine").await;
        acknowledged.insert(key, "fine".to_string());
    }
    let members = cluster.members(0).await;
    for member in members["members"].as_array().expect("members") {
        assert_eq!(member["liveness"], "alive", "{members}");
    }
    assert_acknowledged_present(&cluster, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_restarted_at_new_addresses_is_found_again() {
    // Goal: a follower stopped and restarted on its data dir at a new gRPC
    // and gossip port is found through gossip: every node's membership
    // records its new address, it is a voter again, and writes through its
    // new endpoint and reads from it work.
    let mut cluster = three_nodes(fast(0)).await;
    put_through(&cluster, 0, "before-move", "1").await;
    let leader = cluster.leader_index().await.expect("a leader");
    let moved = (leader + 1) % 3;
    let moved_id = cluster.id_of(moved);
    let seed = (leader + 2) % 3;
    let old_endpoint = cluster.node(moved).endpoint();
    cluster.kill9(moved);
    cluster.set_join(moved, &[seed]);
    cluster.restart_at_new_addresses(moved).await;
    let new_endpoint = cluster.node(moved).endpoint();
    assert_ne!(old_endpoint, new_endpoint);
    eprintln!("node {moved} moved from {old_endpoint} to {new_endpoint}");
    wait_for(
        "every node's membership to record the new address",
        MEMBERSHIP_TIMEOUT,
        || async {
            for n in 0..3 {
                let status = cluster.try_status(n).await?;
                let recorded = status
                    .members
                    .iter()
                    .find(|member| member.id == moved_id)
                    .map(|member| member.rpc_addr.clone());
                if recorded.as_deref() != Some(new_endpoint.as_str()) {
                    return Err(format!("node {n} records {recorded:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    let members = cluster.members(leader).await;
    let entry = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|member| member["id"] == moved_id)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(entry["rpc_addr"], new_endpoint.as_str(), "{members}");
    assert_eq!(
        entry["gossip_addr"],
        cluster.node(moved).gossip_addr().to_string(),
        "{members}"
    );
    // Health is judged from gossip liveness, which a freshly restarted node
    // learns within a few gossip rounds.
    wait_for(
        "every node to report a healthy cluster",
        MEMBERSHIP_TIMEOUT,
        || async {
            for n in 0..3 {
                let status = cluster.try_status(n).await?;
                if status.health != "ok" {
                    return Err(format!("node {n}: {}", status.health));
                }
            }
            Ok(())
        },
    )
    .await;
    put_through(&cluster, moved, "after-move", "2").await;
    let mut client = cluster.client(moved).await;
    let read = get_value(&mut client, "before-move", Consistency::Linearizable).await;
    assert_eq!(read.as_deref(), Some("1"));
    let acknowledged = Acknowledged::from([
        ("before-move".to_string(), "1".to_string()),
        ("after-move".to_string(), "2".to_string()),
    ]);
    assert_acknowledged_present(&cluster, &acknowledged).await;
}
