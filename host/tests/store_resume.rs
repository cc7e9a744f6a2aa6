//! A runtime resumed from its state file's checkpoint goes on exactly as
//! one that never stopped: the same write digests for every later entry
//! (traps, rebuilds and new journal bases included) and the same state.

use clusterhost::limits::PluginLimits;
use clusterhost::plugin::store::{SideRecord, durable};
use clusterhost::plugin::{FsmRuntime, PluginCode};

mod common;

use common::{load, position};

/// Apply entries `from..=to`: puts of 64 KiB values (enough to take new
/// journal bases), a trap every tenth entry, a read every seventh; the
/// write digests of every entry.
fn history(runtime: &mut FsmRuntime, from: u64, to: u64) -> Vec<Option<[u8; 32]>> {
    let value = "v".repeat(64 * 1024);
    let mut digests = Vec::new();
    for index in from..=to {
        let command = if index % 10 == 0 {
            r#"{"trap":{"key":"t","value":"x"}}"#.to_string()
        } else {
            let key = format!("k{:03}", index % 37);
            serde_json::json!({"put": {"key": key, "value": format!("{index}{value}")}}).to_string()
        };
        let _ = runtime
            .apply(position(index), command.into_bytes())
            .expect("no rebuild failure");
        digests.push(runtime.last_writes_digest());
        if index % 7 == 0 {
            let _ = runtime.query(br#""count""#).expect("no rebuild failure");
        }
    }
    digests
}

/// A fresh runtime of `code` whose state file in `dir` is the node's own
/// (so checkpoints make it durable).
fn on_disk(code: &PluginCode, limits: PluginLimits, dir: &std::path::Path) -> FsmRuntime {
    let mut runtime = FsmRuntime::new_in(code.clone(), limits, Some(dir)).expect("runtime");
    runtime.promote_store();
    runtime
}

#[test]
fn a_runtime_resumed_from_its_checkpoint_goes_on_as_one_that_never_stopped() {
    let code = load("test/store_faults.wasm");
    let limits = PluginLimits::default();
    let dir = tempfile::tempdir().expect("dir");
    let mut stopped = on_disk(&code, limits, dir.path());
    let mut never_stopped = FsmRuntime::new(code.clone(), limits).expect("runtime");
    assert_eq!(
        history(&mut stopped, 1, 33),
        history(&mut never_stopped, 1, 33)
    );
    let side = SideRecord::of(b"side".to_vec());
    let written = stopped.checkpoint(33, b"host".to_vec(), &side);
    assert!(written.expect("checkpoint"));
    drop(stopped);

    let stored = durable::open(dir.path())
        .expect("a usable state file")
        .expect("the state file");
    assert_eq!(stored.checkpoint.index, 33);
    assert_eq!(stored.checkpoint.host, b"host");
    assert_eq!(stored.side, b"side");
    assert_eq!(stored.checkpoint.position, Some(position(33)));
    let mut resumed = FsmRuntime::resume(code, limits, stored).expect("resumed");
    assert_eq!(resumed.last_applied(), Some(position(33)));
    assert_eq!(
        history(&mut resumed, 34, 80),
        history(&mut never_stopped, 34, 80)
    );
    assert_eq!(
        resumed
            .snapshot()
            .expect("no rebuild failure")
            .expect("snapshot"),
        never_stopped
            .snapshot()
            .expect("no rebuild failure")
            .expect("snapshot"),
    );
}

#[test]
fn a_snapshot_is_refused_as_too_large_only_on_the_stores_real_size() {
    // Goal: the store's size kept entry by entry only spares reading a
    // store that is too large; whether a snapshot is refused (a deploy's
    // handover records it on every replica) is decided on the size counted
    // from the file. A checkpoint whose recorded size is off must not make
    // this node refuse what the others take.
    let code = load("test/store_faults.wasm");
    let limits = PluginLimits::default();
    let dir = tempfile::tempdir().expect("dir");
    let mut runtime = on_disk(&code, limits, dir.path());
    history(&mut runtime, 1, 5);
    let side = SideRecord::of(Vec::new());
    assert!(
        runtime
            .checkpoint(5, b"host".to_vec(), &side)
            .expect("checkpoint")
    );
    let expected = runtime
        .snapshot()
        .expect("no rebuild failure")
        .expect("snapshot");
    drop(runtime);
    let mut stored = durable::open(dir.path()).expect("usable").expect("a file");
    stored.checkpoint.store_bytes = limits.snapshot_bytes_max as u64 + 1;
    let mut resumed = FsmRuntime::resume(code, limits, stored).expect("resumed");
    let snapshot = resumed.snapshot().expect("no rebuild failure");
    assert_eq!(snapshot.expect("not refused on a wrong estimate"), expected);
    assert_eq!(resumed.state_size_bytes(), Some(expected.len()));
}
