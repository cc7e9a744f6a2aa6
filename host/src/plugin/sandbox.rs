//! The virtual WASI world a plugin runs in.
//!
//! Nothing here reaches the real machine: clocks read the time stamped on the
//! entry being applied, randomness is a stream seeded from its log position,
//! there is no environment, no arguments, no filesystem and no network, and
//! stdout/stderr go to the host's log, truncated. Every replica therefore
//! hands the plugin the same world for the same entry.
//!
//! Time does not pass during a call: wasmtime-wasi's own
//! `wasi:clocks/monotonic-clock` would make `subscribe-duration` and
//! `subscribe-instant` pollables that sleep in real time (a plugin calling
//! `std::thread::sleep` would stall every replica), so the engine shadows that
//! interface with [`VirtualMonotonicClockHost`], whose pollables are ready at
//! once. A plugin spinning until time passes runs out of fuel instead, at the
//! same instruction on every replica.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult, subscribe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::output::{OutputBudget, escape_for_log};
use super::output_gate::OutputGate;
use super::rng::{CallKind, LogSeededRng};
use crate::limits::PLUGIN_OUTPUT_BYTES_PER_CALL_MAX;

/// The log position and time of the call in progress, shared by the virtual
/// clocks and the random stream of one instance.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    inner: Arc<Mutex<CallState>>,
}

#[derive(Debug)]
struct CallState {
    time_ms: u64,
    rng: LogSeededRng,
    output: OutputBudget,
}

impl Default for CallState {
    fn default() -> Self {
        Self {
            time_ms: 0,
            rng: LogSeededRng::for_position(0, 0, CallKind::Start),
            output: OutputBudget::default(),
        }
    }
}

impl CallContext {
    /// Point the virtual world at the call of `kind` for the entry at
    /// `index`/`term`, stamped `time_ms`.
    pub fn enter(&self, index: u64, term: u64, time_ms: u64, kind: CallKind) {
        let mut state = self.lock();
        state.time_ms = time_ms;
        state.rng = LogSeededRng::for_position(index, term, kind);
        state.output = OutputBudget::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CallState> {
        // The state is plain data; a panic while holding the lock cannot leave
        // it half-written in a way that matters, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Build the WASI context for one instance: empty, with virtual clocks,
/// random and output bound to `call`, its output through the node's `gate`.
pub fn build_wasi(call: &CallContext, plugin_label: &str, gate: &OutputGate) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .wall_clock(VirtualWallClock(call.clone()))
        .monotonic_clock(VirtualMonotonicClock(call.clone()))
        .secure_random(VirtualRandom(call.clone()))
        .insecure_random(VirtualRandom(call.clone()))
        // A constant: a seed for hash-flooding protection has nothing to
        // protect inside a replicated state machine, and must not differ
        // between replicas.
        .insecure_random_seed(0)
        .stdout(LogOutput::new(call, plugin_label, gate, "stdout"))
        .stderr(LogOutput::new(call, plugin_label, gate, "stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder.build()
}

struct VirtualWallClock(CallContext);

impl HostWallClock for VirtualWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.lock().time_ms)
    }
}

/// Nanoseconds per tick of the virtual monotonic clock (one millisecond: the
/// resolution of the leader's time stamp).
const MONOTONIC_RESOLUTION_NS: u64 = 1_000_000;

impl CallContext {
    /// The virtual monotonic clock: the entry's time stamp, in nanoseconds.
    fn monotonic_ns(&self) -> u64 {
        self.lock().time_ms.saturating_mul(MONOTONIC_RESOLUTION_NS)
    }
}

struct VirtualMonotonicClock(CallContext);

impl HostMonotonicClock for VirtualMonotonicClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_RESOLUTION_NS
    }

    fn now(&self) -> u64 {
        self.0.monotonic_ns()
    }
}

/// `wasi:clocks/monotonic-clock` as plugins see it, replacing wasmtime-wasi's
/// (see the module docs): the entry's time, and pollables ready at once.
pub struct VirtualMonotonicClockHost;

impl HasData for VirtualMonotonicClockHost {
    type Data<'a> = MonotonicClockView<'a>;
}

/// What the monotonic clock's functions need from an instance's store.
pub struct MonotonicClockView<'a> {
    /// The call in progress, whose time the clock reads.
    pub call: &'a CallContext,
    /// Where the pollables the clock hands out live.
    pub table: &'a mut ResourceTable,
}

impl monotonic_clock::Host for MonotonicClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.call.monotonic_ns())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(MONOTONIC_RESOLUTION_NS)
    }

    fn subscribe_instant(
        &mut self,
        _when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let ready = self.table.push(ReadyAtOnce)?;
        subscribe(self.table, ready)
    }

    fn subscribe_duration(
        &mut self,
        _duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let ready = self.table.push(ReadyAtOnce)?;
        subscribe(self.table, ready)
    }
}

/// A pollable that is always ready: every wait on the virtual clock ends at
/// once, since no virtual time passes within a call.
struct ReadyAtOnce;

#[wasmtime_wasi::async_trait]
impl Pollable for ReadyAtOnce {
    async fn ready(&mut self) {}
}

struct VirtualRandom(CallContext);

impl rand_core::TryRng for VirtualRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        // Truncation keeps the low half of the next word.
        Ok(self.0.lock().rng.next_u64() as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.lock().rng.next_u64())
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), Self::Error> {
        self.0.lock().rng.fill_bytes(destination);
        Ok(())
    }
}

/// Plugin stdout or stderr: forwarded to `tracing`, capped per call and
/// per node over time ([`super::output`], [`super::output_gate`]) and
/// escaped. It always accepts every byte, so a plugin's behaviour never
/// depends on either cap: which writes reach the log may differ between
/// replicas (the node's rate follows the real clock), its results cannot.
#[derive(Clone)]
struct LogOutput {
    call: CallContext,
    plugin_label: Arc<str>,
    gate: OutputGate,
    stream_name: &'static str,
}

impl LogOutput {
    fn new(
        call: &CallContext,
        plugin_label: &str,
        gate: &OutputGate,
        stream_name: &'static str,
    ) -> Self {
        Self {
            call: call.clone(),
            plugin_label: Arc::from(plugin_label),
            gate: gate.clone(),
            stream_name,
        }
    }

    fn record(&self, bytes: &[u8]) {
        let call_shown = self.call.lock().output.admit(bytes.len());
        let shown = self.gate.admit(bytes.len(), call_shown);
        if shown > 0 {
            tracing::info!(
                plugin = %self.plugin_label,
                stream = self.stream_name,
                "{}",
                escape_for_log(&bytes[..shown])
            );
        }
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI p2 is linked; p3 async streams are never requested.
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.record(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PLUGIN_OUTPUT_BYTES_PER_CALL_MAX)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}
