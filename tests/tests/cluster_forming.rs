//! End-to-end scenarios in which clusters of real `clusterhost` processes
//! form and grow: by gossip from a seed and with `--bootstrap-expect`, a late
//! joiner catching up by snapshot, writes and linearizable reads through
//! every node, garbage on the network ports, and a node that comes back at a
//! new address. Each test owns its nodes, ports and temp dirs through a
//! `TestCluster`.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use clusterhost_client::proto::Consistency;
use clusterhost_tests::kv::{self, apply_ok, get_value, scan_all};
use clusterhost_tests::paths::kv_plugin;
use clusterhost_tests::scenario::*;
use clusterhost_tests::{
    Acknowledged, NodeOptions, TestCluster, assert_acknowledged_present, assert_replicas_agree,
    wait_for,
};
use serde_json::Value;

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
    wait_for_recorded_address(&cluster, moved_id, &new_endpoint).await;
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
    wait_for_healthy(&cluster).await;
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

/// Wait until every node's membership records `endpoint` as the gRPC address
/// of node id `moved_id`.
async fn wait_for_recorded_address(cluster: &TestCluster, moved_id: u64, endpoint: &str) {
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
                if recorded.as_deref() != Some(endpoint) {
                    return Err(format!("node {n} records {recorded:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
}

/// Wait until every node of three reports a healthy cluster.
async fn wait_for_healthy(cluster: &TestCluster) {
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
