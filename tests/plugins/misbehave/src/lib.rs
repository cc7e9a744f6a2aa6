//! TEST-ONLY plugin that misbehaves on command, so the host's sandbox is tested
//! against a real component: fuel stops `spin`, the memory cap stops `alloc`,
//! traps are contained, and the virtual WASI world (clocks, randomness, env,
//! filesystem, stdio) answers deterministically.
//!
//! Commands (JSON strings):
//! - `"incr"` → the new count (a number)
//! - `"spin"` → never returns (loops until the host's fuel runs out)
//! - `"panic"` → traps
//! - `"alloc"` → grows memory by 1 MiB chunks until allocation traps
//! - `{"alloc_mib":N}` → `"ok"` after holding N MiB at once (one block,
//!   touched, then freed): succeeds only if the heap has room for it
//! - `{"respond_bytes":N}` → a string of N `x`s: a response as large as asked
//! - `{"sleep_ms":N}` → `{"elapsed_ns":u64}` after `std::thread::sleep` for N
//!   ms, with the monotonic time that passed meanwhile
//! - `"clock"` → `{"wall_ms":u64,"monotonic_ns":u64}` (SystemTime; the raw
//!   `wasi:clocks/monotonic-clock.now` reading)
//! - `"random"` → `{"getrandom":"<32 hex digits>","insecure":u64}`
//! - `"env"` → `{"vars":N,"args":N}`
//! - `"fs"` → `{"read_dir":"<error or ok: N entries>","read":"<error or ok: N bytes>"}`
//! - `"print"` → `"ok"` after writing 1 MiB to stdout and 1 MiB to stderr
//! - `"reject"` → `Err("rejected on purpose")`
//!
//! Every successful command counts as one apply and its response is kept in a
//! bounded log, so comparing snapshots across replicas shows whether the
//! clock/random/env answers were identical everywhere.
//!
//! Queries: `"count"` → the count; `"log"` → the last results (oldest first);
//! `{"cache_mib":N}` → the MiB now cached, after keeping N more MiB in a cache
//! that lives as long as the instance (as a plugin memoizing reads would: no
//! answer changes, but the heap stays grown); `"panic"` → traps.
//! Snapshot: `{"version":1,"count":N,"log":[...]}`.

use clusterhost_sdk::{Entry, StateMachine};
use serde::Deserialize;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use test_plugins_common::spin;

/// Results kept in the log; older ones are dropped.
pub const LOG_CAPACITY: usize = 64;
/// Size of each allocation `alloc` makes.
pub const ALLOC_CHUNK_BYTES: usize = 1 << 20;
/// Bytes `print` writes to each of stdout and stderr.
pub const PRINT_BYTES: usize = 1 << 20;
/// Random bytes `random` draws through getrandom.
const RANDOM_BYTES: usize = 16;
const SNAPSHOT_VERSION: u32 = 1;

/// Count of successful applies plus the most recent results.
#[derive(Debug, Default)]
pub struct Misbehave {
    count: u64,
    log: VecDeque<Value>,
    /// What `{"cache_mib":N}` queries keep: not state, never in a snapshot.
    cache: RefCell<Vec<Vec<u8>>>,
}

/// Commands: plain JSON strings such as `"spin"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Incr,
    Spin,
    Panic,
    Alloc,
    AllocMib(usize),
    RespondBytes(usize),
    SleepMs(u64),
    Clock,
    Random,
    Env,
    Fs,
    Print,
    Reject,
}

/// Queries: `"count"`, `"log"`, `{"cache_mib":N}` or `"panic"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    Count,
    Log,
    CacheMib(usize),
    Panic,
}

#[derive(Deserialize)]
struct Snapshot {
    version: u32,
    count: u64,
    log: VecDeque<Value>,
}

impl StateMachine for Misbehave {
    type Command = Command;
    type Response = Value;
    type Query = Query;
    type QueryResponse = Value;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Value, String> {
        let result = match command {
            Command::Incr => json!(self.count + 1),
            Command::Spin => spin(),
            Command::Panic => panic!("panicking on purpose"),
            Command::Alloc => allocate_forever(),
            Command::AllocMib(mib) => allocate(mib),
            Command::RespondBytes(bytes) => json!("x".repeat(bytes)),
            Command::SleepMs(duration_ms) => sleep(duration_ms),
            Command::Clock => clock(),
            Command::Random => random()?,
            Command::Env => {
                json!({"vars": std::env::vars_os().count(), "args": std::env::args_os().count()})
            }
            Command::Fs => filesystem(),
            Command::Print => print()?,
            Command::Reject => return Err("rejected on purpose".into()),
        };
        self.count += 1;
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(result.clone());
        Ok(result)
    }

    fn query(&self, query: Query) -> Result<Value, String> {
        Ok(match query {
            Query::Count => json!(self.count),
            Query::Log => json!(self.log),
            Query::CacheMib(mib) => {
                let mut cache = self.cache.borrow_mut();
                cache.extend((0..mib).map(|_| vec![1; ALLOC_CHUNK_BYTES]));
                json!(cache.len())
            }
            Query::Panic => panic!("panicking on purpose"),
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        let snapshot = json!({"version": SNAPSHOT_VERSION, "count": self.count, "log": self.log});
        serde_json::to_vec(&snapshot).expect("misbehave snapshot serializes")
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        let snapshot: Snapshot = serde_json::from_slice(snapshot)
            .map_err(|error| format!("malformed misbehave snapshot: {error}"))?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(format!(
                "unsupported misbehave snapshot version {}",
                snapshot.version
            ));
        }
        Ok(Misbehave {
            count: snapshot.count,
            log: snapshot.log,
            cache: RefCell::default(),
        })
    }
}

/// Keep 1 MiB chunks alive until the allocator fails, which aborts (traps).
fn allocate_forever() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch the memory so the allocation is real, not elided.
        chunks.push(vec![1; ALLOC_CHUNK_BYTES]);
        std::hint::black_box(&chunks);
    }
}

/// Hold `mib` MiB in one block (touched, so the allocation is real), then
/// free it.
fn allocate(mib: usize) -> Value {
    let block = vec![1u8; mib * ALLOC_CHUNK_BYTES];
    std::hint::black_box(&block);
    json!("ok")
}

/// Sleep through `std::thread::sleep`, which on wasm32-wasip2 blocks on a
/// `wasi:clocks/monotonic-clock` pollable, and report the time that passed.
fn sleep(duration_ms: u64) -> Value {
    let started = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(duration_ms));
    json!({"elapsed_ns": started.elapsed().as_nanos() as u64})
}

fn clock() -> Value {
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    json!({"wall_ms": wall_ms, "monotonic_ns": monotonic_ns()})
}

/// `Instant` hides its raw value, so read the WASI clock `Instant` uses.
#[cfg(target_arch = "wasm32")]
fn monotonic_ns() -> u64 {
    wasip2::clocks::monotonic_clock::now()
}

/// Natively (unit tests only) there is no raw reading: time since first use.
#[cfg(not(target_arch = "wasm32"))]
fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

fn random() -> Result<Value, String> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| format!("getrandom failed: {error}"))?;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(json!({"getrandom": hex, "insecure": insecure_random()}))
}

#[cfg(target_arch = "wasm32")]
fn insecure_random() -> u64 {
    wasip2::random::insecure::get_insecure_random_u64()
}

#[cfg(not(target_arch = "wasm32"))]
fn insecure_random() -> u64 {
    0
}

fn filesystem() -> Value {
    let read_dir = match std::fs::read_dir("/") {
        Ok(entries) => format!("ok: {} entries", entries.count()),
        Err(error) => error.to_string(),
    };
    let read = match std::fs::read("/etc/passwd") {
        Ok(bytes) => format!("ok: {} bytes", bytes.len()),
        Err(error) => error.to_string(),
    };
    json!({"read_dir": read_dir, "read": read})
}

fn print() -> Result<Value, String> {
    let line = [b'x'; 1023];
    for _ in 0..PRINT_BYTES / (line.len() + 1) {
        // Errors (a closed stream) are reported, not panicked on.
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&line)
            .and_then(|()| stdout.write_all(b"\n"))
            .map_err(|error| format!("stdout: {error}"))?;
        let mut stderr = std::io::stderr().lock();
        stderr
            .write_all(&line)
            .and_then(|()| stderr.write_all(b"\n"))
            .map_err(|error| format!("stderr: {error}"))?;
    }
    std::io::stdout()
        .flush()
        .map_err(|error| format!("stdout: {error}"))?;
    Ok(json!("ok"))
}

clusterhost_sdk::export_state_machine!(Misbehave);

#[cfg(test)]
mod tests {
    //! Goal: the harmless commands behave as documented natively (the
    //! harmful ones are exercised by the host's tests against the component).
    use super::*;
    use clusterhost_sdk::testing::Harness;

    #[test]
    fn counts_successful_applies_only() {
        let mut plugin = Harness::<Misbehave>::new();
        assert_eq!(plugin.apply(&"incr"), Ok(json!(1)));
        assert_eq!(
            plugin.apply(&"reject"),
            Err("rejected on purpose".to_string())
        );
        assert_eq!(plugin.apply(&"incr"), Ok(json!(2)));
        assert!(
            plugin
                .apply(&"fly")
                .unwrap_err()
                .starts_with("malformed command")
        );
        assert_eq!(plugin.query(&"count"), Ok(json!(2)));
        assert_eq!(plugin.query(&"log"), Ok(json!([1, 2])));
    }

    #[test]
    fn reports_the_outside_world() {
        let mut plugin = Harness::<Misbehave>::new();
        let clock = plugin.apply(&"clock").unwrap();
        assert!(
            clock["wall_ms"].is_u64() && clock["monotonic_ns"].is_u64(),
            "{clock}"
        );
        let random = plugin.apply(&"random").unwrap();
        assert_eq!(
            random["getrandom"].as_str().map(str::len),
            Some(2 * RANDOM_BYTES)
        );
        let env = plugin.apply(&"env").unwrap();
        assert!(env["vars"].is_u64() && env["args"].is_u64(), "{env}");
        let fs = plugin.apply(&"fs").unwrap();
        assert!(fs["read_dir"].is_string() && fs["read"].is_string(), "{fs}");
    }

    #[test]
    fn sized_commands_and_the_query_cache() {
        let mut plugin = Harness::<Misbehave>::new();
        assert_eq!(plugin.apply(&json!({"alloc_mib": 2})), Ok(json!("ok")));
        assert_eq!(plugin.apply(&json!({"respond_bytes": 3})), Ok(json!("xxx")));
        let slept = plugin.apply(&json!({"sleep_ms": 1})).unwrap();
        assert!(slept["elapsed_ns"].is_u64(), "{slept}");
        let before = plugin.snapshot();
        assert_eq!(plugin.query(&json!({"cache_mib": 2})), Ok(json!(2)));
        assert_eq!(plugin.query(&json!({"cache_mib": 1})), Ok(json!(3)));
        assert_eq!(plugin.snapshot(), before, "the cache is not state");
        assert_eq!(plugin.query(&"count"), Ok(json!(3)));
    }

    #[test]
    fn log_is_bounded_and_snapshots_roundtrip() {
        let mut plugin = Harness::<Misbehave>::new();
        for _ in 0..LOG_CAPACITY + 3 {
            plugin.apply(&"incr").unwrap();
        }
        let log = plugin.query(&"log").unwrap();
        assert_eq!(log.as_array().map(Vec::len), Some(LOG_CAPACITY));
        assert_eq!(log[0], json!(4));
        plugin.assert_snapshot_roundtrip_with_queries(&["count", "log"]);
        assert!(
            plugin
                .restore(br#"{"version":2,"count":0,"log":[]}"#)
                .is_err()
        );
    }
}
