//! The kv plugin in Rust, Python and JavaScript, in the same run: one
//! 256-byte put and one get through each component, and each component's
//! cold load (compile) time.
//!
//! Run: `cargo bench -p clusterhost --bench plugin_languages` (after
//! `cargo xtask plugins`). `cargo xtask bench` runs it too.

mod common;

use std::time::{Duration, Instant};

use clusterhost::limits::PluginLimits;
use clusterhost::plugin::{EntryPosition, FsmRuntime, PluginEngine};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

use common::plugin_bytes;

/// The builds compared: benchmark name and component file.
const LANGUAGES: [(&str, &str); 3] = [("rust", "kv"), ("python", "kv_py"), ("javascript", "kv_js")];
/// Distinct keys the puts cycle through, so the map stays a realistic size.
const KEY_SPACE: u64 = 1_000;
/// Bytes of each measured put command.
const PUT_BYTES: usize = 256;
/// Cold loads measured per language: criterion's minimum sample count.
const COMPILE_SAMPLES: usize = 10;

fn key(sequence: u64) -> String {
    format!("key-{:06}", sequence % KEY_SPACE)
}

/// A put whose JSON encoding is exactly [`PUT_BYTES`] bytes.
fn put(sequence: u64) -> Vec<u8> {
    let prefix = format!(r#"{{"put":{{"key":"{}","value":""#, key(sequence));
    let padding = PUT_BYTES - prefix.len() - r#""}}"#.len();
    let command = format!(r#"{prefix}{}"}}}}"#, "v".repeat(padding));
    assert_eq!(command.len(), PUT_BYTES);
    command.into_bytes()
}

fn get(sequence: u64) -> Vec<u8> {
    format!(r#"{{"get":{{"key":"{}"}}}}"#, key(sequence)).into_bytes()
}

fn position(index: u64) -> EntryPosition {
    EntryPosition {
        index,
        term: 1,
        time_ms: 1_700_000_000_000 + index,
    }
}

/// A runtime of `name` holding every key of the key space.
fn filled(engine: &PluginEngine, name: &str) -> FsmRuntime {
    let code = engine.load(plugin_bytes(name)).expect("plugin loads");
    let mut runtime = FsmRuntime::new(code, PluginLimits::default()).expect("instance");
    for sequence in 0..KEY_SPACE {
        runtime
            .apply(position(sequence + 1), put(sequence))
            .expect("no rebuild")
            .expect("put accepted");
    }
    runtime
}

/// `kv_put_256B/{rust,python,javascript}` and `kv_get/{…}`.
fn apply_and_query(criterion: &mut Criterion) {
    let engine = PluginEngine::new(None).expect("engine");
    let mut runtimes: Vec<(&str, FsmRuntime)> = LANGUAGES
        .iter()
        .map(|&(language, name)| (language, filled(&engine, name)))
        .collect();
    let mut group = criterion.benchmark_group("kv_put_256B");
    group.throughput(Throughput::Elements(1));
    for (language, runtime) in &mut runtimes {
        let mut index = KEY_SPACE;
        group.bench_function(*language, |bench| {
            bench.iter(|| {
                index += 1;
                runtime
                    .apply(position(index), put(index))
                    .expect("no rebuild")
                    .expect("put accepted")
            })
        });
    }
    group.finish();
    let mut group = criterion.benchmark_group("kv_get");
    group.throughput(Throughput::Elements(1));
    for (language, runtime) in &mut runtimes {
        let mut sequence = 0u64;
        group.bench_function(*language, |bench| {
            bench.iter(|| {
                sequence += 1;
                runtime
                    .query(&get(sequence))
                    .expect("no rebuild")
                    .expect("no fault")
                    .expect("get accepted")
            })
        });
    }
    group.finish();
}

/// `kv_compile/{…}`: a cold load (validate and compile, no cache). A
/// Python or JavaScript component takes seconds to compile, so each sample
/// is one load and there are only criterion's minimum of ten.
fn compile(criterion: &mut Criterion) {
    let engine = PluginEngine::new(None).expect("engine");
    let mut group = criterion.benchmark_group("kv_compile");
    group.sample_size(COMPILE_SAMPLES);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_millis(1));
    for (language, name) in LANGUAGES {
        let bytes = plugin_bytes(name);
        eprintln!("kv_compile/{language}: {} bytes", bytes.len());
        group.bench_function(language, |bench| {
            bench.iter_custom(|iterations| {
                let started = Instant::now();
                for _ in 0..iterations {
                    engine.load(bytes.clone()).expect("plugin loads");
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, apply_and_query, compile);
criterion_main!(benches);
