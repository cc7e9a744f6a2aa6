//! What the plugin runtime reports to the metrics ([`Usage`]): the fuel its
//! calls burned, its instances' memory, and its rebuilds by replay, with
//! the misbehaving test plugin built by `cargo xtask plugins`.

use std::path::PathBuf;
use std::sync::Arc;

use clusterhost::limits::PluginLimits;
use clusterhost::plugin::{EntryPosition, FsmRuntime, PluginEngine, Usage};

fn misbehave() -> FsmRuntime {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/test/misbehave.wasm");
    let bytes = std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error} (run `cargo xtask plugins` first)",
            path.display()
        )
    });
    let engine = PluginEngine::new(None).expect("engine");
    let code = engine.load(Arc::from(bytes)).expect("a valid plugin");
    FsmRuntime::new(code, PluginLimits::default()).expect("instance")
}

fn apply(runtime: &mut FsmRuntime, index: u64, command: &str) {
    let position = EntryPosition {
        index,
        term: 1,
        time_ms: 1_700_000_000_000,
    };
    let _ = runtime
        .apply(position, command.as_bytes().to_vec())
        .expect("no rebuild failure");
}

// Goal: fuel is counted per call and starts over once taken; the applier's
// memory is reported, the reader's only once a read built it (a rebuild by
// replay, like the applier's after a trap).
#[test]
fn usage_counts_fuel_memory_and_rebuilds_and_starts_over_when_taken() {
    let mut runtime = misbehave();
    apply(&mut runtime, 1, r#""incr""#);
    apply(&mut runtime, 2, r#""incr""#);
    let after_writes = runtime.take_usage();
    assert!(after_writes.fuel_used > 0, "{after_writes:?}");
    assert!(after_writes.applier_memory_bytes > 0, "{after_writes:?}");
    assert_eq!(after_writes.reader_memory_bytes, 0, "no read yet");
    assert_eq!(
        (after_writes.applier_rebuilds, after_writes.reader_rebuilds),
        (0, 0)
    );

    apply(&mut runtime, 3, r#""panic""#);
    let after_trap = runtime.take_usage();
    assert_eq!(after_trap.applier_rebuilds, 1, "{after_trap:?}");

    runtime
        .query(br#""count""#)
        .expect("no rebuild failure")
        .expect("no fault")
        .expect("query accepted");
    let after_read = runtime.take_usage();
    assert!(after_read.fuel_used > 0, "{after_read:?}");
    assert!(after_read.reader_memory_bytes > 0, "{after_read:?}");
    assert_eq!(after_read.reader_rebuilds, 1, "{after_read:?}");

    let idle = runtime.take_usage();
    assert_eq!(
        idle,
        Usage {
            applier_memory_bytes: idle.applier_memory_bytes,
            reader_memory_bytes: idle.reader_memory_bytes,
            ..Usage::default()
        },
        "nothing ran since the last take"
    );
}
