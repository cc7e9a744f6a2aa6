//! A deploy `kv → kv_disk` with real processes: kv's pairs move into the
//! host store in bounded steps (`kv_disk`'s pending pairs), every key reads
//! back on every node before, during and after, writes and deletes made
//! during the migration win, a node restarted mid-migration ends identical,
//! and queries during the migration see the state after one entry, never a
//! mix of two.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterhost_client::Client;
use clusterhost_client::proto::Consistency;
use clusterhost_tests::kv::{self, apply_ok, put_concurrently, query_ok, scan_all};
use clusterhost_tests::languages::deploy;
use clusterhost_tests::paths::plugin;
use clusterhost_tests::scenario::{MEMBERSHIP_TIMEOUT, fast, three_nodes};
use clusterhost_tests::{NodeOptions, TestCluster, assert_replicas_agree, wait_for};
use serde_json::json;

/// kv_disk's `STEP_PAIRS_MAX`: pairs one entry moves into the store.
const STEP_PAIRS: usize = 128;
/// Clients loading kv at once.
const WRITERS: usize = 4;
/// How long replicas may take to report the same applied digest.
const DIGEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Log entries a snapshot keeps behind it: few, so a joiner must install
/// the snapshot.
const LOG_KEEP: u64 = 10;
/// How long every reader may take to see a step's outcome.
const READER_TIMEOUT: Duration = Duration::from_secs(20);

/// `count` pairs `prefix-NNNN` with values of up to `value_bytes` bytes.
fn pairs(prefix: &str, count: usize, value_bytes: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|number| {
            let filler = "v".repeat(number * 7 % value_bytes.max(1));
            (
                format!("{prefix}-{number:04}"),
                format!("{number}:{filler}"),
            )
        })
        .collect()
}

/// Three kv nodes (each with `options`) holding `loaded`, then a deploy of
/// kv_disk; every node answers as kv_disk/2 on return.
async fn kv_swapped_to_kv_disk(loaded: &[(String, String)], options: NodeOptions) -> TestCluster {
    let cluster = three_nodes(options).await;
    let mut clients = Vec::new();
    for _ in 0..WRITERS {
        clients.push(cluster.client(0).await);
    }
    put_concurrently(clients, loaded).await;
    deploy(&cluster, 1, &plugin("kv_disk.wasm"), "kv_disk/2").await;
    cluster
}

/// kv_disk's `"migration"` answer on a client: (pending, stored).
async fn migration(client: &mut Client, consistency: Consistency) -> (u64, u64) {
    let answer = query_ok(client, br#""migration""#.to_vec(), consistency).await;
    let count = |field: &str| {
        answer[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field} in {answer}"))
    };
    (count("pending"), count("stored"))
}

/// Every running node, caught up, holds exactly `expected` (read through
/// kv_disk's merged scans) with every key in exactly one place; the
/// pending counts, one per node (all equal).
async fn every_node_holds(cluster: &TestCluster, expected: &BTreeMap<String, String>) -> u64 {
    cluster.wait_caught_up(MEMBERSHIP_TIMEOUT).await;
    let mut pendings = BTreeSet::new();
    for n in cluster.running() {
        let mut client = cluster.client(n).await;
        let state = scan_all(&mut client, "", Consistency::Stale).await;
        assert!(
            &state == expected,
            "node {n} holds {} keys, {} expected; first difference: {:?}",
            state.len(),
            expected.len(),
            first_difference(&state, expected)
        );
        let (pending, stored) = migration(&mut client, Consistency::Stale).await;
        assert_eq!(pending + stored, expected.len() as u64, "node {n}");
        pendings.insert(pending);
    }
    assert_eq!(
        pendings.len(),
        1,
        "nodes differ in pending pairs: {pendings:?}"
    );
    pendings.pop_first().unwrap_or_default()
}

fn first_difference(
    state: &BTreeMap<String, String>,
    expected: &BTreeMap<String, String>,
) -> Option<(String, Option<usize>, Option<usize>)> {
    let keys: BTreeSet<&String> = state.keys().chain(expected.keys()).collect();
    keys.into_iter()
        .find(|key| state.get(*key) != expected.get(*key))
        .map(|key| {
            let length = |map: &BTreeMap<String, String>| map.get(key).map(String::len);
            (key.clone(), length(state), length(expected))
        })
}

/// Send `"migrate"` through `client` until nothing is pending; how many.
async fn migrate_to_the_end(client: &mut Client, keys: usize) -> usize {
    for steps in 1..=keys / STEP_PAIRS + 2 {
        let (_, answer) = apply_ok(client, br#""migrate""#.to_vec()).await;
        if answer == json!({"pending": 0}) {
            return steps;
        }
    }
    panic!(
        "{keys} keys still pending after {} steps",
        keys / STEP_PAIRS + 2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_to_kv_disk_moves_every_key_and_later_writes_win_on_every_node() {
    // Goal: after the swap every key reads back on every node while all are
    // pending, while some are, and once none is; a put, delete and cas on
    // pending keys win over their old values; a node killed and restarted
    // from a mid-migration snapshot, and one joining by such a snapshot,
    // end identical; one applied digest.
    const KEYS: usize = 1000;
    let loaded = pairs("m", KEYS, 300);
    let options = NodeOptions {
        log_keep: Some(LOG_KEEP),
        ..fast(0)
    };
    let mut cluster = kv_swapped_to_kv_disk(&loaded, options.clone()).await;
    let mut expected: BTreeMap<String, String> = loaded.iter().cloned().collect();
    assert_eq!(every_node_holds(&cluster, &expected).await, KEYS as u64);

    // The last keys move last, so these hit pending ones.
    let mut writer = cluster.client(1).await;
    apply_ok(&mut writer, kv::put("m-0990", "new")).await;
    apply_ok(
        &mut writer,
        json!({"delete": {"key": "m-0991"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    let cas = json!({"cas": {"key": "m-0992", "expected": expected["m-0992"], "value": "c"}});
    let (_, swapped) = apply_ok(&mut writer, cas.to_string().into_bytes()).await;
    assert_eq!(swapped, json!({"ok": true, "current": "c"}));
    apply_ok(&mut writer, kv::put("m-new", "x")).await;
    expected.insert("m-0990".into(), "new".into());
    expected.remove("m-0991");
    expected.insert("m-0992".into(), "c".into());
    expected.insert("m-new".into(), "x".into());
    let pending = every_node_holds(&cluster, &expected).await;
    assert!(
        pending > 0 && pending < KEYS as u64,
        "mid-migration: {pending}"
    );

    // A follower's newest snapshot carries pending pairs; it restarts from
    // it (a follower, so the writes go on through the same leader).
    let leader = cluster.leader_index().await.expect("a leader");
    let victim = (leader + 1) % 3;
    cluster.cli(victim, &["snapshot"]).await.success();
    cluster.kill9(victim);
    let mut writer = cluster.client(leader).await;
    apply_ok(&mut writer, kv::put("m-0993", "after-kill")).await;
    apply_ok(&mut writer, br#""migrate""#.to_vec()).await;
    expected.insert("m-0993".into(), "after-kill".into());
    cluster.restart(victim).await;
    assert!(every_node_holds(&cluster, &expected).await > 0);

    // A node joining now can only catch up from the leader's snapshot,
    // taken mid-migration.
    cluster.cli(leader, &["snapshot"]).await.success();
    let snapshot_index = cluster.status(leader).await["snapshot_index"]
        .as_u64()
        .expect("the leader's snapshot_index");
    let joiner = cluster
        .start_joining(
            leader,
            NodeOptions {
                node_id: Some(4),
                ..options
            },
        )
        .await;
    cluster.wait_for_voters(4, MEMBERSHIP_TIMEOUT).await;
    let joined = cluster.status(joiner).await["snapshot_index"].as_u64();
    assert!(
        joined.is_some_and(|joined| joined >= snapshot_index),
        "the joiner installed no snapshot: {joined:?}"
    );
    assert!(every_node_holds(&cluster, &expected).await > 0);

    migrate_to_the_end(&mut writer, KEYS).await;
    assert_eq!(every_node_holds(&cluster, &expected).await, 0);
    assert_replicas_agree(&cluster).await;
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
}

/// What one reader saw: every pending count, and every answer that was not
/// the state after some entry.
#[derive(Default)]
struct Seen {
    pending: BTreeSet<u64>,
    /// The first [`MIXED_KEPT`] of them.
    mixed: Vec<String>,
    mixed_count: usize,
}

/// Mixed answers a reader keeps for the failure message.
const MIXED_KEPT: usize = 10;

impl Seen {
    fn mixed(&mut self, what: String) {
        self.mixed_count += 1;
        if self.mixed.len() < MIXED_KEPT {
            self.mixed.push(what);
        }
    }
}

/// Poll node `client`'s `"migration"` and one window of keys until `stop`.
/// With no writes but migration steps, the state after every entry has
/// each of the `keys` pairs in exactly one place (pending + stored = keys)
/// and the window reads back whole; a query that saw one entry's store and
/// another's memory breaks one or the other.
async fn read_until(
    mut client: Client,
    consistency: Consistency,
    keys: u64,
    window: BTreeMap<String, String>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    // Bounded by the driver's own bounds; this one only against a hang.
    for _ in 0..1_000_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (pending, stored) = migration(&mut client, consistency).await;
        let items = query_ok(&mut client, kv::scan("q-00", 1000), consistency).await;
        let mut seen = seen.lock().expect("seen lock");
        if pending + stored != keys {
            seen.mixed(format!("pending {pending} + stored {stored}"));
        }
        let read: BTreeMap<String, String> = items["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| Some((item[0].as_str()?.into(), item[1].as_str()?.into())))
            .collect();
        if read != window {
            seen.mixed(format!(
                "window of {} keys at {pending} pending",
                read.len()
            ));
        }
        seen.pending.insert(pending);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_during_a_migration_see_one_entry_or_the_next_never_a_mix() {
    // Goal: readers on every node (stale) and on the leader (linearizable)
    // poll while "migrate" entries move 3,000 keys over 24 entries; each
    // step is seen by every reader before the next, and no answer mixes
    // the store of one entry with the pending pairs of another.
    const KEYS: usize = 3000;
    let loaded = pairs("q", KEYS, 600);
    let cluster = kv_swapped_to_kv_disk(&loaded, fast(0)).await;
    let window: BTreeMap<String, String> = loaded
        .iter()
        .filter(|(key, _)| key.starts_with("q-00"))
        .cloned()
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let leader = cluster.leader_index().await.expect("a leader");
    let mut readers = Vec::new();
    let mut seens = Vec::new();
    let stale = cluster
        .running()
        .into_iter()
        .map(|n| (n, Consistency::Stale));
    for (n, consistency) in stale.chain([(leader, Consistency::Linearizable)]) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let client = cluster.client(n).await;
        let task = read_until(
            client,
            consistency,
            KEYS as u64,
            window.clone(),
            stop.clone(),
            seen.clone(),
        );
        readers.push(tokio::spawn(task));
        seens.push(seen);
    }
    let mut driver = cluster.client(leader).await;
    let mut steps = 0;
    for _ in 0..KEYS / STEP_PAIRS + 2 {
        let (_, answer) = apply_ok(&mut driver, br#""migrate""#.to_vec()).await;
        let pending = answer["pending"].as_u64().expect("pending");
        steps += 1;
        wait_for("every reader to see the step", READER_TIMEOUT, || async {
            let behind = seens
                .iter()
                .position(|seen| !seen.lock().expect("seen lock").pending.contains(&pending));
            behind.map_or(Ok(()), |reader| Err(format!("reader {reader}")))
        })
        .await;
        if pending == 0 {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.expect("a reader task");
    }
    for (reader, seen) in seens.iter().enumerate() {
        let seen = seen.lock().expect("seen lock");
        assert!(
            seen.mixed_count == 0,
            "reader {reader} saw {} mixed states, first: {:?}",
            seen.mixed_count,
            seen.mixed
        );
        assert!(
            seen.pending.len() >= steps,
            "reader {reader} saw {:?}",
            seen.pending
        );
    }
    assert_eq!(steps, KEYS.div_ceil(STEP_PAIRS));
    cluster.wait_for_same_applied_digest(DIGEST_TIMEOUT).await;
}
