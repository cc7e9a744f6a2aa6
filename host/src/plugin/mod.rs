//! The plugin runtime: loads a state-machine component and runs it
//! deterministically.
//!
//! - [`code`]: engine configuration, validation, digests, compiled cache.
//! - [`cache`]: the compiled cache's files, authenticated.
//! - [`check`]: `plugin check`: determinism, snapshot and upgrade checks of
//!   a plugin run through a command file, with no cluster.
//! - [`sandbox`]: the virtual WASI world (clocks, randomness, output).
//! - [`output`], [`output_gate`]: what of a plugin's output reaches the
//!   log: per call, and per node over time.
//! - [`rng`]: the randomness algorithm we own.
//! - [`limiter`]: what one instance may allocate, totalled over all its
//!   memories and tables.
//! - [`instance`]: one instance and its four calls, bounded by fuel and memory.
//! - [`journal`]: a base snapshot plus the entries applied since, with their
//!   outcomes, and the checked replay that rebuilds an instance from them.
//! - [`runtime`]: the instance that applies, the one that serves reads, and
//!   the journal that rebuilds either.
//! - [`native`]: state machines written in Rust, for embedding (no wasm).
//! - [`store`]: the ordered key-value store plugins may import, on redb.
//! - [`machine`]: either kind, as the worker runs it.
//! - [`worker`]: the thread that owns the machine and its async handle.
//!
//! wasmtime is used nowhere else in the host.

pub mod cache;
pub mod check;
pub mod code;
pub mod instance;
pub mod journal;
pub mod limiter;
pub mod machine;
pub mod native;
pub mod output;
pub mod output_gate;
pub mod rng;
pub mod runtime;
pub mod sandbox;
pub mod store;
pub mod worker;

pub use code::{LoadError, PluginCode, PluginDigest, PluginEngine, PluginReport};
pub use instance::{EntryPosition, Fault, PluginResult};
pub use machine::Machine;
pub use native::{NativeMachine, StateMachine};
pub use runtime::{ApplyError, FsmRuntime, RebuildError, RestoreError, SavedState, Usage};
pub use worker::{AppliedEntry, ApplyOutcome, PluginHandle, PluginSnapshot, WorkerError};
