//! End-to-end tests of what an operator points tools at: the ops listener
//! of real `clusterhost` processes (`run --metrics-listen`) — Prometheus
//! metrics scraped and parsed under load and through a leader crash, the
//! health and readiness checks of nodes in and out of a cluster, and the
//! status page in a real browser (headless Chromium), a node started from
//! a configuration file (`run --config`), and the three-node example in
//! `deploy/`.

use std::net::SocketAddr;

use clusterhost_client::proto::Consistency;
use clusterhost_tests::browser;
use clusterhost_tests::load::WriteStream;
use clusterhost_tests::ops::{
    Scraped, free_ops_addr, http_get, scrape, three_nodes_with_ops, value, value_or_zero, with_ops,
};
use clusterhost_tests::scenario::{ELECTION_TIMEOUT, MEMBERSHIP_TIMEOUT};
use clusterhost_tests::{NodeOptions, TestCluster, kv, paths::kv_plugin, wait_for};

const PROPOSALS_OK: &str = "clusterhost_raft_proposals_total{outcome=\"ok\"}";
const LEADER_CHANGES: &str = "clusterhost_raft_leader_changes_total";
const APPLY_LAG: &str = "clusterhost_raft_apply_lag_entries";
const APPLY_FUEL: &str = "clusterhost_plugin_fuel_used_total{export=\"apply\"}";
const QUERY_FUEL: &str = "clusterhost_plugin_fuel_used_total{export=\"query\"}";
const APPLIER_MEMORY: &str = "clusterhost_plugin_memory_bytes{instance=\"applier\"}";
const READER_MEMORY: &str = "clusterhost_plugin_memory_bytes{instance=\"reader\"}";
const READER_REBUILDS: &str = "clusterhost_plugin_replay_rebuilds_total{instance=\"reader\"}";

/// The series of AppendEntries bytes the leader sent to the node `peer_id`.
fn append_entries_bytes(peer_id: u64) -> String {
    format!("clusterhost_raft_peer_sent_bytes_total{{call=\"APPEND_ENTRIES\",peer=\"{peer_id}\"}}")
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_under_load_and_through_a_leader_crash() {
    // Goal: scrape every node of a three-node cluster under writes: the
    // output parses as Prometheus text, the leader's proposals rise, the
    // followers' apply lag returns to 0 once writes stop, and after the
    // leader is killed the survivors' leader-change counters go up.
    let (mut cluster, ops) = three_nodes_with_ops().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let under_load = proposals_rise_under_writes(&cluster, &ops, leader).await;
    assert_requests_and_replication_counted(&under_load);
    assert_follower_times_its_linearizable_read(&cluster, &ops, (leader + 1) % 3).await;
    assert_autopilot_promotions_counted(&ops).await;
    wait_for_apply_lag_zero(&ops).await;
    kill_leader_and_see_the_survivors_count_it(&mut cluster, &ops, leader).await;
}

/// Write through every node until the leader's ok proposals rose by 100;
/// the leader's scrape at that point.
async fn proposals_rise_under_writes(
    cluster: &TestCluster,
    ops: &[SocketAddr],
    leader: usize,
) -> Scraped {
    let before = scrape(ops[leader]).await.expect("scrape the leader");
    assert_eq!(
        value(&before, "clusterhost_raft_role{role=\"leader\"}"),
        1.0
    );
    assert!(before.contains_key("clusterhost_process_resident_memory_bytes"));
    let endpoints: Vec<String> = (0..3).map(|n| cluster.node(n).endpoint()).collect();
    let stream = WriteStream::start(&endpoints, "metrics-");
    let proposed_before = value(&before, PROPOSALS_OK);
    wait_for(
        "the leader's ok proposals to rise by 100",
        ELECTION_TIMEOUT,
        || async {
            let now = scrape(ops[leader]).await?;
            let proposed = value(&now, PROPOSALS_OK);
            (proposed >= proposed_before + 100.0)
                .then_some(())
                .ok_or(format!("{proposed} ok proposals"))
        },
    )
    .await;
    let under_load = scrape(ops[leader]).await.expect("scrape under load");
    let (acknowledged, _) = stream.finish().await;
    assert!(!acknowledged.is_empty());
    under_load
}

/// The leader counted Apply requests, fsyncs, and entries sent to both
/// followers.
fn assert_requests_and_replication_counted(under_load: &Scraped) {
    assert!(
        under_load.keys().any(|key| key.starts_with(
            "clusterhost_grpc_requests_total{code=\"Ok\",method=\"/clusterhost.v1.Cluster/Apply\""
        )),
        "Apply requests are counted: {:?}",
        under_load.keys()
    );
    assert!(value(under_load, "clusterhost_log_fsyncs_total") > 0.0);
    let peers_sent_to = under_load
        .iter()
        .filter(|(key, sent)| {
            key.starts_with("clusterhost_raft_peer_entries_sent_total{") && **sent > 0.0
        })
        .count();
    assert_eq!(peers_sent_to, 2, "the leader replicated to both followers");
}

/// A linearizable read through `follower` is timed there.
async fn assert_follower_times_its_linearizable_read(
    cluster: &TestCluster,
    ops: &[SocketAddr],
    follower: usize,
) {
    let mut client = cluster.client(follower).await;
    kv::query_ok(
        &mut client,
        kv::get("metrics-w00-0"),
        Consistency::Linearizable,
    )
    .await;
    let scraped = scrape(ops[follower]).await.expect("scrape a follower");
    assert!(
        value(
            &scraped,
            "clusterhost_linearizable_read_wait_seconds_count{outcome=\"ok\"}"
        ) >= 1.0,
        "the follower timed its linearizable read"
    );
}

/// The autopilot's two promotions (of the joined learners) are counted
/// somewhere in the cluster.
async fn assert_autopilot_promotions_counted(ops: &[SocketAddr]) {
    let mut voters_added = 0.0;
    for addr in ops {
        let metrics = scrape(*addr).await.expect("scrape");
        voters_added += value_or_zero(
            &metrics,
            "clusterhost_autopilot_actions_total{action=\"add_voter\",outcome=\"ok\"}",
        );
    }
    assert!(
        voters_added >= 2.0,
        "the autopilot's two promotions are counted: {voters_added}"
    );
}

/// Once writes stopped, every node's apply lag returns to 0.
async fn wait_for_apply_lag_zero(ops: &[SocketAddr]) {
    for (n, addr) in ops.iter().enumerate() {
        wait_for(
            &format!("node {n}'s apply lag to return to 0"),
            ELECTION_TIMEOUT,
            || async {
                let now = scrape(*addr).await?;
                let lag = value(&now, APPLY_LAG);
                (lag == 0.0).then_some(()).ok_or(format!("lag {lag}"))
            },
        )
        .await;
    }
}

/// kill -9 the leader: each survivor counts a leader change and is ready
/// again under the new leader.
async fn kill_leader_and_see_the_survivors_count_it(
    cluster: &mut TestCluster,
    ops: &[SocketAddr],
    leader: usize,
) {
    let mut changes_before = Vec::new();
    for addr in ops {
        changes_before.push(value(&scrape(*addr).await.expect("scrape"), LEADER_CHANGES));
    }
    cluster.kill9(leader);
    for n in (0..3).filter(|n| *n != leader) {
        wait_for(
            &format!("node {n} to count the leader change"),
            ELECTION_TIMEOUT,
            || async {
                let now = scrape(ops[n]).await?;
                let changes = value(&now, LEADER_CHANGES);
                (changes > changes_before[n])
                    .then_some(())
                    .ok_or(format!("{changes} leader changes"))
            },
        )
        .await;
        let ready_again = wait_for(
            &format!("node {n} to be ready under the new leader"),
            ELECTION_TIMEOUT,
            || async {
                let (code, body) = http_get(ops[n], "/readyz").await?;
                if code == 200 {
                    Ok(body)
                } else {
                    Err(format!("{code}: {body}"))
                }
            },
        )
        .await;
        assert!(ready_again.contains("leader"), "{ready_again}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_and_replication_metrics_move_under_writes() {
    // Goal: under writes, the plugin's fuel used by `apply` rises on every
    // node, its applier holds memory, and the AppendEntries bytes the leader
    // sent to each follower rise; a read on the leader burns `query` fuel on
    // a reader built by replay, which then holds memory too.
    let (cluster, ops) = three_nodes_with_ops().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let followers: Vec<usize> = (0..3).filter(|n| *n != leader).collect();
    let mut fuel_before = Vec::new();
    for addr in &ops {
        let scraped = scrape(*addr).await.expect("scrape");
        fuel_before.push(value_or_zero(&scraped, APPLY_FUEL));
    }
    let before = scrape(ops[leader]).await.expect("scrape the leader");
    let sent_before: Vec<f64> = followers
        .iter()
        .map(|n| value_or_zero(&before, &append_entries_bytes(cluster.id_of(*n))))
        .collect();

    let endpoints: Vec<String> = (0..3).map(|n| cluster.node(n).endpoint()).collect();
    let stream = WriteStream::start(&endpoints, "usage-");
    wait_for_sent_bytes_to_each_follower(&cluster, &ops, leader, &sent_before).await;
    let (acknowledged, _) = stream.finish().await;
    assert!(!acknowledged.is_empty());

    for (n, addr) in ops.iter().enumerate() {
        let scraped = scrape(*addr).await.expect("scrape");
        let fuel = value(&scraped, APPLY_FUEL);
        assert!(
            fuel > fuel_before[n],
            "node {n}'s apply fuel rose: {} -> {fuel}",
            fuel_before[n]
        );
        let memory = value(&scraped, APPLIER_MEMORY);
        assert!(memory > 0.0, "node {n}'s applier holds memory: {memory}");
    }
    assert_a_read_burns_query_fuel_on_a_rebuilt_reader(&cluster, ops[leader], leader).await;
}

/// Wait until the leader's AppendEntries bytes to every follower rose
/// past `sent_before` (in the order of the followers' indexes).
async fn wait_for_sent_bytes_to_each_follower(
    cluster: &TestCluster,
    ops: &[SocketAddr],
    leader: usize,
    sent_before: &[f64],
) {
    let followers: Vec<u64> = (0..3)
        .filter(|n| *n != leader)
        .map(|n| cluster.id_of(n))
        .collect();
    wait_for(
        "the leader's AppendEntries bytes to each follower to rise",
        ELECTION_TIMEOUT,
        || async {
            let now = scrape(ops[leader]).await?;
            let sent: Vec<f64> = followers
                .iter()
                .map(|id| value_or_zero(&now, &append_entries_bytes(*id)))
                .collect();
            sent.iter()
                .zip(sent_before)
                .all(|(now, before)| now > before)
                .then_some(())
                .ok_or(format!("sent {sent:?}, before {sent_before:?}"))
        },
    )
    .await;
}

/// A linearizable read through node `n` burns `query` fuel there, on a
/// reader instance that was built by replay and holds memory.
async fn assert_a_read_burns_query_fuel_on_a_rebuilt_reader(
    cluster: &TestCluster,
    ops: SocketAddr,
    n: usize,
) {
    let before = scrape(ops).await.expect("scrape");
    let mut client = cluster.client(n).await;
    kv::query_ok(
        &mut client,
        kv::get("usage-w00-0"),
        Consistency::Linearizable,
    )
    .await;
    let after = scrape(ops).await.expect("scrape");
    let fuel = value(&after, QUERY_FUEL);
    assert!(
        fuel > value_or_zero(&before, QUERY_FUEL),
        "the read burned query fuel: {fuel}"
    );
    assert!(
        value(&after, READER_MEMORY) > 0.0,
        "the reader holds memory"
    );
    assert!(
        value(&after, READER_REBUILDS) >= 1.0,
        "the reader was built by replay"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness_of_nodes_in_and_out_of_a_cluster() {
    // Goal: a node that is in no cluster (no leader, not a member) is
    // healthy but not ready (503); a node of a cluster with a leader is both
    // (200); unknown paths are 404 and other methods are refused.
    let lone_ops = free_ops_addr();
    let mut lone = TestCluster::new();
    let node = lone.add_node(with_ops(7, lone_ops));
    lone.restart_without_waiting(node).await;
    let (code, body) = http_get(lone_ops, "/healthz").await.expect("healthz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(lone_ops, "/readyz").await.expect("readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not a member"), "{body}");
    let (code, _) = http_get(lone_ops, "/nothing-here").await.expect("404");
    assert_eq!(code, 404);

    let ops = free_ops_addr();
    let cluster = TestCluster::start_bootstrap_with(&kv_plugin(), with_ops(1, ops)).await;
    let (code, body) = http_get(ops, "/healthz").await.expect("healthz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(ops, "/readyz").await.expect("readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("leader 1"), "{body}");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_three_members_and_the_leader_in_a_real_browser() {
    // Goal: load a three-node cluster's status page in headless Chromium:
    // after its scripts ran, the DOM lists three members and names the
    // leader every node agrees on. A screenshot is kept at
    // target/status-page.png for people to look at.
    let (cluster, ops) = three_nodes_with_ops().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let leader_id = cluster.id_of(leader);
    // Some writes and reads, so the page's rates and latencies have
    // something to show.
    let endpoints: Vec<String> = (0..3).map(|n| cluster.node(n).endpoint()).collect();
    let stream = WriteStream::start(&endpoints, "page-");
    let shown = ops[0];
    wait_for(
        "node 0's status to list three live members",
        ELECTION_TIMEOUT,
        || async {
            let (code, body) = http_get(shown, "/status.json").await?;
            let status: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let alive = status["members"].as_array().map_or(0, |members| {
                members.iter().filter(|m| m["liveness"] == "alive").count()
            });
            (code == 200
                && alive == 3
                && status["leader_id"] == leader_id
                && status["rates"].as_array().is_some_and(|rates| {
                    rates
                        .iter()
                        .any(|rate| rate["write_latency_ms"].as_f64().is_some_and(|ms| ms > 0.0))
                }))
            .then_some(())
            .ok_or(format!("{code}: {body}"))
        },
    )
    .await;
    let (acknowledged, _) = stream.finish().await;
    assert!(!acknowledged.is_empty());

    let url = format!("http://{shown}/");
    let dom = browser::dump_dom(&url).await;
    let members = dom.matches("<tr class=\"member").count();
    assert_eq!(members, 3, "three member rows in:\n{dom}");
    assert!(
        dom.contains(&format!("<b id=\"leader\">{leader_id}</b>")),
        "the leader {leader_id} is named in:\n{dom}"
    );
    assert!(
        dom.contains("<tr class=\"member leader\""),
        "the leader's row is marked:\n{dom}"
    );
    let latency_chart = dom
        .split_once("<svg id=\"latency\"")
        .and_then(|(_, rest)| rest.split_once("</svg>"))
        .map(|(chart, _)| chart)
        .unwrap_or_default();
    assert!(
        latency_chart.contains("<polyline"),
        "the latency chart draws the writes this node answered:\n{dom}"
    );
    let screenshot = clusterhost_tests::paths::workspace_root().join("target/status-page.png");
    browser::screenshot(&url, &screenshot).await;
    eprintln!("status page screenshot: {}", screenshot.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_started_from_a_config_file_behaves_like_one_started_with_flags() {
    // Goal: `run --config node.toml` takes every key as its flag (the
    // plugin, bootstrap, node id, the ops listener), a flag on the command
    // line overrides its key (the harness's --listen against the file's),
    // an environment variable CLUSTERHOST_<FLAG> overrides it too, and an
    // unknown key is refused by name with exit 2.
    let ops = free_ops_addr();
    let mut cluster = TestCluster::new();
    let config = cluster.root().join("node.toml");
    let plugin = kv_plugin();
    std::fs::write(
        &config,
        format!(
            "plugin = {:?}\nbootstrap = true\nnode_id = 5\nmetrics_listen = \"{ops}\"\n\
             listen = \"127.0.0.1:9\"\nsnapshot_every = 500\n",
            plugin.to_string_lossy()
        ),
    )
    .expect("write node.toml");
    let node = cluster.add_node(NodeOptions {
        extra_args: vec![
            "--config".to_string(),
            config.to_string_lossy().into_owned(),
        ],
        ..NodeOptions::default()
    });
    cluster.restart_without_waiting(node).await;
    let status = cluster.wait_ready(node).await;
    assert_eq!(status.node_id, 5);
    assert_eq!(status.leader_id, Some(5));
    assert_eq!(
        status.rpc_addr,
        cluster.node(node).endpoint(),
        "--listen beat the file"
    );
    let (code, body) = http_get(ops, "/readyz").await.expect("readyz");
    assert_eq!(code, 200, "{body}");

    let bad = cluster.root().join("bad.toml");
    std::fs::write(&bad, "data_dir = \"x\"\ncolour = \"blue\"\n").expect("write bad.toml");
    cluster
        .cli_anywhere(&["run", "--config", &bad.to_string_lossy()])
        .await
        .failure(clusterhost_tests::exit::USAGE, &["unknown key `colour`"]);

    // An environment variable beats the file's key: the variable's invalid
    // value is what clap refuses.
    let capped = cluster.root().join("capped.toml");
    std::fs::write(&capped, "voter_cap = 3\n").expect("write capped.toml");
    let refused = clusterhost_tests::cli::run_cli(
        ["run", "--config", &capped.to_string_lossy()],
        &[("CLUSTERHOST_VOTER_CAP", "0")],
        clusterhost_tests::cli::CLI_TIMEOUT,
    )
    .await;
    // clap's own message (`error: invalid value '0' for '--voter-cap ...'`).
    assert_eq!(
        refused.code,
        Some(clusterhost_tests::exit::USAGE),
        "{refused}"
    );
    assert!(
        refused
            .stderr
            .contains("invalid value '0' for '--voter-cap"),
        "{refused}"
    );
}

/// A first port of nine consecutive free ones (TCP and UDP), for the
/// deploy example, which numbers its ports from one base.
fn free_port_block() -> u16 {
    for _attempt in 0..50 {
        let base = free_ops_addr().port();
        if base > 65_000 {
            continue;
        }
        let free = (base..base + 9).all(|port| {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no block of nine free ports");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_three_node_deploy_example_forms_a_cluster_and_stops_on_sigterm() {
    // Goal: deploy/three-nodes.sh, as a user would run it, starts three
    // nodes from config files that form a cluster (three ready members on
    // the status page), and SIGTERM stops all of them.
    use tokio::io::AsyncBufReadExt;
    let root = clusterhost_tests::paths::workspace_root();
    let directory = tempfile::tempdir().expect("temp dir");
    let base = free_port_block();
    let mut script = tokio::process::Command::new("sh")
        .arg(root.join("deploy/three-nodes.sh"))
        .arg(kv_plugin())
        .arg(directory.path())
        .env(
            "CLUSTERHOST",
            clusterhost_tests::paths::clusterhost_binary(),
        )
        .env("BASE_PORT", base.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run deploy/three-nodes.sh");
    let stdout = script.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(MEMBERSHIP_TIMEOUT, lines.next_line())
        .await
        .expect("the example reports a ready cluster in time")
        .expect("read its output");
    assert!(
        ready
            .as_deref()
            .is_some_and(|line| line.starts_with("cluster ready")),
        "{ready:?}"
    );
    let ops: SocketAddr = format!("127.0.0.1:{}", base + 2).parse().expect("address");
    wait_for(
        "three alive members on the example's status page",
        ELECTION_TIMEOUT,
        || async {
            let (code, body) = http_get(ops, "/status.json").await?;
            let status: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let alive = status["members"].as_array().map_or(0, |members| {
                members.iter().filter(|m| m["liveness"] == "alive").count()
            });
            (code == 200 && alive == 3)
                .then_some(())
                .ok_or(format!("{code}: {body}"))
        },
    )
    .await;
    let pid = script.id().expect("the script runs") as i32;
    // SAFETY: signalling a child this test spawned and still owns.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let exited = tokio::time::timeout(MEMBERSHIP_TIMEOUT, script.wait())
        .await
        .expect("the example stops after SIGTERM")
        .expect("wait for it");
    eprintln!("deploy example exited: {exited}");
    for n in 0..3u16 {
        let grpc = base + 3 * n;
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", grpc)).is_ok(),
            "node {n} still holds port {grpc} after SIGTERM"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_systemd_unit_passes_systemd_analyze_verify() {
    // Goal: deploy/clusterhost.service is a unit systemd accepts without a
    // warning (unknown keys, bad values), with ExecStart pointed at the
    // binary under test.
    let root = clusterhost_tests::paths::workspace_root();
    let unit =
        std::fs::read_to_string(root.join("deploy/clusterhost.service")).expect("read the unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/clusterhost run --config"));
    let binary = clusterhost_tests::paths::clusterhost_binary()
        .to_string_lossy()
        .into_owned();
    let directory = tempfile::tempdir().expect("temp dir");
    let copy = directory.path().join("clusterhost.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/clusterhost", &binary)).expect("write");
    let output = tokio::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .await
        .expect("systemd-analyze runs (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    assert!(stderr.trim().is_empty(), "systemd-analyze warned: {stderr}");
}
