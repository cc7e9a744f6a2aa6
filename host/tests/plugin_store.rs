//! The plugin store under the runtime, with real components: `kv_disk`
//! (the kv plugin on the store) and the test plugin `store_faults` (writes,
//! then fails in each way an entry can). A trapped entry leaves no trace, a
//! query cannot write, snapshots carry the store, replays see the store as
//! it was, and equal histories give equal write digests.

use clusterhost::limits::{PluginLimits, STORE_CALL_WRITE_BYTES_MAX};
use clusterhost::plugin::{ApplyError, Fault, FsmRuntime, RestoreError};

mod common;

use common::{load, position};

fn apply(runtime: &mut FsmRuntime, index: u64, command: &str) -> Result<Vec<u8>, ApplyError> {
    runtime
        .apply(position(index), command.as_bytes().to_vec())
        .expect("no rebuild failure")
}

fn query(runtime: &mut FsmRuntime, request: &str) -> serde_json::Value {
    let bytes = runtime
        .query(request.as_bytes())
        .expect("no rebuild failure")
        .expect("no fault")
        .expect("query accepted");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn put(key: &str, value: &str) -> String {
    serde_json::json!({"put": {"key": key, "value": value}}).to_string()
}

#[test]
fn plugins_without_the_store_do_not_import_it_and_kv_disk_does() {
    assert!(!load("kv.wasm").uses_store());
    assert!(load("kv_disk.wasm").uses_store());
}

#[test]
fn kv_disk_answers_and_its_snapshot_carries_the_store() {
    let mut runtime = FsmRuntime::new(load("kv_disk.wasm"), PluginLimits::default()).unwrap();
    for index in 1..=20 {
        let response = apply(&mut runtime, index, &put(&format!("k{index:02}"), "v"));
        assert_eq!(response.unwrap(), br#"{"prev":null}"#);
    }
    assert_eq!(
        apply(&mut runtime, 21, &put("k01", "new")).unwrap(),
        br#"{"prev":"v"}"#
    );
    let snapshot = runtime.snapshot().unwrap().unwrap();
    let mut restored = FsmRuntime::from_snapshot(
        load("kv_disk.wasm"),
        PluginLimits::default(),
        position(21),
        snapshot.clone(),
    )
    .unwrap();
    for request in [
        r#"{"get":{"key":"k01"}}"#,
        r#"{"scan":{"prefix":"k1","limit":5}}"#,
    ] {
        assert_eq!(query(&mut restored, request), query(&mut runtime, request));
    }
    assert_eq!(restored.snapshot().unwrap().unwrap(), snapshot);
}

#[test]
fn a_trapped_or_spinning_entry_leaves_no_trace_and_err_keeps_its_writes() {
    let mut runtime =
        FsmRuntime::new(load("test/store_faults.wasm"), PluginLimits::default()).unwrap();
    let put = r#"{"put":{"key":"a","value":"1"}}"#;
    assert_eq!(apply(&mut runtime, 1, put).unwrap(), br#"{"count":1}"#);
    assert!(runtime.last_writes_digest().is_some());
    let trapped = apply(&mut runtime, 2, r#"{"trap":{"key":"t","value":"x"}}"#);
    assert!(
        matches!(trapped, Err(ApplyError::Fault(Fault::Trapped { .. }))),
        "{trapped:?}"
    );
    assert_eq!(runtime.last_writes_digest(), None);
    let spun = apply(&mut runtime, 3, r#"{"spin":{"key":"s","value":"x"}}"#);
    assert!(
        matches!(spun, Err(ApplyError::Fault(Fault::OutOfFuel { .. }))),
        "{spun:?}"
    );
    let failed = apply(&mut runtime, 4, r#"{"fail":{"key":"f","value":"x"}}"#);
    assert!(matches!(failed, Err(ApplyError::Rejected(_))), "{failed:?}");
    assert!(
        runtime.last_writes_digest().is_some(),
        "err keeps its writes"
    );
    for (key, value) in [("a", "1"), ("t", ""), ("s", ""), ("f", "x")] {
        let value = (!value.is_empty()).then_some(value);
        let answer = query(&mut runtime, &format!(r#"{{"get":{{"key":"{key}"}}}}"#));
        assert_eq!(answer, serde_json::json!({ "value": value }), "key {key}");
    }
    assert_eq!(
        query(&mut runtime, r#""count""#),
        serde_json::json!({"count": 2})
    );
    // The rebuilt applier goes on from the store as it was.
    assert_eq!(
        apply(&mut runtime, 5, r#"{"put":{"key":"b","value":"2"}}"#).unwrap(),
        br#"{"count":3}"#
    );
}

#[test]
fn the_store_counts_in_the_state_size_and_in_the_snapshot_bound() {
    // Goal: the state quota and the snapshot bound see the store, not only
    // the plugin's (empty) in-memory part: a store past the bound makes the
    // snapshot fail as too large (as a plugin's own would), and the size
    // reported stays the whole state's between snapshots.
    let limits = PluginLimits {
        snapshot_bytes_max: 64 * 1024,
        ..PluginLimits::default()
    };
    let mut runtime = FsmRuntime::new(load("kv_disk.wasm"), limits).unwrap();
    let value = "x".repeat(10 * 1024);
    for index in 1..=10 {
        apply(&mut runtime, index, &put(&format!("k{index:02}"), &value)).unwrap();
    }
    let refused = runtime.snapshot().unwrap();
    assert!(
        matches!(refused, Err(Fault::OversizedOutput { .. })),
        "{refused:?}"
    );
    let size = runtime.state_size_bytes().expect("a size after a snapshot");
    assert!(size > 100 * 1024, "the store's bytes are counted: {size}");
    apply(&mut runtime, 11, &put("k11", "v")).unwrap();
    assert!(
        runtime
            .state_size_bytes()
            .is_some_and(|after| after >= size),
        "the size does not fall back to the plugin's part alone"
    );
}

#[test]
fn the_state_size_follows_the_store_entry_by_entry() {
    // Goal: the state quota sees the store as it is now, not as of the
    // last snapshot: the size grows and shrinks with every applied entry,
    // from the first one on, and is exactly what the next snapshot holds.
    let mut runtime = FsmRuntime::new(load("kv_disk.wasm"), PluginLimits::default()).unwrap();
    let size = |runtime: &FsmRuntime| runtime.state_size_bytes().expect("a store plugin's size");
    let empty = size(&runtime);
    apply(&mut runtime, 1, &put("k1", &"x".repeat(1000))).unwrap();
    let one = size(&runtime);
    assert!(one >= empty + 1000, "{empty} -> {one}");
    apply(&mut runtime, 2, &put("k2", &"y".repeat(3000))).unwrap();
    apply(&mut runtime, 3, &put("k1", "short")).unwrap();
    let delete = serde_json::json!({"delete": {"key": "k2"}}).to_string();
    apply(&mut runtime, 4, &delete).unwrap();
    let after = size(&runtime);
    assert!(
        after < one,
        "an overwrite and a delete shrink it: {one} -> {after}"
    );
    let snapshot = runtime.snapshot().unwrap().unwrap();
    assert_eq!(
        size(&runtime),
        snapshot.len(),
        "exactly the snapshot's bytes"
    );
    apply(&mut runtime, 5, &put("k3", &"z".repeat(500))).unwrap();
    let grown = size(&runtime);
    assert_eq!(grown, runtime.snapshot().unwrap().unwrap().len());
}

#[test]
fn an_entry_writing_past_the_per_call_bound_traps_and_leaves_nothing() {
    // Goal: an entry's writes wait in host memory, outside the plugin's
    // memory cap, so one call may write at most STORE_CALL_WRITE_BYTES_MAX;
    // past it the call traps (the same on every replica) and its writes
    // vanish, while an entry under the bound keeps them.
    let mut runtime =
        FsmRuntime::new(load("test/store_faults.wasm"), PluginLimits::default()).unwrap();
    let value_bytes = 1024 * 1024;
    let keys_over = STORE_CALL_WRITE_BYTES_MAX / value_bytes + 1;
    let over = format!(r#"{{"fill":{{"keys":{keys_over},"bytes":{value_bytes}}}}}"#);
    let trapped = apply(&mut runtime, 1, &over);
    assert!(
        matches!(&trapped, Err(ApplyError::Fault(Fault::Trapped { .. }))),
        "{trapped:?}"
    );
    assert_eq!(
        query(&mut runtime, r#""count""#),
        serde_json::json!({"count": 0})
    );
    let under = format!(r#"{{"fill":{{"keys":2,"bytes":{value_bytes}}}}}"#);
    assert_eq!(apply(&mut runtime, 2, &under).unwrap(), br#"{"count":2}"#);
}

#[test]
fn a_write_from_a_query_traps_and_changes_nothing() {
    let mut runtime =
        FsmRuntime::new(load("test/store_faults.wasm"), PluginLimits::default()).unwrap();
    let result = runtime
        .query(br#"{"write":{"key":"q"}}"#)
        .expect("no rebuild failure");
    match result {
        Err(Fault::Trapped { message }) => assert!(message.contains("read-only"), "{message}"),
        other => panic!("a write from a query did not trap: {other:?}"),
    }
    assert_eq!(
        query(&mut runtime, r#""count""#),
        serde_json::json!({"count": 0})
    );
}

/// Apply `count` puts of 64 KiB values (enough to take new journal bases)
/// with a trap every tenth entry and a read every seventh; the writes
/// digests of every entry.
fn history(runtime: &mut FsmRuntime, count: u64) -> Vec<Option<[u8; 32]>> {
    history_in_batches(runtime, count, 1)
        .into_iter()
        .map(|(_, digest)| digest)
        .collect()
}

/// How an entry ended: its result and its writes digest.
type EntryEnd = (Result<Vec<u8>, ApplyError>, Option<[u8; 32]>);

/// [`history`], committing the store after every `batch` entries as the
/// worker does after each batch; each entry's result and writes digest.
fn history_in_batches(runtime: &mut FsmRuntime, count: u64, batch: u64) -> Vec<EntryEnd> {
    let value = "v".repeat(64 * 1024);
    let mut outcomes = Vec::new();
    for index in 1..=count {
        let command = if index % 10 == 0 {
            r#"{"trap":{"key":"t","value":"x"}}"#.to_string()
        } else {
            put(&format!("k{:03}", index % 37), &format!("{index}{value}"))
        };
        let result = apply(runtime, index, &command);
        outcomes.push((result, runtime.last_writes_digest()));
        if index % 7 == 0 {
            query(runtime, r#""count""#);
        }
        if index % batch == 0 {
            runtime.commit_store_writes();
        }
    }
    outcomes
}

#[test]
fn committing_the_store_a_batch_at_a_time_changes_no_result() {
    // Goal: the worker commits the state file once per batch of entries;
    // every entry must end exactly as when each is committed on its own —
    // also the entries before a trap in the same batch (the rebuild must
    // not lose their uncommitted writes) and across journal bases.
    let code = load("test/store_faults.wasm");
    let count = 60;
    let mut runs = Vec::new();
    for batch in [1, 7, count] {
        let dir = tempfile::tempdir().unwrap();
        let mut runtime =
            FsmRuntime::new_in(code.clone(), PluginLimits::default(), Some(dir.path())).unwrap();
        let outcomes = history_in_batches(&mut runtime, count, batch);
        let count = query(&mut runtime, r#""count""#);
        let snapshot = runtime.snapshot().unwrap().unwrap();
        runs.push((batch, outcomes, count, snapshot));
    }
    let (_, outcomes, count, snapshot) = &runs[0];
    assert_eq!(*count, serde_json::json!({"count": 36}));
    for (batch, other_outcomes, other_count, other_snapshot) in &runs[1..] {
        assert_eq!(other_outcomes, outcomes, "batches of {batch}");
        assert_eq!(other_count, count, "batches of {batch}");
        assert!(other_snapshot == snapshot, "batches of {batch}");
    }
}

#[test]
fn replays_from_older_bases_see_the_store_as_the_applier_did() {
    let code = load("test/store_faults.wasm");
    let dir = tempfile::tempdir().unwrap();
    let mut on_disk =
        FsmRuntime::new_in(code.clone(), PluginLimits::default(), Some(dir.path())).unwrap();
    let mut in_memory = FsmRuntime::new(code, PluginLimits::default()).unwrap();
    let count = 60;
    let disk_digests = history(&mut on_disk, count);
    assert_eq!(disk_digests, history(&mut in_memory, count));
    assert_eq!(
        disk_digests
            .iter()
            .filter(|digest| digest.is_none())
            .count(),
        6
    );
    assert_eq!(
        query(&mut on_disk, r#""count""#),
        serde_json::json!({"count": 36}),
        "k030 was only ever written by a trapped entry"
    );
    assert_eq!(
        on_disk.snapshot().unwrap().unwrap(),
        in_memory.snapshot().unwrap().unwrap()
    );
    let files = || std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files(), 1, "one state file");
    drop(on_disk);
    assert_eq!(files(), 0, "the state file goes with its runtime");
}

#[test]
fn a_plain_state_that_starts_like_an_envelope_reaches_the_plugin_whole() {
    // Goal: whether a state carries the store is decided by the plugin that
    // wrote it, never by its first bytes: a plugin without the store whose
    // state happens to start with the envelope's marker gets it whole on
    // every replica, not unwrapped on the ones that restore it.
    use clusterhost::plugin::store::envelope;
    let kv = || load("kv.wasm");
    let mut runtime = FsmRuntime::new(kv(), PluginLimits::default()).unwrap();
    apply(&mut runtime, 1, &put("k", "v")).unwrap();
    let state = runtime.snapshot().unwrap().unwrap();
    let looks_enveloped = envelope::encode(&state, &[]);
    let restored =
        FsmRuntime::from_snapshot(kv(), PluginLimits::default(), position(1), looks_enveloped);
    assert!(
        matches!(restored, Err(RestoreError::Refused(_))),
        "kv must be handed the bytes as written, marker and all"
    );
    let store_plugin = FsmRuntime::from_snapshot(
        load("kv_disk.wasm"),
        PluginLimits::default(),
        position(1),
        b"not an envelope".to_vec(),
    );
    assert!(
        matches!(store_plugin, Err(RestoreError::Refused(_))),
        "a store plugin's state is always an envelope"
    );
}
