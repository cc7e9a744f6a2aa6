//! Goal: per-key versions in every command and query; v1 (`kv`) clients see
//! exactly the answers they saw before; a snapshot written by the real v1
//! crate restores with every key at version 1; v2 snapshots are canonical and
//! round-trip; unknown or newer formats are refused, also by v1.

use super::*;
use clusterhost_sdk::testing::Harness;
use serde_json::{Value, json};

fn put(kv: &mut Harness<Kv>, key: &str, value: &str) -> Value {
    kv.apply(&json!({"put": {"key": key, "value": value}}))
        .unwrap()
}

fn version(kv: &Harness<Kv>, key: &str) -> Value {
    kv.query(&json!({"version": {"key": key}})).unwrap()
}

#[test]
fn put_and_delete_count_versions() {
    let mut kv = Harness::<Kv>::new();
    assert_eq!(put(&mut kv, "a", "1"), json!({"prev": null, "version": 1}));
    assert_eq!(put(&mut kv, "a", "2"), json!({"prev": "1", "version": 2}));
    assert_eq!(put(&mut kv, "a", "2"), json!({"prev": "2", "version": 3}));
    assert_eq!(
        kv.query(&json!({"get": {"key": "a"}})),
        Ok(json!({"value": "2", "version": 3}))
    );
    assert_eq!(version(&kv, "a"), json!({"version": 3}));
    assert_eq!(
        kv.apply(&json!({"delete": {"key": "a"}})),
        Ok(json!({"prev": "2"}))
    );
    assert_eq!(version(&kv, "a"), json!({"version": null}));
    assert_eq!(
        kv.query(&json!({"get": {"key": "a"}})),
        Ok(json!({"value": null, "version": null}))
    );
    // Deleting forgets the version: a key created again starts over.
    assert_eq!(put(&mut kv, "a", "3"), json!({"prev": null, "version": 1}));
}

#[test]
fn compare_and_swap_counts_only_successful_writes() {
    let mut kv = Harness::<Kv>::new();
    let create = json!({"cas": {"key": "k", "expected": null, "value": "v1"}});
    assert_eq!(
        kv.apply(&create),
        Ok(json!({"ok": true, "current": "v1", "version": 1}))
    );
    assert_eq!(
        kv.apply(&create),
        Ok(json!({"ok": false, "current": "v1", "version": 1}))
    );
    let wrong = json!({"cas": {"key": "k", "expected": "nope", "value": "v2"}});
    assert_eq!(
        kv.apply(&wrong),
        Ok(json!({"ok": false, "current": "v1", "version": 1}))
    );
    let right = json!({"cas": {"key": "k", "expected": "v1", "value": "v2"}});
    assert_eq!(
        kv.apply(&right),
        Ok(json!({"ok": true, "current": "v2", "version": 2}))
    );
    assert_eq!(put(&mut kv, "k", "v3"), json!({"prev": "v2", "version": 3}));
    let missing = json!({"cas": {"key": "gone", "expected": "x", "value": "y"}});
    assert_eq!(
        kv.apply(&missing),
        Ok(json!({"ok": false, "current": null, "version": null}))
    );
}

#[test]
fn scan_is_unchanged_from_v1() {
    // The scan limits are part of v1's contract, so v2 keeps them.
    assert_eq!(SCAN_LIMIT_DEFAULT, kv::SCAN_LIMIT_DEFAULT);
    assert_eq!(SCAN_LIMIT_MAX, kv::SCAN_LIMIT_MAX);
    let mut v1 = Harness::<kv::Kv>::new();
    let mut v2 = Harness::<Kv>::new();
    let named = ["b/2", "a", "b/1", "b", "c", "b/3", "b/1"].map(String::from);
    let numbered = (0..SCAN_LIMIT_DEFAULT + 5).map(|number| format!("{number:05}"));
    for key in named.into_iter().chain(numbered) {
        let put = json!({"put": {"key": key, "value": key.to_uppercase()}});
        v1.apply(&put).unwrap();
        v2.apply(&put).unwrap();
    }
    let scans = [
        json!({}),
        json!({"prefix": "b/"}),
        json!({"prefix": "b", "limit": 2}),
        json!({"prefix": "z"}),
        json!({"limit": SCAN_LIMIT_MAX}),
        json!({"limit": SCAN_LIMIT_MAX + 1}),
    ];
    for scan in scans {
        let query = json!({ "scan": scan });
        assert_eq!(v2.query(&query), v1.query(&query), "{query}");
    }
}

#[test]
fn malformed_requests_are_rejected_without_change() {
    let mut kv = Harness::<Kv>::new();
    put(&mut kv, "a", "1");
    let bad: [&[u8]; 5] = [
        b"{\"put\":{\"key\":\"a\"}}",
        b"{\"put\":{\"key\":\"a\",\"value\":\"x\",\"version\":7}}",
        b"{\"drop\":{}}",
        b"[1,2",
        b"",
    ];
    for command in bad {
        let error = kv.apply_raw(command).unwrap_err();
        assert!(error.starts_with("malformed command"), "{error}");
    }
    for query in [json!({"version": {}}), json!("version"), json!("plugin")] {
        let error = kv.query(&query).unwrap_err();
        assert!(error.starts_with("malformed query"), "{error}");
    }
    assert_eq!(version(&kv, "a"), json!({"version": 1}));
}

#[test]
fn plugin_version_names_this_build() {
    let kv = Harness::<Kv>::new();
    assert_eq!(kv.query(&"plugin_version"), Ok(json!("kv/2")));
}

#[test]
fn a_version_that_would_overflow_is_refused_without_change() {
    let snapshot = format!(r#"{{"version":2,"entries":[["a","1",{}]]}}"#, u64::MAX);
    let mut kv = Harness::<Kv>::with_machine(Kv::restore(snapshot.as_bytes()).unwrap());
    let error = kv
        .apply(&json!({"put": {"key": "a", "value": "2"}}))
        .unwrap_err();
    assert!(error.contains("would overflow"), "{error}");
    let cas = json!({"cas": {"key": "a", "expected": "1", "value": "2"}});
    assert!(kv.apply(&cas).unwrap_err().contains("would overflow"));
    assert_eq!(kv.snapshot(), snapshot.as_bytes());
}

/// Keep only the fields a v1 response has, so v1 and v2 answers compare.
fn v1_fields(v2: &Value, v1: &Value) -> Value {
    match (v2, v1) {
        (Value::Object(v2), Value::Object(v1)) => Value::Object(
            v2.iter()
                .filter(|(field, _)| v1.contains_key(*field))
                .map(|(field, value)| (field.clone(), value.clone()))
                .collect(),
        ),
        _ => v2.clone(),
    }
}

#[test]
fn v1_clients_get_identical_answers() {
    let mut v1 = Harness::<kv::Kv>::new();
    let mut v2 = Harness::<Kv>::new();
    let commands = [
        json!({"put": {"key": "a", "value": "1"}}),
        json!({"put": {"key": "a", "value": "2"}}),
        json!({"cas": {"key": "a", "expected": "2", "value": "3"}}),
        json!({"cas": {"key": "a", "expected": "2", "value": "4"}}),
        json!({"cas": {"key": "b", "value": "x"}}),
        json!({"cas": {"key": "c", "expected": "x", "value": "y"}}),
        json!({"delete": {"key": "b"}}),
        json!({"delete": {"key": "b"}}),
        json!({"put": {"key": "b/1", "value": "z"}}),
    ];
    let queries = [
        json!({"get": {"key": "a"}}),
        json!({"get": {"key": "b"}}),
        json!({"scan": {}}),
        json!({"scan": {"prefix": "b", "limit": 1}}),
    ];
    for command in &commands {
        let old = v1.apply(command).unwrap();
        let new = v2.apply(command).unwrap();
        assert_eq!(v1_fields(&new, &old), old, "{command}");
        // Only `delete` answers exactly as before; the rest add a version.
        assert_eq!(new == old, command.get("delete").is_some(), "{command}");
    }
    for query in &queries {
        let old = v1.query(query).unwrap();
        let new = v2.query(query).unwrap();
        assert_eq!(v1_fields(&new, &old), old, "{query}");
    }
}

/// A snapshot written by kv v1, kept as bytes: if kv ever wrote something
/// else, the fixture (not just the live crate) still pins the old format.
const V1_SNAPSHOT: &[u8] = br#"{"version":1,"entries":[["a","1"],["b","2"],["c/d","3"]]}"#;

#[test]
fn restores_a_snapshot_written_by_kv_v1() {
    let mut v1 = Harness::<kv::Kv>::new();
    for (key, value) in [("c/d", "3"), ("a", "0"), ("b", "2"), ("x", "9")] {
        v1.apply(&json!({"put": {"key": key, "value": value}}))
            .unwrap();
    }
    v1.apply(&json!({"put": {"key": "a", "value": "1"}}))
        .unwrap();
    v1.apply(&json!({"delete": {"key": "x"}})).unwrap();
    let snapshot = v1.snapshot();
    assert_eq!(
        snapshot, V1_SNAPSHOT,
        "kv v1 still writes the fixture format"
    );

    // What the host does on a hot swap: the new plugin restores the old bytes.
    let mut v2 = Harness::<Kv>::new();
    v2.restore(&snapshot).unwrap();
    assert_eq!(v2.query(&"plugin_version"), Ok(json!("kv/2")));
    for key in ["a", "b", "c/d"] {
        assert_eq!(version(&v2, key), json!({"version": 1}), "{key}");
    }
    assert_eq!(
        v2.query(&json!({"get": {"key": "a"}})),
        Ok(json!({"value": "1", "version": 1}))
    );
    assert_eq!(
        v2.query(&json!({"scan": {}})),
        v1.query(&json!({"scan": {}}))
    );
    // The migrated state is written in the new format from now on.
    assert_eq!(
        v2.snapshot(),
        br#"{"version":2,"entries":[["a","1",1],["b","2",1],["c/d","3",1]]}"#
    );
    assert_eq!(put(&mut v2, "a", "5"), json!({"prev": "1", "version": 2}));
}

#[test]
fn snapshot_is_canonical_and_roundtrips() {
    let mut first = Harness::<Kv>::new();
    let mut second = Harness::<Kv>::new();
    for (key, value) in [("b", "2"), ("a", "0"), ("a", "1"), ("c", "3")] {
        put(&mut first, key, value);
    }
    for (key, value) in [("c", "3"), ("a", "0"), ("x", "0"), ("b", "2"), ("a", "1")] {
        put(&mut second, key, value);
    }
    second.apply(&json!({"delete": {"key": "x"}})).unwrap();
    assert_eq!(
        first.snapshot(),
        second.snapshot(),
        "equal states, equal bytes"
    );
    assert_eq!(
        first.snapshot(),
        br#"{"version":2,"entries":[["a","1",2],["b","2",1],["c","3",1]]}"#
    );
    let restored = first.assert_snapshot_roundtrip_with_queries(&[
        json!({"get": {"key": "a"}}),
        json!({"version": {"key": "a"}}),
        json!({"scan": {"prefix": ""}}),
    ]);
    assert_eq!(&restored, first.machine());
    // A restored v1 snapshot round-trips as v2 too.
    Harness::<Kv>::with_machine(Kv::restore(V1_SNAPSHOT).unwrap()).assert_snapshot_roundtrip();
}

#[test]
fn restore_rejects_foreign_snapshots() {
    let mut kv = Harness::<Kv>::new();
    put(&mut kv, "keep", "me");
    let cases: [(&[u8], &str); 9] = [
        (
            br#"{"version":3,"entries":[]}"#,
            "snapshot version 3 is newer than this plugin understands",
        ),
        (
            br#"{"version":0,"entries":[]}"#,
            "unsupported kv snapshot version 0",
        ),
        (
            br#"{"version":2,"entries":[["b","1",1],["a","2",1]]}"#,
            "not strictly ascending",
        ),
        (
            br#"{"version":1,"entries":[["a","1"],["a","2"]]}"#,
            "not strictly ascending",
        ),
        (br#"{"version":2,"entries":[["a","1",0]]}"#, "has version 0"),
        // Each version's layout is checked: no guessing across formats.
        (
            br#"{"version":2,"entries":[["a","1"]]}"#,
            "malformed kv snapshot",
        ),
        (
            br#"{"version":1,"entries":[["a","1",1]]}"#,
            "malformed kv snapshot",
        ),
        (br#"{"entries":[]}"#, "malformed kv snapshot"),
        (b"{", "malformed kv snapshot"),
    ];
    for (snapshot, expected) in cases {
        let error = kv.restore(snapshot).unwrap_err();
        assert!(error.contains(expected), "{error}");
    }
    // A refused restore leaves the running instance alone.
    assert_eq!(version(&kv, "keep"), json!({"version": 1}));
}

#[test]
fn kv_v1_refuses_a_v2_snapshot() {
    // A rollback from kv_v2 to kv must fail cleanly, leaving v2 running.
    let mut v2 = Harness::<Kv>::new();
    put(&mut v2, "a", "1");
    let error = kv::Kv::restore(&v2.snapshot()).unwrap_err();
    assert_eq!(
        error,
        "snapshot version 2 is newer than this plugin understands"
    );
}
