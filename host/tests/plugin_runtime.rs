//! The plugin runtime against real components built by `cargo xtask plugins`:
//! the four calls, determinism, the virtual WASI world, limits, and the
//! rejection of everything that is not a plugin.

use std::path::PathBuf;
use std::sync::Arc;

use clusterhost::limits::{LOADED_ARTIFACT_PRUNES_KEPT, PluginLimits, RESPONSE_BYTES_MAX};
use clusterhost::plugin::cache::{ArtifactCache, CacheKey};
use clusterhost::plugin::{
    ApplyError, EntryPosition, Fault, FsmRuntime, LoadError, Machine, PluginCode, PluginEngine,
    PluginHandle,
};

fn plugin_path(relative: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask plugins` first",
        path.display()
    );
    path
}

fn engine() -> PluginEngine {
    PluginEngine::new(None).expect("engine")
}

fn load(engine: &PluginEngine, relative: &str) -> PluginCode {
    let bytes = std::fs::read(plugin_path(relative)).expect("read plugin");
    engine.load(Arc::from(bytes)).expect("a valid plugin")
}

fn position(index: u64) -> EntryPosition {
    EntryPosition {
        index,
        term: 1,
        time_ms: 1_700_000_000_000 + index * 10,
    }
}

fn apply_ok(runtime: &mut FsmRuntime, index: u64, command: &str) -> serde_json::Value {
    let outcome = runtime
        .apply(position(index), command.as_bytes().to_vec())
        .expect("no rebuild failure");
    let bytes = outcome.unwrap_or_else(|error| panic!("{command} failed: {error}"));
    serde_json::from_slice(&bytes).expect("JSON response")
}

fn query_ok(runtime: &mut FsmRuntime, request: &str) -> serde_json::Value {
    let bytes = runtime
        .query(request.as_bytes())
        .expect("no rebuild failure")
        .expect("no fault")
        .expect("query accepted");
    serde_json::from_slice(&bytes).expect("JSON response")
}

fn snapshot_ok(runtime: &mut FsmRuntime) -> Vec<u8> {
    runtime
        .snapshot()
        .expect("no rebuild failure")
        .expect("snapshot")
}

fn kv_commands() -> Vec<String> {
    (0..40)
        .map(|step| match step % 4 {
            0 | 1 => format!(r#"{{"put":{{"key":"k{}","value":"v{step}"}}}}"#, step % 7),
            2 => format!(r#"{{"delete":{{"key":"k{}"}}}}"#, step % 5),
            _ => format!(
                r#"{{"cas":{{"key":"k{}","expected":null,"value":"c{step}"}}}}"#,
                step % 3
            ),
        })
        .collect()
}

// Goal: a command goes in through apply and comes out through query, and
// the state survives snapshot -> restore into a fresh instance.
#[test]
fn kv_apply_query_snapshot_restore_round_trip() {
    let engine = engine();
    let code = load(&engine, "kv.wasm");
    let mut runtime = FsmRuntime::new(code.clone(), PluginLimits::default()).expect("instance");
    let put = apply_ok(&mut runtime, 1, r#"{"put":{"key":"a","value":"1"}}"#);
    assert_eq!(put, serde_json::json!({"prev": null}));
    let again = apply_ok(&mut runtime, 2, r#"{"put":{"key":"a","value":"2"}}"#);
    assert_eq!(again, serde_json::json!({"prev": "1"}));
    assert_eq!(
        query_ok(&mut runtime, r#"{"get":{"key":"a"}}"#),
        serde_json::json!({"value": "2"})
    );

    let snapshot = snapshot_ok(&mut runtime);
    let mut restored =
        FsmRuntime::from_snapshot(code, PluginLimits::default(), position(2), snapshot.clone())
            .expect("restore");
    assert_eq!(
        query_ok(&mut restored, r#"{"get":{"key":"a"}}"#),
        serde_json::json!({"value": "2"})
    );
    assert_eq!(snapshot_ok(&mut restored), snapshot);
}

// Goal: replicas agree. The same commands in two fresh instances give
// byte-identical results and snapshots.
#[test]
fn same_commands_give_identical_results_and_snapshots() {
    let engine = engine();
    let code = load(&engine, "kv.wasm");
    let mut first = FsmRuntime::new(code.clone(), PluginLimits::default()).expect("instance");
    let mut second = FsmRuntime::new(code, PluginLimits::default()).expect("instance");
    for (offset, command) in kv_commands().iter().enumerate() {
        let index = offset as u64 + 1;
        let a = first
            .apply(position(index), command.as_bytes().to_vec())
            .expect("apply");
        let b = second
            .apply(position(index), command.as_bytes().to_vec())
            .expect("apply");
        assert_eq!(a, b, "results differ at entry {index}");
    }
    assert_eq!(snapshot_ok(&mut first), snapshot_ok(&mut second));
}

// Goal: a node that restored a snapshot taken mid-sequence and applied the
// rest ends equal to one that replayed everything.
#[test]
fn restore_mid_sequence_then_replay_equals_full_replay() {
    let engine = engine();
    let code = load(&engine, "kv.wasm");
    let commands = kv_commands();
    let middle = commands.len() / 2;
    let mut full = FsmRuntime::new(code.clone(), PluginLimits::default()).expect("instance");
    let mut taken = None;
    for (offset, command) in commands.iter().enumerate() {
        let _response = full
            .apply(position(offset as u64 + 1), command.as_bytes().to_vec())
            .expect("apply");
        if offset + 1 == middle {
            taken = Some(snapshot_ok(&mut full));
        }
    }
    let mut resumed = FsmRuntime::from_snapshot(
        code,
        PluginLimits::default(),
        position(middle as u64),
        taken.expect("mid snapshot"),
    )
    .expect("restore");
    for (offset, command) in commands.iter().enumerate().skip(middle) {
        let _response = resumed
            .apply(position(offset as u64 + 1), command.as_bytes().to_vec())
            .expect("apply");
    }
    assert_eq!(snapshot_ok(&mut full), snapshot_ok(&mut resumed));
}

// Goal: the plugin's clock is the entry's leader-stamped time and its
// randomness a stream fixed by the log position, identical on every replica.
#[test]
fn clock_and_randomness_are_virtual_and_deterministic() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let mut first = FsmRuntime::new(code.clone(), PluginLimits::default()).expect("instance");
    let mut second = FsmRuntime::new(code, PluginLimits::default()).expect("instance");

    let clock = apply_ok(&mut first, 1, r#""clock""#);
    assert_eq!(clock["wall_ms"], serde_json::json!(position(1).time_ms));
    assert_eq!(
        clock["monotonic_ns"],
        serde_json::json!(position(1).time_ms * 1_000_000)
    );

    let random_a = apply_ok(&mut first, 2, r#""random""#);
    let random_b = {
        apply_ok(&mut second, 1, r#""clock""#);
        apply_ok(&mut second, 2, r#""random""#)
    };
    assert_eq!(random_a, random_b, "same position, same randomness");
    let random_next = apply_ok(&mut first, 3, r#""random""#);
    assert_ne!(random_a, random_next, "a new position draws new randomness");
}

// Goal: the plugin sees no environment, arguments or filesystem, and a
// plugin printing megabytes does not hurt the host.
#[test]
fn environment_and_filesystem_are_empty_and_output_is_capped() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let mut runtime = FsmRuntime::new(code, PluginLimits::default()).expect("instance");
    assert_eq!(
        apply_ok(&mut runtime, 1, r#""env""#),
        serde_json::json!({"vars": 0, "args": 0})
    );
    let fs = apply_ok(&mut runtime, 2, r#""fs""#);
    assert!(fs["read_dir"].is_string(), "read_dir must fail: {fs}");
    assert!(fs["read"].is_string(), "read must fail: {fs}");
    assert_eq!(
        apply_ok(&mut runtime, 3, r#""print""#),
        serde_json::json!("ok")
    );
}

fn assert_fault(
    runtime: &mut FsmRuntime,
    index: u64,
    command: &str,
    check: impl Fn(&Fault) -> bool,
) {
    let outcome = runtime
        .apply(position(index), command.as_bytes().to_vec())
        .expect("rebuild works");
    match outcome {
        Err(ApplyError::Fault(fault)) => {
            assert!(check(&fault), "{command}: unexpected fault {fault}")
        }
        other => panic!("{command} should fault, got {other:?}"),
    }
}

// Goal: a runaway, panicking or memory-hungry entry fails alone with a
// clear error, changes nothing, and the next entry applies normally.
#[test]
fn traps_fail_one_entry_and_leave_state_untouched() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let limits = PluginLimits {
        fuel_per_call: 300_000_000,
        fuel_per_bulk_call: 5_000_000_000,
        memory_bytes_max: 32 * 1024 * 1024,
        ..PluginLimits::default()
    };
    let mut runtime = FsmRuntime::new(code, limits).expect("instance");
    assert_eq!(apply_ok(&mut runtime, 1, r#""incr""#), serde_json::json!(1));
    assert_eq!(apply_ok(&mut runtime, 2, r#""incr""#), serde_json::json!(2));

    assert_fault(&mut runtime, 3, r#""spin""#, |fault| {
        matches!(fault, Fault::OutOfFuel { .. })
    });
    assert_eq!(apply_ok(&mut runtime, 4, r#""incr""#), serde_json::json!(3));

    assert_fault(
        &mut runtime,
        5,
        r#""panic""#,
        |fault| matches!(fault, Fault::Trapped { message } if message.contains("unreachable")),
    );
    assert_eq!(apply_ok(&mut runtime, 6, r#""incr""#), serde_json::json!(4));

    assert_fault(&mut runtime, 7, r#""alloc""#, |fault| {
        matches!(fault, Fault::OutOfMemory { .. } | Fault::Trapped { .. })
    });
    assert_eq!(apply_ok(&mut runtime, 8, r#""incr""#), serde_json::json!(5));
    assert_eq!(query_ok(&mut runtime, r#""count""#), serde_json::json!(5));

    let rejected = runtime
        .apply(position(9), br#""reject""#.to_vec())
        .expect("apply");
    assert_eq!(
        rejected,
        Err(ApplyError::Rejected("rejected on purpose".to_string()))
    );
}

// Goal: a trap's rebuild replays history, so a trapped replica ends equal to
// one that never saw the trapping entries' effects.
#[test]
fn rebuild_after_trap_matches_a_replica_without_the_trap() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let mut trapped = FsmRuntime::new(code.clone(), PluginLimits::default()).expect("instance");
    let mut clean = FsmRuntime::new(code, PluginLimits::default()).expect("instance");
    for index in 1..=3 {
        apply_ok(&mut trapped, index, r#""incr""#);
        apply_ok(&mut clean, index, r#""incr""#);
    }
    assert_fault(&mut trapped, 4, r#""panic""#, |_| true);
    apply_ok(&mut trapped, 5, r#""random""#);
    apply_ok(&mut clean, 5, r#""random""#);
    assert_eq!(snapshot_ok(&mut trapped), snapshot_ok(&mut clean));
}

// Goal: everything that is not a plugin is refused at load with an error
// that says what is wrong.
#[test]
fn malformed_plugins_are_rejected_with_clear_errors() {
    let engine = engine();
    let load_bytes = |bytes: Vec<u8>| engine.load(Arc::from(bytes));
    assert!(matches!(
        load_bytes(b"hello world".to_vec()),
        Err(LoadError::NotWasm)
    ));
    assert!(matches!(
        load_bytes(b"\0asm\x01\0\0\0".to_vec()),
        Err(LoadError::CoreModule)
    ));
    let mut truncated = std::fs::read(plugin_path("kv.wasm")).expect("read");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(load_bytes(truncated), Err(LoadError::Invalid(_))));
    let wrong_world = std::fs::read(plugin_path("test/wrong_world.wasm")).expect("read");
    match load_bytes(wrong_world) {
        Err(LoadError::WrongWorld(message)) => assert!(message.contains("apply"), "{message}"),
        other => panic!("wrong world accepted: {other:?}"),
    }
    let bad_import = std::fs::read(plugin_path("test/bad_import.wasm")).expect("read");
    match load_bytes(bad_import) {
        Err(LoadError::UnsupportedImport(message)) => {
            assert!(message.contains("test:missing/api"), "{message}")
        }
        other => panic!("unknown import accepted: {other:?}"),
    }
    let too_large = vec![0u8; clusterhost::limits::PLUGIN_BYTES_MAX + 1];
    assert!(matches!(
        load_bytes(too_large),
        Err(LoadError::TooLarge { .. })
    ));
}

/// An engine caching in `dir` under the key a node with TLS private key
/// `tls_key` uses.
fn cached_engine(dir: &std::path::Path, tls_key: &[u8]) -> PluginEngine {
    let cache = ArtifactCache::open(dir, CacheKey::derived_from(tls_key)).expect("cache");
    PluginEngine::new(Some(cache)).expect("engine")
}

// Goal: compiled plugins are cached by digest, so a restart (of a node with
// the same TLS key) loads without compiling (the cached artifact is what
// gets loaded the second time); a cached artifact with one byte flipped is
// not loaded but compiled again, and so is one tagged under another key.
#[test]
fn compiled_plugins_are_cached_on_disk() {
    let root = tempfile::tempdir().expect("temp dir");
    let cache = root.path().join("compiled");
    let engine = cached_engine(&cache, b"node key");
    let code = load(&engine, "counter.wasm");
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with(&code.digest().to_hex()), "{cached:?}");

    let reloaded_engine = cached_engine(&cache, b"node key");
    let reloaded = load(&reloaded_engine, "counter.wasm");
    let mut runtime = FsmRuntime::new(reloaded, PluginLimits::default()).expect("instance");
    assert_eq!(
        apply_ok(&mut runtime, 1, r#"{"add":5}"#),
        serde_json::json!({"value": 5})
    );

    let artifact = cache.join(&cached[0]);
    let mut tampered = std::fs::read(&artifact).expect("artifact");
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    std::fs::write(&artifact, &tampered).expect("tamper");
    let recompiled = load(&reloaded_engine, "counter.wasm");
    let mut runtime = FsmRuntime::new(recompiled, PluginLimits::default()).expect("instance");
    assert_eq!(
        apply_ok(&mut runtime, 1, r#"{"add":2}"#),
        serde_json::json!({"value": 2})
    );
    let rewritten = std::fs::read(&artifact).expect("artifact");
    assert_ne!(
        rewritten, tampered,
        "the tampered artifact was kept, so it was loaded"
    );

    // A node with another key (or none: a random one) does not trust it.
    let other_engine = cached_engine(&cache, b"another node key");
    let recompiled = load(&other_engine, "counter.wasm");
    let mut runtime = FsmRuntime::new(recompiled, PluginLimits::default()).expect("instance");
    assert_eq!(
        apply_ok(&mut runtime, 1, r#"{"add":3}"#),
        serde_json::json!({"value": 3})
    );
    assert_ne!(
        std::fs::read(&artifact).expect("artifact"),
        rewritten,
        "an artifact tagged under another key was loaded"
    );
}

// Goal: pruning keeps the artifacts of the plugins named (the running and
// retained versions) and of those loaded during the last few prunes, and
// removes the rest.
#[test]
fn pruning_the_cache_keeps_only_retained_plugins() {
    let root = tempfile::tempdir().expect("temp dir");
    let cache = root.path().join("compiled");
    let engine = cached_engine(&cache, b"node key");
    let counter = load(&engine, "counter.wasm").digest();
    let kv = load(&engine, "kv.wasm").digest();
    let cached = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&cache)
            .expect("cache dir")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(cached().len(), 2, "{:?}", cached());
    // Both were just loaded: prunes keep them for as long as a lagging
    // follower's queue of precompiled deploys may take to apply.
    for _ in 0..LOADED_ARTIFACT_PRUNES_KEPT {
        engine.prune_cache(&[kv]);
        assert_eq!(cached().len(), 2, "{:?}", cached());
    }
    engine.prune_cache(&[kv]);
    let left = cached();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(&kv.to_hex()), "{left:?}");
    assert!(!left.iter().any(|name| name.starts_with(&counter.to_hex())));
}

// Goal: an entry whose response was too large still ran (and changed the
// state), so a later trap's rebuild replays it; the replay gets the same
// refusal and must accept it, or the node would stop at that trap forever.
#[test]
fn a_trap_after_an_oversized_response_rebuilds_and_keeps_applying() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let mut runtime = FsmRuntime::new(code, PluginLimits::default()).expect("instance");
    assert_eq!(apply_ok(&mut runtime, 1, r#""incr""#), serde_json::json!(1));
    let rejected = runtime
        .apply(position(2), br#""reject""#.to_vec())
        .expect("apply");
    assert!(
        matches!(rejected, Err(ApplyError::Rejected(_))),
        "{rejected:?}"
    );
    let oversized = format!(r#"{{"respond_bytes":{}}}"#, RESPONSE_BYTES_MAX + 1);
    assert_fault(&mut runtime, 3, &oversized, |fault| {
        matches!(fault, Fault::OversizedOutput { .. })
    });
    assert_fault(&mut runtime, 4, r#""panic""#, |fault| {
        matches!(fault, Fault::Trapped { .. })
    });
    // The oversized entry counted; the rejected and trapped ones did not.
    assert_eq!(apply_ok(&mut runtime, 5, r#""incr""#), serde_json::json!(3));
}

// Goal: the cluster's limits change at a point of the log; entries before
// it ended under the old limits, and a replay (a read's reader, a trap's
// rebuild) must end them the same way — here an entry refused as too large
// under a 1 KiB response cap that the raised cap would have accepted.
#[test]
fn replays_run_each_entry_under_the_limits_it_first_ran_under() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let small = PluginLimits {
        response_bytes_max: 1024,
        ..PluginLimits::default()
    };
    let mut runtime = FsmRuntime::new(code, PluginLimits::default()).expect("instance");
    assert_eq!(apply_ok(&mut runtime, 1, r#""incr""#), serde_json::json!(1));
    runtime.set_limits(small);
    assert_fault(&mut runtime, 2, r#"{"respond_bytes":2048}"#, |fault| {
        matches!(fault, Fault::OversizedOutput { .. })
    });
    runtime.set_limits(PluginLimits::default());
    // The reader replays entry 2 under the cap it ran under, not the one
    // before or after it (a refused response still ran: it counted).
    assert_eq!(query_ok(&mut runtime, r#""count""#), serde_json::json!(2));
    // So does the applier's rebuild after a trap; and today's cap holds now.
    assert_fault(&mut runtime, 3, r#""panic""#, |fault| {
        matches!(fault, Fault::Trapped { .. })
    });
    let answer = apply_ok(&mut runtime, 4, r#"{"respond_bytes":2048}"#);
    assert_eq!(answer.as_str().map(str::len), Some(2048));
    assert_eq!(query_ok(&mut runtime, r#""count""#), serde_json::json!(3));
}

/// A memory cap under which `{"alloc_mib":ALLOC_NEAR_CAP_MIB}` fits in a
/// fresh misbehave instance but not once queries have cached
/// `QUERY_CACHE_MIB` in it.
const NEAR_CAP_LIMITS: PluginLimits = PluginLimits {
    fuel_per_call: clusterhost::limits::PLUGIN_FUEL_PER_CALL,
    fuel_per_bulk_call: clusterhost::limits::PLUGIN_FUEL_PER_BULK_CALL,
    memory_bytes_max: 40 * 1024 * 1024,
    response_bytes_max: RESPONSE_BYTES_MAX,
    snapshot_bytes_max: clusterhost::limits::SNAPSHOT_BYTES_MAX,
};
const ALLOC_NEAR_CAP_MIB: usize = 24;
const QUERY_CACHE_MIB: usize = 20;

/// Read from `runtime` the way a busy node does between two entries.
fn hammer_with_reads(runtime: &mut FsmRuntime) {
    for request in [r#""count""#, r#""log""#, r#"{"cache_mib":2}"#] {
        let _answer = runtime
            .query(request.as_bytes())
            .expect("no rebuild failure");
    }
    let _snapshot = runtime.snapshot().expect("no rebuild failure");
}

// Goal: replicas agree whatever reads they serve. Queries and snapshots run
// at different times on each node, so they must not change what applies:
// here queries grow the heap (a memoizing plugin), and a command near the
// memory cap must still succeed on the busy replica as on the quiet one.
#[test]
fn queries_and_snapshots_between_commands_do_not_change_replicated_results() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let mut busy = FsmRuntime::new(code.clone(), NEAR_CAP_LIMITS).expect("instance");
    let mut quiet = FsmRuntime::new(code, NEAR_CAP_LIMITS).expect("instance");
    // A query that traps discards whatever instance served it.
    let trapped = busy.query(br#""panic""#).expect("no rebuild failure");
    assert!(matches!(trapped, Err(Fault::Trapped { .. })), "{trapped:?}");
    let alloc = format!(r#"{{"alloc_mib":{ALLOC_NEAR_CAP_MIB}}}"#);
    let mut commands = vec![r#""incr""#.to_string(); QUERY_CACHE_MIB / 2];
    commands.push(alloc.clone());
    commands.push(r#""incr""#.to_string());
    commands.push(alloc);
    for (offset, command) in commands.iter().enumerate() {
        let index = offset as u64 + 1;
        let from_busy = busy.apply(position(index), command.clone().into_bytes());
        let from_quiet = quiet.apply(position(index), command.clone().into_bytes());
        let (from_busy, from_quiet) = (from_busy.expect("apply"), from_quiet.expect("apply"));
        assert_eq!(from_busy, from_quiet, "entry {index} ({command}) differs");
        assert!(from_quiet.is_ok(), "{command} must fit under the cap");
        hammer_with_reads(&mut busy);
    }
    assert_eq!(snapshot_ok(&mut busy), snapshot_ok(&mut quiet));
}

// Goal: a plugin cannot wait in real time. Its clocks are virtual, so a
// sleep inside apply returns at once (no virtual time passes during a call)
// with the same answer on every replica, instead of stalling the cluster.
#[test]
fn a_plugin_that_sleeps_for_an_hour_returns_at_once_with_the_same_answer() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _replica in 0..2 {
            let mut runtime =
                FsmRuntime::new(code.clone(), PluginLimits::default()).expect("instance");
            let slept = apply_ok(&mut runtime, 1, r#"{"sleep_ms":3600000}"#);
            let _ = sender.send(slept);
        }
    });
    let wait = std::time::Duration::from_secs(60);
    let mut answers = Vec::new();
    for _replica in 0..2 {
        let answer = receiver
            .recv_timeout(wait)
            .expect("apply still sleeping after 60 s: the plugin waits in real time");
        answers.push(answer);
    }
    assert_eq!(answers[0], serde_json::json!({"elapsed_ns": 0}));
    assert_eq!(answers[0], answers[1]);
}

/// Log lines written while a closure runs on this thread.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn during(&self, run: impl FnOnce()) {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, run);
    }

    fn count(&self, needle: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned();
        text.matches(needle).count()
    }
}

// Goal: a state the runtime cannot snapshot (here: its snapshot runs out of
// fuel) costs one more attempt per journal budget, not one per entry, and
// the size of the last snapshot is known to the node.
#[test]
fn a_state_that_cannot_be_snapshotted_is_retried_once_per_journal_budget() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let limits = PluginLimits {
        fuel_per_bulk_call: 2_000_000,
        ..PluginLimits::default()
    };
    let mut runtime = FsmRuntime::new(code, limits).expect("instance");
    // 64 logged responses of 16 KiB: a 1 MiB state, too much to serialize
    // on 2M fuel. Each command is padded to 100 KiB of journal.
    let padding = " ".repeat(100 * 1024);
    let command = format!(r#"{{"respond_bytes":16384}}{padding}"#);
    let entries = 40;
    let log = CapturedLog::default();
    log.during(|| {
        for index in 1..=entries {
            let outcome = runtime
                .apply(position(index), command.clone().into_bytes())
                .expect("no rebuild failure");
            assert!(outcome.is_ok(), "entry {index}: {outcome:?}");
        }
    });
    let journal_bytes = entries as usize * command.len();
    let budgets = journal_bytes / clusterhost::limits::REPLAY_JOURNAL_BYTES_MIN;
    let attempts = log.count("could not take a rebuild snapshot");
    assert!(
        (1..=budgets).contains(&attempts),
        "{attempts} failed snapshots for {budgets} journal budgets"
    );
}

// Goal: the node knows how large the plugin's state is (the bytes of its
// last snapshot), so it can refuse writes past a quota.
#[test]
fn the_plugin_handle_reports_the_size_of_the_last_snapshot() {
    let engine = engine();
    let code = load(&engine, "kv.wasm");
    let runtime = FsmRuntime::new(code, PluginLimits::default()).expect("instance");
    let handle = PluginHandle::spawn(
        Some(Machine::Plugin(Box::new(runtime))),
        PluginLimits::default(),
        "test".to_string(),
    )
    .expect("worker");
    assert_eq!(handle.state_size_bytes(), None, "nothing measured yet");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio");
    let state = tokio.block_on(async {
        let put = br#"{"put":{"key":"a","value":"1"}}"#.to_vec();
        let outcomes = handle.apply(vec![(position(1), put)]).await.expect("apply");
        assert!(outcomes[0].0.is_ok(), "{outcomes:?}");
        let snapshot = handle.snapshot().await.expect("worker").expect("snapshot");
        snapshot.expect("a plugin is deployed").state
    });
    assert_eq!(handle.state_size_bytes(), Some(state.len() as u64));
}

// Goal: the reader can be caught up a slice at a time (what the worker does
// when idle), and reads after that see every entry.
#[test]
fn the_reader_catches_up_a_slice_at_a_time() {
    let engine = engine();
    let code = load(&engine, "test/misbehave.wasm");
    let mut runtime = FsmRuntime::new(code, PluginLimits::default()).expect("instance");
    assert!(
        !runtime.advance_reader(4),
        "no reader before the first read"
    );
    assert_eq!(query_ok(&mut runtime, r#""count""#), serde_json::json!(0));
    for index in 1..=10 {
        apply_ok(&mut runtime, index, r#""incr""#);
    }
    assert!(runtime.advance_reader(4), "6 entries left");
    assert!(runtime.advance_reader(4), "2 entries left");
    assert!(!runtime.advance_reader(4), "caught up");
    assert_eq!(query_ok(&mut runtime, r#""count""#), serde_json::json!(10));
}
