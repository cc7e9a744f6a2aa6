//! A store plugin's state file is the durable copy: a node killed with
//! SIGKILL resumes from the file's last checkpoint (an index past its
//! snapshot) and replays only the entries after it, ending with the same
//! store and applied digest as nodes that never stopped; a clean stop
//! resumes where it stopped; a node that joined by snapshot resumes from
//! the installed store; a node killed after a deploy resumes the new plugin
//! and keeps the old one for rollback; repeated kills under write load lose
//! no acknowledged write; a snapshot transfer cut by a kill while it is
//! received or installed leaves no half-installed store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clusterhost::limits::STORE_CHECKPOINT_INTERVAL;
use clusterhost_client::Client;
use clusterhost_client::proto::{Consistency, apply_response};
use clusterhost_tests::kv::{self, apply_ok, scan_all};
use clusterhost_tests::paths::plugin;
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast, transfer_leadership};
use clusterhost_tests::{Acknowledged, NodeOptions, TestCluster, exit, wait_for};

/// How long replicas may take to report the same applied digest.
const DIGEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Most keys a test writes to let checkpoints come due.
const KEYS_MAX: usize = 5_000;

/// Writes just before a clean stop.
const CLEAN_STOP_WRITES: usize = 5;

/// What a node logs when it resumes from its state file.
const RESUMED: &str = "resumed_index=";

/// What a node logs when it cannot, and rebuilds from the snapshot.
const REBUILT: &str = "rebuilding the plugin store from the newest snapshot";

/// Three voters running kv_disk (ids 1, 2, 3).
async fn three_kv_disk_nodes() -> TestCluster {
    three_kv_disk_nodes_with(fast).await
}

/// Three voters running kv_disk (ids 1, 2, 3), each started with
/// `options(id)`.
async fn three_kv_disk_nodes_with(options: impl Fn(u64) -> NodeOptions) -> TestCluster {
    let mut cluster = TestCluster::start_bootstrap_with(&plugin("kv_disk.wasm"), options(1)).await;
    cluster.start_joining(0, options(2)).await;
    cluster.start_joining(1, options(3)).await;
    cluster.wait_for_voters(3, MEMBERSHIP_TIMEOUT).await;
    cluster
}

/// Options under which the founders snapshot and purge their logs soon,
/// so a new node can only catch up by snapshot.
fn snapshotting(id: u64) -> NodeOptions {
    NodeOptions {
        snapshot_every: Some(50),
        log_keep: Some(10),
        ..fast(id)
    }
}

/// What the log after the checkpoint held when the node last resumed.
const ENTRIES_AFTER: &str = "log_entries_after=";

/// The number following `field` on the node's last resume line, if it
/// resumed.
fn last_resume_field(log: &str, field: &str) -> Option<u64> {
    let line = log.lines().rev().find(|line| line.contains(RESUMED))?;
    let start = line.find(field)? + field.len();
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The `resumed_index` the node's last start logged, if it resumed.
fn last_resumed_index(log: &str) -> Option<u64> {
    last_resume_field(log, RESUMED)
}

/// Every running node holds every acknowledged key with its value (writes
/// whose outcome the writer never learned may be there too).
async fn assert_every_node_holds_all(cluster: &TestCluster, expected: &Acknowledged) {
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    for n in cluster.running() {
        let mut client = cluster.client(n).await;
        let state = scan_all(&mut client, "", Consistency::Stale).await;
        let missing: Vec<_> = expected
            .iter()
            .filter(|(key, value)| state.get(*key) != Some(value))
            .map(|(key, _)| key)
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "node {n} lost acknowledged writes: {missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_follower_resumes_from_its_state_file_past_its_snapshot() {
    // Goal: a follower killed with SIGKILL after a snapshot and more writes
    // resumes at a checkpoint past that snapshot (so it replays fewer
    // entries than from the snapshot), and catches up with every key and
    // the others' applied digest.
    let mut cluster = three_kv_disk_nodes().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    let mut client = cluster.client(leader).await;
    let mut acknowledged = Acknowledged::new();
    let mut put = async |acknowledged: &mut Acknowledged, number: usize| {
        let (key, value) = (format!("key-{number:05}"), format!("{number}"));
        apply_ok(&mut client, kv::put(&key, &value)).await;
        acknowledged.insert(key, value);
    };
    for number in 0..50 {
        put(&mut acknowledged, number).await;
    }
    cluster.cli(follower, &["snapshot"]).await.success();
    let snapshot_index = cluster.status(follower).await["snapshot_index"]
        .as_u64()
        .expect("snapshot_index");
    // Writes for twice the checkpoint interval: the follower checkpoints
    // at least once after its snapshot.
    let started = Instant::now();
    let mut number = 50;
    while started.elapsed() < 2 * STORE_CHECKPOINT_INTERVAL && number < KEYS_MAX {
        put(&mut acknowledged, number).await;
        number += 1;
    }
    let applied_before = cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    cluster.kill9(follower);
    cluster.restart(follower).await;
    assert_every_node_holds_all(&cluster, &acknowledged).await;
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
    let log = cluster.node(follower).log();
    assert!(!log.contains(REBUILT), "the follower rebuilt its store");
    let resumed = last_resumed_index(&log).expect("the follower resumed from its state file");
    assert!(
        resumed > snapshot_index && resumed <= applied_before,
        "resumed at {resumed}: snapshot at {snapshot_index}, applied {applied_before}"
    );
    // A clean stop checkpoints at the last entry applied: a few writes in
    // quick succession, too few and too fast for a periodic checkpoint to
    // cover the last, are there after the restart with nothing replayed.
    for number in number..number + CLEAN_STOP_WRITES {
        put(&mut acknowledged, number).await;
    }
    let applied_before = cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    cluster.terminate(follower).await;
    cluster.restart(follower).await;
    let log = cluster.node(follower).log();
    assert!(!log.contains(REBUILT), "the follower rebuilt its store");
    let resumed = last_resumed_index(&log).expect("resumed");
    let replayed = last_resume_field(&log, ENTRIES_AFTER).expect("log_entries_after");
    assert_eq!(
        (resumed, replayed),
        (applied_before, 0),
        "(resumed index, entries to replay) after a clean stop at {applied_before}"
    );
    assert_every_node_holds_all(&cluster, &acknowledged).await;
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
}

/// Writes `load-N` keys round robin through `clients` until `stop`,
/// recording each acknowledged one; errors (a node down, an outcome
/// unknown) are skipped.
async fn write_load(
    mut clients: Vec<Client>,
    acknowledged: Arc<Mutex<Acknowledged>>,
    stop: Arc<AtomicBool>,
) {
    let mut number = 0usize;
    while !stop.load(Ordering::Relaxed) && number < 100 * KEYS_MAX {
        let (key, value) = (format!("load-{number:06}"), format!("{number}"));
        let count = clients.len();
        let client = &mut clients[number % count];
        let request = client.apply(kv::put(&key, &value));
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(5), request).await
            && matches!(response.result, Some(apply_response::Result::Ok(_)))
        {
            acknowledged.lock().expect("lock").insert(key, value);
        }
        number += 1;
    }
}

/// Wait until the writer has `more` acknowledged writes beyond now.
async fn wait_for_writes(acknowledged: &Mutex<Acknowledged>, more: usize) {
    let target = acknowledged.lock().expect("lock").len() + more;
    wait_for("writes acknowledged", MEMBERSHIP_TIMEOUT, || async {
        let count = acknowledged.lock().expect("lock").len();
        if count >= target {
            Ok(())
        } else {
            Err(format!("{count} of {target}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_kill_9_under_write_load_loses_no_acknowledged_write() {
    // Goal: each node in turn killed with SIGKILL while writes go on
    // through all three restarts from its state file, no acknowledged write
    // is lost, and every node ends with the same applied digest.
    let mut cluster = three_kv_disk_nodes().await;
    let mut clients = Vec::new();
    for n in 0..3 {
        clients.push(cluster.client(n).await);
    }
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_load(clients, acknowledged.clone(), stop.clone()));
    let mut resumed = Vec::new();
    for victim in [1, 0, 2] {
        // Long enough for the victim to checkpoint under the load.
        let started = Instant::now();
        wait_for_writes(&acknowledged, 50).await;
        while started.elapsed() < 2 * STORE_CHECKPOINT_INTERVAL {
            wait_for_writes(&acknowledged, 10).await;
        }
        cluster.kill9(victim);
        wait_for_writes(&acknowledged, 50).await;
        cluster.restart(victim).await;
        wait_for_writes(&acknowledged, 50).await;
        resumed.push(last_resumed_index(&cluster.node(victim).log()));
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("the writer ran");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert_every_node_holds_all(&cluster, &acknowledged).await;
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
    assert!(
        resumed.iter().all(Option::is_some),
        "every victim resumes from its state file: {resumed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_after_a_deploy_resumes_the_new_plugin_and_keeps_the_old() {
    // Goal: after a hot swap kv_disk → store_faults (which takes over the
    // store), a follower killed with SIGKILL resumes from its state file
    // running store_faults on the same store, and still holds kv_disk for
    // rollback: led by it, a rollback reaches kv_disk's restore (which
    // refuses store_faults' state) instead of finding nothing to go back to.
    let mut cluster = three_kv_disk_nodes().await;
    let leader = cluster.leader_index().await.expect("a leader");
    let follower = (leader + 1) % 3;
    let mut client = cluster.client(leader).await;
    apply_ok(&mut client, kv::put("before", "1")).await;
    let store_faults = plugin("test/store_faults.wasm");
    let deploy = ["plugin", "deploy", &store_faults.to_string_lossy()];
    cluster.cli(leader, &deploy).await.success();
    let put = |key: &str| format!(r#"{{"put":{{"key":"{key}","value":"x"}}}}"#).into_bytes();
    apply_ok(&mut client, put("after")).await;
    let deployed = cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    cluster.kill9(follower);
    cluster.restart(follower).await;
    apply_ok(&mut client, put("restarted")).await;
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    let log = cluster.node(follower).log();
    assert!(!log.contains(REBUILT), "the follower rebuilt its store");
    let resumed = last_resumed_index(&log).expect("the follower resumed");
    assert!(
        resumed >= deployed - 1,
        "resumed at {resumed}, deployed by {deployed}"
    );
    let mut at_follower = cluster.client(follower).await;
    for key in ["before", "after", "restarted"] {
        let query = format!(r#"{{"get":{{"key":"{key}"}}}}"#).into_bytes();
        let answer = kv::query_ok(&mut at_follower, query, Consistency::Stale).await;
        assert!(
            answer["value"].is_string(),
            "{key} on the follower: {answer}"
        );
    }
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
    transfer_leadership(&cluster, leader, follower).await;
    cluster
        .cli(follower, &["plugin", "rollback"])
        .await
        .failure(exit::REJECTED, &["running plugin stays"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_joined_by_snapshot_resumes_from_the_installed_store() {
    // Goal: a node that caught up by installing a snapshot (the founders
    // purged their logs) checkpoints the installed store, so when killed
    // with SIGKILL it resumes from it rather than rebuilding, and ends with
    // every key and the founders' applied digest.
    let mut cluster = three_kv_disk_nodes_with(snapshotting).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let mut client = cluster.client(leader).await;
    let mut acknowledged = Acknowledged::new();
    for number in 0..150 {
        let (key, value) = (format!("old-{number:04}"), format!("{number}"));
        apply_ok(&mut client, kv::put(&key, &value)).await;
        acknowledged.insert(key, value);
    }
    for n in 0..3 {
        cluster.cli(n, &["snapshot"]).await.success();
    }
    let joiner = cluster.start_joining(0, snapshotting(4)).await;
    cluster.wait_for_voters(4, MEMBERSHIP_TIMEOUT).await;
    let installed = cluster.status(joiner).await["snapshot_index"]
        .as_u64()
        .expect("snapshot_index");
    assert!(
        installed >= 100,
        "the joiner caught up by snapshot at {installed}"
    );
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    cluster.kill9(joiner);
    cluster.restart(joiner).await;
    let log = cluster.node(joiner).log();
    assert!(!log.contains(REBUILT), "the joiner rebuilt its store");
    let resumed = last_resumed_index(&log).expect("the joiner resumed");
    assert!(
        resumed >= installed,
        "resumed at {resumed}, installed {installed}"
    );
    assert_every_node_holds_all(&cluster, &acknowledged).await;
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
}

/// What a node logs when a snapshot stream's first chunk is accepted...
const RECEIVING: &str = "receiving a snapshot";

/// ...and when the whole snapshot arrived and is being installed.
const INSTALLING: &str = "installing a received snapshot";

/// Values of the state the cut transfers carry: large enough that
/// receiving and installing take a while, so the kill lands inside them.
const TRANSFER_VALUE_BYTES: usize = 64 * 1024;
const TRANSFER_KEYS: usize = 384;

/// How often the joiner's log is read for the line to kill at: far below
/// the time a transfer of the state above takes.
const CUT_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// How long a kill waits for the fresh state file an install fills.
const FRESH_FILE_WAIT: Duration = Duration::from_secs(5);

/// Kill node `n` with SIGKILL as soon as its log holds `line` more often
/// than `seen` times (and, `until_fresh_file`, a fresh state file is in its
/// data dir); returns whether a fresh (not yet promoted) state file was
/// there at that moment.
async fn kill_at(
    cluster: &mut TestCluster,
    n: usize,
    line: &str,
    seen: usize,
    until_fresh_file: bool,
) -> bool {
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    while cluster.node(n).log().matches(line).count() <= seen {
        assert!(Instant::now() < deadline, "node {n} never logged {line:?}");
        tokio::time::sleep(CUT_POLL_INTERVAL).await;
    }
    if until_fresh_file {
        // Installing fills a fresh state file before it takes over: kill
        // while it is being filled, if the poll sees it in time.
        let deadline = Instant::now() + FRESH_FILE_WAIT;
        while fresh_state_files(&cluster.node(n).data_dir()).is_empty() && Instant::now() < deadline
        {
            tokio::time::sleep(CUT_POLL_INTERVAL).await;
        }
    }
    cluster.kill9(n);
    !fresh_state_files(&cluster.node(n).data_dir()).is_empty()
}

/// State files in `dir` (and below) other than the node's state file: a
/// store being filled that no runtime has taken over yet.
fn fresh_state_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                pending.push(path);
            } else if name.starts_with("plugin-store-") && name != "plugin-store-state.redb" {
                found.push(path);
            }
        }
    }
    found
}

/// Every running node holds every one of `expected`, read key by key (the
/// values are too large for a scan's answer).
async fn assert_every_node_holds_each(cluster: &TestCluster, expected: &Acknowledged) {
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    for n in cluster.running() {
        let mut client = cluster.client(n).await;
        for (key, value) in expected {
            let held = kv::get_value(&mut client, key, Consistency::Stale).await;
            assert!(held.as_ref() == Some(value), "node {n} lost {key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_transfer_cut_by_kill_9_leaves_no_half_installed_store() {
    // Goal: a new node killed with SIGKILL while it receives the founders'
    // snapshot, and again while it installs one, starts over cleanly each
    // time: no half-filled state file survives, and it ends with every key
    // and the founders' applied digest.
    let mut cluster = three_kv_disk_nodes_with(snapshotting).await;
    let leader = cluster.leader_index().await.expect("a leader");
    let mut client = cluster.client(leader).await;
    let mut acknowledged = Acknowledged::new();
    for number in 0..TRANSFER_KEYS {
        let key = format!("big-{number:04}");
        let value = format!("{number:04}{}", "v".repeat(TRANSFER_VALUE_BYTES));
        apply_ok(&mut client, kv::put(&key, &value)).await;
        acknowledged.insert(key, value);
    }
    for n in 0..3 {
        cluster.cli(n, &["snapshot"]).await.success();
    }
    let joiner = cluster.add_node(snapshotting(4));
    cluster.set_join(joiner, &[0]);
    cluster.restart_without_waiting(joiner).await;
    kill_at(&mut cluster, joiner, RECEIVING, 0, false).await;
    cluster.restart_without_waiting(joiner).await;
    let installs_before = cluster.node(joiner).log().matches(INSTALLING).count();
    let cut_mid_install = kill_at(&mut cluster, joiner, INSTALLING, installs_before, true).await;
    cluster.restart(joiner).await;
    cluster.wait_for_voters(4, MEMBERSHIP_TIMEOUT).await;
    assert_every_node_holds_each(&cluster, &acknowledged).await;
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
    let left = fresh_state_files(&cluster.node(joiner).data_dir());
    assert!(left.is_empty(), "half-filled state files left: {left:?}");
    assert!(
        cut_mid_install,
        "the second kill came after the install had finished"
    );
}
