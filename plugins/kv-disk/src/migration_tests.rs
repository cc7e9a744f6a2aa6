//! Goal: a deploy `kv → kv_disk` moves kv's pairs into the store in bounded
//! steps; every read sees the same state before, during and after; writes
//! and deletes after the swap win; a replica restored from a snapshot taken
//! mid-migration goes on identically; nothing a step cannot store is
//! taken over.

use super::pending::{STEP_BYTES_MAX, STEP_PAIRS_MAX};
use super::*;
use clusterhost_sdk::testing::Harness;
use kv::Kv;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `kv_disk` restored from the snapshot of a kv holding `pairs`, as a
/// deploy hands it over (the store is empty under kv).
fn swapped_from_kv(pairs: &[(String, String)]) -> Harness<KvDisk> {
    let mut kv = Harness::<Kv>::new();
    for (key, value) in pairs {
        kv.apply(&json!({"put": {"key": key, "value": value}}))
            .unwrap();
    }
    let mut disk = Harness::<KvDisk>::new();
    disk.restore(&kv.snapshot()).expect("kv_disk takes over kv");
    disk
}

fn numbered(count: usize, value_bytes: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|number| {
            let value = format!("{number}:{}", "v".repeat(value_bytes));
            (format!("k{number:05}"), value)
        })
        .collect()
}

fn migration(disk: &Harness<KvDisk>) -> (u64, u64) {
    let answer = disk.query(&"migration").unwrap();
    let count = |field: &str| answer[field].as_u64().expect("a count");
    (count("pending"), count("stored"))
}

/// Every key under `prefix` with its value, through `scan` pages of
/// `SCAN_LIMIT_MAX` split by key (the keys here are `kNNNNN`).
fn read_all(disk: &Harness<KvDisk>) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for thousands in 0..100 {
        let prefix = format!("k{thousands:02}");
        let page = disk.query(&json!({"scan": {"prefix": prefix, "limit": SCAN_LIMIT_MAX}}));
        for item in page.unwrap()["items"].as_array().unwrap() {
            all.insert(
                item[0].as_str().unwrap().into(),
                item[1].as_str().unwrap().into(),
            );
        }
    }
    all
}

fn get(disk: &Harness<KvDisk>, key: &str) -> Value {
    disk.query(&json!({"get": {"key": key}})).unwrap()["value"].clone()
}

#[test]
fn each_command_moves_a_bounded_step_and_reads_never_change() {
    let pairs = numbered(STEP_PAIRS_MAX * 3 + 7, 10);
    let expected: BTreeMap<String, String> = pairs.iter().cloned().collect();
    let mut disk = swapped_from_kv(&pairs);
    let total = pairs.len() as u64;
    assert_eq!(migration(&disk), (total, 0));
    assert_eq!(read_all(&disk), expected, "before any step");
    let mut steps = 0;
    while migration(&disk).0 > 0 {
        let before = migration(&disk);
        let answer = disk.apply(&"migrate").unwrap();
        let after = migration(&disk);
        assert_eq!(answer, json!({"pending": after.0}));
        assert_eq!(before.0 - after.0, (STEP_PAIRS_MAX as u64).min(before.0));
        assert_eq!(after.0 + after.1, total, "every key in exactly one place");
        assert_eq!(read_all(&disk), expected, "after step {steps}");
        steps += 1;
        assert!(steps <= 4, "the migration does not end");
    }
    assert_eq!(steps, 4);
    assert_eq!(disk.snapshot(), br#"{"version":1}"#, "settled again");
    assert_eq!(disk.store_contents().len(), pairs.len());
}

#[test]
fn a_step_moves_about_its_byte_bound_and_always_one_pair() {
    let value_bytes = STEP_BYTES_MAX / 3;
    let mut disk = swapped_from_kv(&numbered(10, value_bytes));
    disk.apply(&"migrate").unwrap();
    assert_eq!(
        migration(&disk),
        (8, 2),
        "a third pair would pass the bound"
    );
    let huge = "x".repeat(clusterhost_sdk::store::VALUE_BYTES_MAX);
    let mut disk = swapped_from_kv(&[("a".into(), huge.clone()), ("b".into(), huge)]);
    disk.apply(&"migrate").unwrap();
    assert_eq!(migration(&disk), (1, 1), "one pair moves whatever its size");
}

#[test]
fn writes_and_deletes_after_the_swap_win_over_pending_values() {
    let pairs = numbered(STEP_PAIRS_MAX * 2, 4);
    let mut disk = swapped_from_kv(&pairs);
    let last = |n: usize| pairs[pairs.len() - n].0.clone();
    let put = json!({"put": {"key": last(1), "value": "new"}});
    assert_eq!(
        disk.apply(&put),
        Ok(json!({"prev": pairs[pairs.len() - 1].1}))
    );
    let delete = json!({"delete": {"key": last(2)}});
    assert_eq!(
        disk.apply(&delete),
        Ok(json!({"prev": pairs[pairs.len() - 2].1}))
    );
    let cas = json!({"cas": {"key": last(3), "expected": pairs[pairs.len() - 3].1, "value": "c"}});
    assert_eq!(disk.apply(&cas), Ok(json!({"ok": true, "current": "c"})));
    let refused = json!({"put": {"key": last(4), "value": "x".repeat(clusterhost_sdk::store::VALUE_BYTES_MAX + 1)}});
    assert!(disk.apply(&refused).is_err());
    for _ in 0..4 {
        disk.apply(&"migrate").unwrap();
    }
    assert_eq!(migration(&disk).0, 0);
    assert_eq!(get(&disk, &last(1)), json!("new"));
    assert_eq!(
        get(&disk, &last(2)),
        Value::Null,
        "a deleted key stays deleted"
    );
    assert_eq!(get(&disk, &last(3)), json!("c"));
    assert_eq!(
        get(&disk, &last(4)),
        json!(pairs[pairs.len() - 4].1),
        "a refused put loses nothing"
    );
    assert_eq!(read_all(&disk).len(), pairs.len() - 1);
}

#[test]
fn scans_merge_the_store_and_the_pending_pairs_in_key_order() {
    let pairs = numbered(STEP_PAIRS_MAX + 10, 1);
    let mut disk = swapped_from_kv(&pairs);
    disk.apply(&json!({"put": {"key": "k00000", "value": "changed"}}))
        .unwrap();
    disk.apply(&json!({"put": {"key": "k00127a", "value": "between"}}))
        .unwrap();
    let page = disk
        .query(&json!({"scan": {"prefix": "k0012", "limit": 12}}))
        .unwrap();
    let keys: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[0].as_str().unwrap())
        .collect();
    let mut expected: Vec<String> = (120..130).map(|number| format!("k{number:05}")).collect();
    expected.insert(8, "k00127a".into());
    assert_eq!(
        keys,
        expected[..11]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(get(&disk, "k00000"), json!("changed"));
    let first = disk
        .query(&json!({"scan": {"prefix": "k0000", "limit": 2}}))
        .unwrap();
    assert_eq!(
        first["items"],
        json!([["k00000", "changed"], ["k00001", pairs[1].1]])
    );
}

#[test]
fn a_replica_restored_mid_migration_goes_on_identically() {
    let pairs = numbered(STEP_PAIRS_MAX * 3, 6);
    let mut running = swapped_from_kv(&pairs);
    running.apply(&"migrate").unwrap();
    running
        .apply(&json!({"delete": {"key": "k00300"}}))
        .unwrap();
    // A node restarting here gets the store and this snapshot.
    let snapshot = running.snapshot();
    assert!(snapshot.starts_with(br#"{"version":2,"pending":"#));
    let mut restarted = Harness::<KvDisk>::with_machine(KvDisk::restore(&snapshot).unwrap());
    restarted.set_store_contents(running.store_contents());
    let commands = [
        json!({"put": {"key": "k00350", "value": "w"}}),
        json!("migrate"),
        json!({"cas": {"key": "k00001", "expected": null, "value": "no"}}),
        json!("migrate"),
        json!("migrate"),
    ];
    for command in &commands {
        assert_eq!(
            running.apply(command),
            restarted.apply(command),
            "{command}"
        );
        assert_eq!(running.store_contents(), restarted.store_contents());
        assert_eq!(running.snapshot(), restarted.snapshot());
    }
    assert_eq!(migration(&restarted), (0, pairs.len() as u64 - 1));
}

#[test]
fn a_kv_state_the_store_cannot_hold_is_refused_and_kv_keeps_running() {
    let long_key = "k".repeat(clusterhost_sdk::store::KEY_BYTES_MAX + 1);
    let mut disk = Harness::<KvDisk>::new();
    let snapshot =
        serde_json::to_vec(&json!({"version": 1, "entries": [[long_key, "v"]]})).unwrap();
    let error = disk.restore(&snapshot).unwrap_err();
    assert!(error.contains("cannot take over key"), "{error}");
    let old = br#"{"version":1}"#;
    assert_eq!(
        disk.restore(old),
        Ok(()),
        "kv_disk/1's snapshot still restores"
    );
    assert_eq!(migration(&disk), (0, 0));
}
