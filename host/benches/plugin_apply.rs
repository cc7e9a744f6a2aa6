//! The cost of the plugin path: one `apply` through the wasm component
//! versus the same state machine called natively, with a 100-byte command;
//! batching through the worker thread; and compile / instantiate times.
//!
//! Run: `cargo bench -p clusterhost --bench plugin_apply` (after
//! `cargo xtask plugins`). `cargo xtask bench` runs it too.

mod common;

use std::sync::Arc;

use clusterhost::limits::PluginLimits;
use clusterhost::plugin::cache::{ArtifactCache, CacheKey};
use clusterhost::plugin::{EntryPosition, FsmRuntime, Machine, PluginEngine, PluginHandle};
use clusterhost_sdk::{Entry, RawStateMachine};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use common::plugin_bytes;

/// Distinct keys the benchmark cycles through, so the map stays a realistic size.
const KEY_SPACE: u64 = 1_000;
/// The counter command measured.
const COUNTER_ADD: &[u8] = br#"{"add":1}"#;
/// Commands per batch in the batching benchmark.
const BATCH: usize = 64;

fn kv_bytes() -> Arc<[u8]> {
    plugin_bytes("kv")
}

/// A put whose JSON encoding is exactly 100 bytes.
fn command(sequence: u64) -> Vec<u8> {
    let key = format!("key-{:06}", sequence % KEY_SPACE);
    let prefix = format!(r#"{{"put":{{"key":"{key}","value":""#);
    let padding = 100 - prefix.len() - r#""}}"#.len();
    let command = format!(r#"{prefix}{}"}}}}"#, "v".repeat(padding));
    assert_eq!(command.len(), 100);
    command.into_bytes()
}

fn position(index: u64) -> EntryPosition {
    EntryPosition {
        index,
        term: 1,
        time_ms: 1_700_000_000_000 + index,
    }
}

/// A 100-byte kv put through the component and natively.
fn apply(criterion: &mut Criterion) {
    let engine = PluginEngine::new(None).expect("engine");
    let code = engine.load(kv_bytes()).expect("kv loads");
    let mut group = criterion.benchmark_group("apply_100B_put");
    group.throughput(Throughput::Elements(1));

    let mut runtime = FsmRuntime::new(code.clone(), PluginLimits::default()).expect("instance");
    let mut index = 0u64;
    group.bench_function("component", |bench| {
        bench.iter(|| {
            index += 1;
            runtime
                .apply(position(index), command(index))
                .expect("apply")
        })
    });

    let mut native = kv::Kv::default();
    let mut native_index = 0u64;
    group.bench_function("native", |bench| {
        bench.iter(|| {
            native_index += 1;
            let entry = Entry {
                index: native_index,
                term: 1,
                time_ms: 1_700_000_000_000,
            };
            RawStateMachine::apply(&mut native, &entry, &command(native_index))
        })
    });
    group.finish();
}

/// The fixed cost of crossing into the component and back, seen through
/// the smallest FSM: `{"add":1}` on a counter.
fn apply_counter(criterion: &mut Criterion) {
    let engine = PluginEngine::new(None).expect("engine");
    let counter_code = engine.load(plugin_bytes("counter")).expect("counter loads");
    let mut group = criterion.benchmark_group("apply_counter_add");
    group.throughput(Throughput::Elements(1));
    let mut runtime = FsmRuntime::new(counter_code, PluginLimits::default()).expect("instance");
    let mut counter_index = 0u64;
    group.bench_function("component", |bench| {
        bench.iter(|| {
            counter_index += 1;
            runtime
                .apply(position(counter_index), COUNTER_ADD.to_vec())
                .expect("apply")
        })
    });
    let mut native = counter::Counter::default();
    group.bench_function("native", |bench| {
        bench.iter(|| {
            let entry = Entry {
                index: 1,
                term: 1,
                time_ms: 1_700_000_000_000,
            };
            RawStateMachine::apply(&mut native, &entry, COUNTER_ADD)
        })
    });
    group.finish();
}

/// kv puts through the worker thread, one per call and in batches.
fn worker(criterion: &mut Criterion) {
    let engine = PluginEngine::new(None).expect("engine");
    let code = engine.load(kv_bytes()).expect("kv loads");
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let runtime = FsmRuntime::new(code, PluginLimits::default()).expect("instance");
    let handle = PluginHandle::spawn(
        Some(Machine::Plugin(Box::new(runtime))),
        PluginLimits::default(),
        "bench".to_string(),
    )
    .expect("worker");
    let mut group = criterion.benchmark_group("worker");
    let mut next = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("apply_one_per_call", |bench| {
        bench.iter(|| {
            next += 1;
            tokio
                .block_on(handle.apply(vec![(position(next), command(next))]))
                .expect("apply")
        })
    });
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("apply_batch_of_64", |bench| {
        bench.iter_batched(
            || {
                (0..BATCH)
                    .map(|_| {
                        next += 1;
                        (position(next), command(next))
                    })
                    .collect::<Vec<_>>()
            },
            |batch| tokio.block_on(handle.apply(batch)).expect("apply"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn load(criterion: &mut Criterion) {
    let bytes = kv_bytes();
    let engine = PluginEngine::new(None).expect("engine");
    let mut group = criterion.benchmark_group("load_kv");
    group.sample_size(10);
    group.bench_function("compile", |bench| {
        bench.iter(|| engine.load(bytes.clone()).expect("load"))
    });
    let code = engine.load(bytes.clone()).expect("load");
    group.bench_function("instantiate", |bench| {
        bench.iter(|| FsmRuntime::new(code.clone(), PluginLimits::default()).expect("instance"))
    });
    let cache = tempfile::tempdir().expect("temp dir");
    let artifacts = ArtifactCache::open(
        &cache.path().join("compiled"),
        CacheKey::random().expect("key"),
    )
    .expect("cache");
    let cached_engine = PluginEngine::new(Some(artifacts)).expect("engine");
    cached_engine.load(bytes.clone()).expect("warm the cache");
    group.bench_function("load_from_compiled_cache", |bench| {
        bench.iter(|| cached_engine.load(bytes.clone()).expect("load"))
    });
    group.finish();
}

criterion_group!(benches, apply, apply_counter, worker, load);
criterion_main!(benches);
