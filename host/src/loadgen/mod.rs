//! The load generator behind `clusterhost bench`: concurrent clients over
//! real gRPC connections, a fixed warm-up, and honest accounting — an
//! operation counts only once acknowledged, errors are counted and reported.
//! The same load drives an etcd cluster ([`System::Etcd`]) for comparison.

mod etcd;
mod first_write;
mod target;

pub use etcd::{EtcdClient, EtcdError, MemberStatus};
pub use first_write::{FirstWriteReport, first_write};
pub use target::System;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clusterhost_client::Options;

use target::Target;

/// Concurrent clients by default, and at most.
pub const BENCH_CLIENTS_DEFAULT: u64 = 16;
/// Most concurrent clients (each holds a connection).
pub const BENCH_CLIENTS_MAX: u64 = 4096;
/// Measured time by default.
pub const BENCH_DURATION_DEFAULT: &str = "10s";
/// Warm-up before measuring, by default.
pub const BENCH_WARMUP_DEFAULT: &str = "2s";
/// Value size by default, in bytes.
pub const BENCH_VALUE_BYTES_DEFAULT: usize = 256;
/// Distinct keys by default.
pub const BENCH_KEYS_DEFAULT: u64 = 10_000;
/// How often progress is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What each client does in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// kv `put` of a random key with a value of the configured size.
    Write,
    /// kv `get`, linearizable.
    ReadLinearizable,
    /// kv `get`, stale (served locally).
    ReadStale,
}

/// A load run's settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// What the endpoints run.
    pub system: System,
    /// Endpoints; clients are spread over them round-robin.
    pub endpoints: Vec<String>,
    /// Concurrent clients (one connection each).
    pub clients: usize,
    /// What they do.
    pub workload: Workload,
    /// Measured time.
    pub duration: Duration,
    /// Time before measuring starts (not counted).
    pub warmup: Duration,
    /// Value size in bytes (writes).
    pub value_bytes: usize,
    /// Distinct keys.
    pub keys: u64,
    /// Whether each client writes within a session (exactly once).
    pub sessions: bool,
    /// Client certificate for a cluster running mutual TLS.
    pub tls: Option<clusterhost_client::ClientTls>,
}

/// Keys written before a read workload starts, so reads find something.
const READ_SEED_KEYS_MAX: u64 = 1_000;

/// The result of a load run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// What was loaded.
    pub system: System,
    /// What ran.
    pub workload: Workload,
    /// Whether writes went through client sessions.
    pub sessions: bool,
    /// Concurrent clients.
    pub clients: usize,
    /// Endpoints used.
    pub endpoints: usize,
    /// Measured seconds.
    pub seconds: f64,
    /// Acknowledged operations in the measured window.
    pub ops: u64,
    /// Failed operations in the measured window (any error).
    pub errors: u64,
    /// ops / seconds.
    pub ops_per_second: f64,
    /// Every operation acknowledged during the whole run — warm-up (and, for
    /// reads, seeding) included — so resource use can be divided by it.
    pub acknowledged_including_warmup: u64,
    /// Latency percentiles of acknowledged operations, microseconds.
    pub latency_us_p50: u64,
    /// 99th percentile.
    pub latency_us_p99: u64,
    /// Maximum.
    pub latency_us_max: u64,
}

/// Run the load and report. Progress goes to stderr once a second.
pub async fn run(config: LoadConfig) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(!config.endpoints.is_empty(), "no endpoints");
    anyhow::ensure!(config.clients > 0, "no clients");
    let clients = connect(&config).await?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let acknowledged_all = Arc::new(AtomicU64::new(seed_keys(&config)));
    let mut tasks = Vec::with_capacity(config.clients);
    for (index, client) in clients.into_iter().enumerate() {
        let config = config.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        let counters = Counters {
            measured: acknowledged.clone(),
            all: acknowledged_all.clone(),
        };
        tasks.push(tokio::spawn(async move {
            client_loop(index as u64, client, config, measuring, stop, counters).await
        }));
    }
    tokio::time::sleep(config.warmup).await;
    measuring.store(true, Ordering::SeqCst);
    let seconds = show_progress(config.duration, &acknowledged).await;
    stop.store(true, Ordering::SeqCst);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (client_latencies, client_errors) = task.await?;
        latencies.extend(client_latencies);
        errors += client_errors;
    }
    latencies.sort_unstable();
    Ok(LoadReport {
        system: config.system,
        workload: config.workload,
        sessions: config.sessions,
        clients: config.clients,
        endpoints: config.endpoints.len(),
        seconds,
        ops: latencies.len() as u64,
        errors,
        ops_per_second: latencies.len() as f64 / seconds,
        acknowledged_including_warmup: acknowledged_all.load(Ordering::SeqCst),
        latency_us_p50: percentile(&latencies, 0.50),
        latency_us_p99: percentile(&latencies, 0.99),
        latency_us_max: latencies.last().copied().unwrap_or(0),
    })
}

/// Keys written before a read workload, so reads find something.
fn seed_keys(config: &LoadConfig) -> u64 {
    if config.workload == Workload::Write {
        0
    } else {
        config.keys.min(READ_SEED_KEYS_MAX)
    }
}

/// One client of the library per bench client, each bound to one endpoint
/// (spread round-robin) and making one attempt per operation, so the
/// endpoints chosen are the ones measured and every failure is counted;
/// for reads, the keys they will read are written first.
async fn connect(config: &LoadConfig) -> anyhow::Result<Vec<Target>> {
    let options = Options {
        retry_budget: Duration::ZERO,
        sessions: config.sessions,
        follow_leader: false,
        tls: config.tls.clone(),
        ..Options::default()
    };
    let mut clients = Vec::with_capacity(config.clients);
    // Each endpoint must answer before the run starts: a wrong address is a
    // clear error, not a run of failures.
    for endpoint in &config.endpoints {
        let mut probe = Target::connect(config.system, endpoint, &options).await?;
        probe.probe().await?;
    }
    for index in 0..config.clients {
        let endpoint = &config.endpoints[index % config.endpoints.len()];
        clients.push(Target::connect(config.system, endpoint, &options).await?);
    }
    if seed_keys(config) > 0 {
        let seeder = &mut clients[0];
        let value = "x".repeat(config.value_bytes);
        for key in 0..seed_keys(config) {
            seeder.write(key, &value).await?;
        }
    }
    Ok(clients)
}

/// Print the rate once a second for `duration`; returns the seconds
/// actually measured.
async fn show_progress(duration: Duration, acknowledged: &AtomicU64) -> f64 {
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < duration {
        tokio::time::sleep(PROGRESS_INTERVAL.min(duration.saturating_sub(started.elapsed()))).await;
        let now = acknowledged.load(Ordering::Relaxed);
        eprintln!(
            "  {:>5.1}s  {:>8} ops/s  {:>9} total",
            started.elapsed().as_secs_f64(),
            now - last,
            now
        );
        last = now;
    }
    started.elapsed().as_secs_f64()
}

/// The latency at `fraction` (0..1) of sorted `latencies` (0 when empty).
fn percentile(latencies: &[u64], fraction: f64) -> u64 {
    if latencies.is_empty() {
        return 0;
    }
    let rank = ((latencies.len() as f64 * fraction).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1]
}

/// Acknowledged operations, counted as they happen.
struct Counters {
    /// In the measured window (drives the progress display).
    measured: Arc<AtomicU64>,
    /// Over the whole run.
    all: Arc<AtomicU64>,
}

/// One client: operations back to back until told to stop; latencies of the
/// acknowledged ones in the measured window, and the errors in it.
async fn client_loop(
    seed: u64,
    mut client: Target,
    config: LoadConfig,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    counters: Counters,
) -> (Vec<u64>, u64) {
    let value = "v".repeat(config.value_bytes);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut latencies = Vec::new();
    let mut errors = 0;
    while !stop.load(Ordering::Relaxed) {
        // xorshift: a cheap, seeded key choice per client.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = state % config.keys;
        let started = Instant::now();
        let ok = match config.workload {
            Workload::Write => client.write(key, &value).await.is_ok(),
            Workload::ReadLinearizable => client.read(key, false).await.is_ok(),
            Workload::ReadStale => client.read(key, true).await.is_ok(),
        };
        let elapsed = started.elapsed();
        if ok {
            counters.all.fetch_add(1, Ordering::Relaxed);
        }
        if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
            if ok {
                latencies.push(elapsed.as_micros() as u64);
                counters.measured.fetch_add(1, Ordering::Relaxed);
            } else {
                errors += 1;
            }
        }
    }
    (latencies, errors)
}
