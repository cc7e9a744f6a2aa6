//! clusterhost as a library: nodes started with `clusterhost::Node::builder()`
//! inside this test process form a cluster among themselves, and one joins a
//! cluster of real `clusterhost` processes. Writes through any embedded node
//! reach the leader and are readable on the node that made them.

use std::time::Duration;

use clusterhost::limits::{DEPLOY_UPLOADS_MAX, GRPC_CALL_TIMEOUT, SERVER_DRAIN_TIMEOUT};
use clusterhost::{Consistency, Entry, Node, StateMachine};
use clusterhost_client::connect_channel_with;
use clusterhost_client::proto::PluginChunk;
use clusterhost_client::proto::cluster_client::ClusterClient;
use clusterhost_tests::cluster::free_addresses;
use clusterhost_tests::kv;
use clusterhost_tests::paths::kv_plugin;
use clusterhost_tests::scenario::*;
use clusterhost_tests::{TestCluster, wait_for};
use futures::StreamExt as _;

/// Learners become voters after this long in these tests.
const STABILIZATION: Duration = Duration::from_secs(1);

async fn embedded(directory: &std::path::Path, name: &str, join: Option<String>) -> Node {
    let (listen, gossip) = free_addresses();
    let builder = Node::builder()
        .data_dir(directory.join(name))
        .listen(listen)
        .gossip(gossip)
        .stabilization(STABILIZATION);
    let builder = match join {
        Some(seed) => builder.join([seed]),
        None => builder.bootstrap().plugin_file(kv_plugin()),
    };
    builder
        .start()
        .await
        .unwrap_or_else(|error| panic!("start {name}: {error}"))
}

fn value_of(answer: &[u8]) -> serde_json::Value {
    serde_json::from_slice(answer).expect("kv answers with JSON")
}

/// Put through `node` until it succeeds (a node that just joined may not
/// have a leader yet), bounded by `MEMBERSHIP_TIMEOUT`.
async fn put_when_ready(node: &Node, key: &str, value: &str) {
    wait_for(
        "a write through the new node",
        MEMBERSHIP_TIMEOUT,
        || async {
            node.apply(kv::put(key, value))
                .await
                .map_err(|error| error.to_string())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_that_fails_half_way_leaves_the_data_dir_free_to_start_again() {
    // Goal: a start that fails once Raft is already running (here its
    // gossip port is taken) stops what it started and lets go of the log,
    // so the embedder can start a node on the same data dir again in the
    // same process, and that node serves.
    let directory = tempfile::tempdir().unwrap();
    let builder = || {
        Node::builder()
            .data_dir(directory.path().join("node"))
            .stabilization(STABILIZATION)
            .bootstrap()
            .plugin_file(kv_plugin())
    };
    let (listen, gossip) = free_addresses();
    let taken = std::net::UdpSocket::bind(gossip).expect("hold the gossip port");
    let failed = builder().listen(listen).gossip(gossip).start().await;
    let error = failed.err().expect("the gossip port is taken");
    assert!(error.to_string().contains("gossip"), "{error}");
    drop(taken);
    let (listen, gossip) = free_addresses();
    let node = builder()
        .listen(listen)
        .gossip(gossip)
        .start()
        .await
        .unwrap_or_else(|error| panic!("the second start on the same data dir: {error}"));
    put_when_ready(&node, "k", "v").await;
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_embedded_nodes_form_a_cluster_in_one_process() {
    // Goal: the builder is all a Rust program needs: one node bootstraps
    // with the kv plugin, two join it by its gossip address; a write through
    // the last one is readable, linearizably, on the second, and a node
    // shuts down cleanly.
    let directory = tempfile::tempdir().expect("temp dir");
    let first = embedded(directory.path(), "n1", None).await;
    let seed = gossip_of(&first).await;
    let second = embedded(directory.path(), "n2", Some(seed.clone())).await;
    let third = embedded(directory.path(), "n3", Some(seed)).await;
    put_when_ready(&third, "greeting", "hello").await;
    let answer = second
        .query(kv::get("greeting"), Consistency::Linearizable)
        .await
        .expect("read through the second node");
    assert_eq!(value_of(&answer)["value"], "hello");
    let ids = [first.id(), second.id(), third.id()];
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    for node in [third, second, first] {
        node.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embedded_node_joins_a_cluster_of_clusterhost_processes() {
    // Goal: a program embedding clusterhost joins a cluster run by two
    // `clusterhost` processes and becomes its third voter; its writes are
    // seen through both processes' CLI.
    let mut cluster = TestCluster::start_bootstrap_with(&kv_plugin(), fast(1)).await;
    cluster.start_joining(0, fast(2)).await;
    cluster.wait_for_voters(2, MEMBERSHIP_TIMEOUT).await;
    let directory = tempfile::tempdir().expect("temp dir");
    let seed = cluster.node(0).gossip_addr().to_string();
    let node = embedded(directory.path(), "embedded", Some(seed)).await;
    put_when_ready(&node, "from", "library").await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    for n in 0..2 {
        let read = cluster
            .cli(n, &["query", r#"{"get":{"key":"from"}}"#])
            .await
            .success_json();
        assert_eq!(read["value"], "library", "read through process {n}");
    }
    node.shutdown().await.expect("clean shutdown");
}

/// A counter written in Rust: `+` adds one and answers the total.
#[derive(Default)]
struct Counter {
    total: u64,
}

impl StateMachine for Counter {
    fn apply(&mut self, _entry: Entry, command: &[u8]) -> Result<Vec<u8>, String> {
        if command != b"+" {
            return Err(format!(
                "unknown command {:?}",
                String::from_utf8_lossy(command)
            ));
        }
        self.total += 1;
        Ok(self.total.to_string().into_bytes())
    }

    fn query(&self, _request: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.total.to_string().into_bytes())
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.total.to_le_bytes().to_vec())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot
            .try_into()
            .map_err(|_| "not a counter".to_string())?;
        self.total = u64::from_le_bytes(bytes);
        Ok(())
    }
}

async fn native_node(
    directory: &std::path::Path,
    name: &str,
    addresses: (std::net::SocketAddr, std::net::SocketAddr),
    join: Option<String>,
) -> Node {
    let builder = Node::builder()
        .data_dir(directory.join(name))
        .listen(addresses.0)
        .gossip(addresses.1)
        .stabilization(STABILIZATION)
        .state_machine("counter", Counter::default());
    let builder = match join {
        Some(seed) => builder.join([seed]),
        None => builder.bootstrap(),
    };
    builder
        .start()
        .await
        .unwrap_or_else(|error| panic!("start {name}: {error}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_native_state_machine_replicates_snapshots_and_restarts() {
    // Goal: a Rust state machine instead of a plugin: three nodes replicate
    // it, a snapshot holds its state and a restarted node restores it, an
    // error it returns is a rejection, and a plugin deploy is refused.
    let directory = tempfile::tempdir().expect("temp dir");
    let first_addresses = free_addresses();
    let first = native_node(directory.path(), "n1", first_addresses, None).await;
    let seed = first_addresses.1.to_string();
    let second_addresses = free_addresses();
    let second = native_node(directory.path(), "n2", second_addresses, Some(seed.clone())).await;
    let third = native_node(directory.path(), "n3", free_addresses(), Some(seed)).await;
    for _ in 0..3 {
        first.apply(b"+".to_vec()).await.expect("add on the first");
    }
    wait_for(
        "a write through the third node",
        MEMBERSHIP_TIMEOUT,
        || async {
            third
                .apply(b"+".to_vec())
                .await
                .map_err(|error| error.to_string())
        },
    )
    .await;
    let total = second
        .query(b"total".to_vec(), Consistency::Linearizable)
        .await
        .expect("read");
    assert_eq!(total, b"4");
    let rejected = first
        .apply(b"x".to_vec())
        .await
        .expect_err("unknown command");
    assert!(
        rejected.to_string().contains("unknown command"),
        "{rejected}"
    );

    snapshot_and_refuse_a_plugin(&first).await;

    first.shutdown().await.expect("stop the first node");
    // Restarted on its data dir, as any node resumes: without bootstrap.
    let seed = second_addresses.1.to_string();
    let first = native_node(directory.path(), "n1", first_addresses, Some(seed)).await;
    wait_for(
        "the restarted node to catch up",
        MEMBERSHIP_TIMEOUT,
        || async {
            let total = first
                .query(b"total".to_vec(), Consistency::Stale)
                .await
                .map_err(|error| error.to_string())?;
            (total == b"4")
                .then_some(())
                .ok_or(format!("total {total:?}"))
        },
    )
    .await;
    for node in [third, second, first] {
        node.shutdown().await.expect("clean shutdown");
    }
}

/// Take a snapshot on `node` through the admin API, and check that a
/// plugin deploy to its native cluster is refused.
async fn snapshot_and_refuse_a_plugin(node: &Node) {
    let mut admin = clusterhost_client::Client::connect(node.endpoint())
        .await
        .expect("connect");
    admin.snapshot().await.expect("snapshot");
    let plugin = std::fs::read(kv_plugin()).expect("kv.wasm");
    let refused = admin
        .deploy_plugin(plugin)
        .await
        .expect_err("deploy refused");
    assert!(
        refused.to_string().contains("native state machine"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_running_another_state_machine_stops_instead_of_diverging() {
    // Goal: the state machine is part of the log: a plain `clusterhost`
    // process joining a native cluster, or a node embedding another native
    // machine, stops with a clear error at the entry that names the
    // cluster's machine, and the cluster is unaffected.
    let directory = tempfile::tempdir().expect("temp dir");
    let first_addresses = free_addresses();
    let first = native_node(directory.path(), "n1", first_addresses, None).await;
    first.apply(b"+".to_vec()).await.expect("add");
    let mut cluster = TestCluster::new();
    let plain = cluster.add_node(fast(7));
    cluster.set_join_addresses(plain, &[first_addresses.1.to_string()]);
    cluster.restart_without_waiting(plain).await;
    let code = cluster.wait_exit(plain, MEMBERSHIP_TIMEOUT).await;
    assert!(!code.success());
    let log = cluster.node(plain).log();
    assert!(
        log.contains("the native state machine counter") && log.contains("this node runs plugins"),
        "{log}"
    );
    assert_eq!(
        first
            .query(b"total".to_vec(), Consistency::Linearizable)
            .await
            .expect("the cluster still serves"),
        b"1"
    );
    first.shutdown().await.expect("clean shutdown");
}

/// The gossip address of an embedded node, from its status.
#[tokio::test(flavor = "multi_thread")]
async fn calls_a_peer_holds_open_do_not_hold_shutdown() {
    // Goal: stopping waits for the calls still open only so long: uploads
    // that send one chunk and fall silent would keep their calls and
    // connection open until the call timeout (GRPC_CALL_TIMEOUT); the node
    // cuts them after SERVER_DRAIN_TIMEOUT and stops soon after.
    /// Room for the rest of the shutdown after the drain (stepping down,
    /// the store's checkpoint, releasing the log and gossip).
    const REST_OF_SHUTDOWN: Duration = Duration::from_secs(40);
    const _: () = assert!(
        SERVER_DRAIN_TIMEOUT.as_secs() + REST_OF_SHUTDOWN.as_secs() < GRPC_CALL_TIMEOUT.as_secs()
    );
    let directory = tempfile::tempdir().expect("temp dir");
    let node = embedded(directory.path(), "n1", None).await;
    let channel = connect_channel_with(node.endpoint(), None)
        .await
        .expect("connect");
    let client = ClusterClient::new(channel);
    let chunk = || PluginChunk {
        data: vec![0; 1024],
    };
    let hold = || {
        let stalled = futures::stream::iter([chunk()]).chain(futures::stream::pending());
        let mut uploader = client.clone();
        tokio::spawn(async move { uploader.deploy_plugin(stalled).await })
    };
    let mut held: Vec<_> = (0..DEPLOY_UPLOADS_MAX).map(|_| hold()).collect();
    // Every upload slot taken: the held uploads reached the node.
    wait_for(
        "the held uploads to take every slot",
        MEMBERSHIP_TIMEOUT,
        || {
            // One refused because a probe had the slot is held again.
            for upload in &mut held {
                if upload.is_finished() {
                    *upload = hold();
                }
            }
            let mut client = client.clone();
            async move {
                let refused = client.deploy_plugin(futures::stream::iter([chunk()])).await;
                match refused {
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    let stopping = std::time::Instant::now();
    tokio::time::timeout(SERVER_DRAIN_TIMEOUT + REST_OF_SHUTDOWN, node.shutdown())
        .await
        .expect("shutdown is not held by the open calls")
        .expect("clean shutdown");
    assert!(
        stopping.elapsed() >= SERVER_DRAIN_TIMEOUT,
        "the calls were waited for"
    );
    for upload in held {
        let ended = tokio::time::timeout(REST_OF_SHUTDOWN, upload).await;
        let outcome = ended.expect("the cut ends the call").expect("upload task");
        assert!(outcome.is_err(), "a held upload was accepted: {outcome:?}");
    }
}

async fn gossip_of(node: &Node) -> String {
    let mut client = clusterhost_client::Client::connect(node.endpoint())
        .await
        .expect("connect");
    let members = client.members().await.expect("members");
    members
        .members
        .iter()
        .find(|member| member.id == node.id())
        .map(|member| member.gossip_addr.clone())
        .expect("the node lists itself")
}
