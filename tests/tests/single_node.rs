//! End-to-end scenarios against one real `clusterhost` process: the CLI,
//! concurrency, crashes, snapshots, misbehaving plugins, reads and clean
//! shutdowns. Each test owns its node(s), ports and temp dirs through a
//! `TestCluster`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clusterhost_client::proto::{Consistency, apply_response};
use clusterhost_tests::cli::{CLI_TIMEOUT, run_cli};
use clusterhost_tests::kv::{self, apply_ok, get_value, query_ok, scan_all};
use clusterhost_tests::paths::{kv_plugin, misbehave_plugin};
use clusterhost_tests::{
    Acknowledged, NodeOptions, TestCluster, assert_acknowledged_present, exit, wait_for,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha256_hex(path: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read plugin")))
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_apply_query_and_status() {
    // Goal: the CLI round trip works against a real node — a put is
    // acknowledged, a get returns the value, and `status --json` describes a
    // one-voter cluster led by this node, running exactly kv.wasm, having
    // applied the write.
    let cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let put = cluster
        .cli(
            0,
            &["apply", r#"{"put":{"key":"greeting","value":"hello"}}"#],
        )
        .await;
    assert_eq!(put.success_json(), json!({"prev": null}));
    let get = cluster
        .cli(0, &["query", r#"{"get":{"key":"greeting"}}"#])
        .await;
    assert_eq!(get.success_json(), json!({"value": "hello"}));

    // The CLI does not print the index; a gRPC apply does.
    let mut client = cluster.client(0).await;
    let (index, previous) = apply_ok(&mut client, kv::put("greeting", "again")).await;
    assert_eq!(previous, json!({"prev": "hello"}));

    let status = cluster.status(0).await;
    assert_eq!(status["role"], "leader", "{status}");
    assert_eq!(status["leader_id"], status["node_id"], "{status}");
    assert_eq!(status["rpc_addr"], cluster.node(0).endpoint(), "{status}");
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{status}");
    assert_eq!(members[0]["id"], status["node_id"]);
    assert_eq!(members[0]["suffrage"], "voter");
    assert!(
        status["applied_index"].as_u64().unwrap() >= index,
        "{status}"
    );
    assert!(
        status["commit_index"].as_u64().unwrap() >= index,
        "{status}"
    );

    let digest = sha256_hex(&kv_plugin());
    assert_eq!(status["plugin"]["digest"], digest, "{status}");
    let size = std::fs::metadata(kv_plugin()).unwrap().len();
    assert_eq!(status["plugin"]["size_bytes"], size, "{status}");
    let kv_path = kv_plugin().to_string_lossy().into_owned();
    let inspect = run_cli(["plugin", "inspect", "--json", &kv_path], &[], CLI_TIMEOUT).await;
    let reported = inspect.success_json()["digest"].clone();
    assert!(
        reported
            .as_str()
            .is_some_and(|text| text.ends_with(&digest)),
        "inspect digest {reported} is not {digest}"
    );

    let acknowledged = Acknowledged::from([("greeting".to_string(), "again".to_string())]);
    assert_acknowledged_present(&cluster, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn thousand_writes_from_sixteen_concurrent_clients() {
    // Goal: 1,000 writes from 16 concurrent gRPC clients are all acknowledged
    // and then all readable with the right values; nothing else appears.
    const CLIENTS: usize = 16;
    const WRITES: usize = 1_000;
    let cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let mut writers = Vec::new();
    for writer in 0..CLIENTS {
        let mut client = cluster.client(0).await;
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Acknowledged::new();
            for write in (writer..WRITES).step_by(CLIENTS) {
                let (key, value) = (
                    format!("key-{write:04}"),
                    format!("value-{write}-by-{writer}"),
                );
                let (_, response) = apply_ok(&mut client, kv::put(&key, &value)).await;
                assert_eq!(response, json!({"prev": null}), "{key} was new");
                acknowledged.insert(key, value);
            }
            acknowledged
        }));
    }
    let mut acknowledged = Acknowledged::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer task"));
    }
    assert_eq!(acknowledged.len(), WRITES);

    let mut client = cluster.client(0).await;
    let page = query_ok(
        &mut client,
        kv::scan("key-", 1000),
        Consistency::Linearizable,
    )
    .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(WRITES));
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_eq!(
        state, acknowledged,
        "the store holds exactly the acknowledged writes"
    );
}

/// Writers that keep putting unique keys until stopped or until a write
/// fails, recording what was acknowledged and what was merely attempted.
struct WriteStream {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
    tasks: Vec<tokio::task::JoinHandle<Acknowledged>>,
}

impl WriteStream {
    /// Start `writers` writers on node 0, writing keys under `prefix`.
    async fn start(cluster: &TestCluster, prefix: &str, writers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Acknowledged::new()));
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let mut client = cluster.client(0).await;
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            let prefix = prefix.to_string();
            tasks.push(tokio::spawn(async move {
                let mut attempted = Acknowledged::new();
                for sequence in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("{prefix}w{writer:02}-{sequence:06}");
                    let value = format!("v{sequence}-{writer}");
                    attempted.insert(key.clone(), value.clone());
                    match client.apply(kv::put(&key, &value)).await {
                        Ok(response)
                            if matches!(response.result, Some(apply_response::Result::Ok(_))) =>
                        {
                            acknowledged.lock().unwrap().insert(key, value);
                        }
                        Ok(response) => panic!("put {key} not accepted: {response:?}"),
                        Err(_) => break,
                    }
                }
                attempted
            }));
        }
        Self {
            stop,
            acknowledged,
            tasks,
        }
    }

    fn acknowledged_count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Stop (writers also stop at their first failed write) and return
    /// (acknowledged, attempted).
    async fn finish(self) -> (Acknowledged, Acknowledged) {
        self.stop.store(true, Ordering::Relaxed);
        let mut attempted = Acknowledged::new();
        for task in self.tasks {
            attempted.extend(task.await.expect("writer task"));
        }
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        (acknowledged, attempted)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_writes_loses_no_acknowledged_write() {
    // Goal: a node SIGKILLed in the middle of a stream of writes, restarted
    // on its data dir (no --plugin, no --bootstrap), still holds every write
    // it acknowledged, with its value; writes in flight when it died are
    // either absent or exactly as sent; and it accepts writes again.
    let mut cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let stream = WriteStream::start(&cluster, "", 4).await;
    wait_for(
        "200 acknowledged writes",
        Duration::from_secs(60),
        || async { stream.acknowledged_count() >= 200 },
    )
    .await;
    cluster.kill9(0);
    let (acknowledged, attempted) = stream.finish().await;
    eprintln!(
        "killed with {} writes acknowledged, {} attempted",
        acknowledged.len(),
        attempted.len()
    );

    cluster.restart(0).await;
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    for (key, value) in &state {
        assert_eq!(
            attempted.get(key),
            Some(value),
            "{key} holds a value never sent"
        );
    }
    let mut client = cluster.client(0).await;
    let (_, response) = apply_ok(&mut client, kv::put("after-restart", "yes")).await;
    assert_eq!(response, json!({"prev": null}));
    let mut acknowledged = acknowledged;
    acknowledged.insert("after-restart".into(), "yes".into());
    assert_acknowledged_present(&cluster, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_and_purge_then_restart_restores_from_snapshot() {
    // Goal: with frequent snapshots and a short log, `clusterhost snapshot`
    // snapshots and purges the log; a node SIGKILLed after that restarts from
    // the snapshot (the purged entries exist nowhere else) with all its data.
    let options = NodeOptions {
        snapshot_every: Some(50),
        log_keep: Some(10),
        ..NodeOptions::default()
    };
    let mut cluster = TestCluster::start_bootstrap_with(&kv_plugin(), options).await;
    let mut client = cluster.client(0).await;
    let mut acknowledged = Acknowledged::new();
    let mut last_index = 0;
    for write in 0..300 {
        let (key, value) = (format!("snap-{write:03}"), format!("value-{write}"));
        last_index = apply_ok(&mut client, kv::put(&key, &value)).await.0;
        acknowledged.insert(key, value);
    }
    let output = cluster.cli(0, &["snapshot"]).await;
    assert!(
        output.success().starts_with("snapshot at index"),
        "{output}"
    );

    let status = cluster.status(0).await;
    let snapshot_index = status["snapshot_index"].as_u64().expect("a snapshot");
    assert!(snapshot_index >= last_index, "{status}");
    let purged = status["purged_index"].as_u64().unwrap();
    assert!(purged > 0, "log not purged: {status}");
    assert!(
        status["snapshot_size_bytes"].as_u64().unwrap() > 0,
        "{status}"
    );

    cluster.kill9(0);
    cluster.restart(0).await;
    let status = cluster.status(0).await;
    assert!(
        status["snapshot_index"].as_u64() >= Some(snapshot_index),
        "snapshot not remembered: {status}"
    );
    assert!(
        status["purged_index"].as_u64().unwrap() >= purged,
        "{status}"
    );
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_eq!(state, acknowledged);
    let mut client = cluster.client(0).await;
    apply_ok(&mut client, kv::put("after", "restore")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_rejection_reaches_the_client_and_the_node_keeps_going() {
    // Goal: a command the plugin rejects comes back as an application error
    // (CLI exit 3, "rejected"; gRPC `rejected`), changes nothing, and the
    // next write works.
    let cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    for bad in [r#"{"nope":1}"#, r#"{"put":{"key":"k"}}"#, "not json"] {
        let output = cluster.cli(0, &["apply", bad]).await;
        output.failure(exit::REJECTED, &["rejected"]);
    }
    let mut client = cluster.client(0).await;
    let response = client
        .apply(br#"{"nope":1}"#.to_vec())
        .await
        .expect("apply");
    assert!(
        matches!(response.result, Some(apply_response::Result::Rejected(_))),
        "{response:?}"
    );
    let output = cluster
        .cli(0, &["apply", r#"{"put":{"key":"k","value":"v"}}"#])
        .await;
    assert_eq!(output.success_json(), json!({"prev": null}));
    let state =
        assert_acknowledged_present(&cluster, &Acknowledged::from([("k".into(), "v".into())]))
            .await;
    assert_eq!(
        state.len(),
        1,
        "rejected commands changed the store: {state:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trapping_entries_fail_alone() {
    // Goal: an entry that traps (panic), runs out of fuel (spin) or out of
    // memory (alloc) fails alone: the client gets exit 3 naming the cause,
    // the state is unchanged (only successful incrs are counted), the next
    // entry works, and a restart replays the log to the same count.
    // `alloc` touches every byte it allocates, which burns fuel too: the fuel
    // must outlast 64 MiB of writes so that the memory cap, not fuel, stops
    // it (50M fuel does not), yet stay small so `spin` stops quickly.
    let options = NodeOptions {
        plugin_fuel: Some(500_000_000),
        plugin_memory_mib: Some(64),
        ..NodeOptions::default()
    };
    let mut cluster = TestCluster::start_bootstrap_with(&misbehave_plugin(), options).await;
    let count = async |cluster: &TestCluster| {
        cluster
            .cli(0, &["query", r#""count""#])
            .await
            .success_json()
    };
    assert_eq!(
        cluster.cli(0, &["apply", r#""incr""#]).await.success_json(),
        json!(1)
    );
    assert_eq!(
        cluster.cli(0, &["apply", r#""incr""#]).await.success_json(),
        json!(2)
    );
    let mut expected = 2;
    for (command, cause) in [("panic", "trap"), ("spin", "fuel"), ("alloc", "memory")] {
        let started = Instant::now();
        let output = cluster.cli(0, &["apply", &format!("\"{command}\"")]).await;
        output.failure(exit::REJECTED, &["changed nothing", cause]);
        eprintln!(
            "{command}: {:.1?}: {}",
            started.elapsed(),
            output.stderr.trim()
        );
        assert_eq!(count(&cluster).await, json!(expected), "after {command}");
        expected += 1;
        let incr = cluster.cli(0, &["apply", r#""incr""#]).await;
        assert_eq!(incr.success_json(), json!(expected), "incr after {command}");
    }
    assert_eq!(count(&cluster).await, json!(expected));
    cluster.kill9(0);
    cluster.restart(0).await;
    assert_eq!(
        count(&cluster).await,
        json!(expected),
        "replay after restart"
    );
    clusterhost_tests::assert_replicas_agree_on(&cluster, &[r#""count""#, r#""log""#]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_and_linearizable_queries() {
    // Goal: `--consistency stale` answers from local state; linearizable is
    // the CLI's default and sees every acknowledged write (read your writes).
    let cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let help = run_cli(["query", "--help"], &[], CLI_TIMEOUT).await;
    assert!(help.success().contains("[default: linearizable]"), "{help}");
    let mut client = cluster.client(0).await;
    for round in 0..20 {
        let value = format!("round-{round}");
        apply_ok(&mut client, kv::put("register", &value)).await;
        let read = get_value(&mut client, "register", Consistency::Linearizable).await;
        assert_eq!(read.as_deref(), Some(value.as_str()), "linearizable read");
    }
    let request = r#"{"get":{"key":"register"}}"#;
    let default = cluster.cli(0, &["query", request]).await.success_json();
    assert_eq!(default, json!({"value": "round-19"}));
    let stale = cluster
        .cli(0, &["query", "--consistency", "stale", request])
        .await
        .success_json();
    assert_eq!(stale, json!({"value": "round-19"}));
    let stale_scan = scan_all(&mut client, "", Consistency::Stale).await;
    assert_eq!(
        stale_scan,
        BTreeMap::from([("register".into(), "round-19".into())])
    );
    let output = cluster.cli(0, &["query", r#"{"get":{}}"#]).await;
    output.failure(exit::REJECTED, &["rejected"]);
    assert_acknowledged_present(
        &cluster,
        &Acknowledged::from([("register".into(), "round-19".into())]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_shuts_down_cleanly_and_restart_has_everything() {
    // Goal: SIGTERM stops a node promptly with exit 0 (logging that it
    // stopped), and the restarted node holds every acknowledged write.
    let mut cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let mut client = cluster.client(0).await;
    let mut acknowledged = Acknowledged::new();
    for write in 0..50 {
        let (key, value) = (format!("term-{write:02}"), format!("{write}"));
        apply_ok(&mut client, kv::put(&key, &value)).await;
        acknowledged.insert(key, value);
    }
    let started = Instant::now();
    let status = cluster.terminate(0).await;
    assert_eq!(status.code(), Some(0), "SIGTERM exit: {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:.1?}",
        started.elapsed()
    );
    assert!(
        cluster.node(0).log().contains("node stopped"),
        "{}",
        cluster.log_tails()
    );

    cluster.restart(0).await;
    let state = assert_acknowledged_present(&cluster, &acknowledged).await;
    assert_eq!(state, acknowledged);
    let status: Value = cluster.status(0).await;
    assert_eq!(status["role"], "leader", "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_writes_exits_cleanly_and_keeps_acknowledged_writes() {
    // Goal: SIGTERM while clients are writing still exits 0 promptly, and
    // every write acknowledged before the shutdown survives the restart.
    let mut cluster = TestCluster::start_bootstrap(&kv_plugin()).await;
    let stream = WriteStream::start(&cluster, "", 4).await;
    wait_for(
        "100 acknowledged writes",
        Duration::from_secs(60),
        || async { stream.acknowledged_count() >= 100 },
    )
    .await;
    let started = Instant::now();
    let status = cluster.terminate(0).await;
    let (acknowledged, _) = stream.finish().await;
    assert_eq!(status.code(), Some(0), "SIGTERM exit: {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:.1?}",
        started.elapsed()
    );
    cluster.restart(0).await;
    assert_acknowledged_present(&cluster, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_kill9_with_frequent_snapshots_loses_nothing() {
    // Goal: crashes that land while snapshots are taken and the log is
    // purged often (every 20 entries, keeping 5) lose no acknowledged write,
    // over several crash/restart cycles.
    let options = NodeOptions {
        snapshot_every: Some(20),
        log_keep: Some(5),
        ..NodeOptions::default()
    };
    let mut cluster = TestCluster::start_bootstrap_with(&kv_plugin(), options).await;
    let mut acknowledged = Acknowledged::new();
    for cycle in 0..3 {
        let stream = WriteStream::start(&cluster, &format!("c{cycle}-"), 4).await;
        let target = acknowledged.len() + 150;
        let before = acknowledged.len();
        wait_for(
            "150 more acknowledged writes",
            Duration::from_secs(60),
            || async { before + stream.acknowledged_count() >= target },
        )
        .await;
        cluster.kill9(0);
        let (acknowledged_now, _) = stream.finish().await;
        acknowledged.extend(acknowledged_now);
        cluster.restart(0).await;
        let status = cluster.status(0).await;
        assert!(status["snapshot_index"].as_u64().is_some(), "{status}");
        let state = scan_all(&mut cluster.client(0).await, "", Consistency::Linearizable).await;
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|(key, value)| state.get(*key) != Some(*value))
            .map(|(key, _)| key)
            .take(5)
            .collect();
        assert!(lost.is_empty(), "cycle {cycle}: lost {lost:?}");
    }
    assert_acknowledged_present(&cluster, &acknowledged).await;
}
