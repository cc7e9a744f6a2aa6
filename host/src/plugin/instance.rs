//! One live plugin instance: a store, the virtual world, and the four calls,
//! each bounded by fuel and the store's [`PluginLimiter`], with traps turned
//! into values.

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};

use super::code::{InstanceState, PluginCode, StateMachine, WitEntry};
use super::limiter::{LimitExceeded, PluginLimiter};
use super::rng::CallKind;
use super::sandbox::{CallContext, build_wasi};
use super::store::{Access, StoreView, envelope, writes_bytes, writes_digest};
use crate::limits::PluginLimits;

/// Where an entry sits in the log and when the leader stamped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct EntryPosition {
    /// Raft log index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// Leader wall-clock time at proposal, ms since the Unix epoch.
    pub time_ms: u64,
}

/// Why a plugin call produced no result. Deterministic: the same call on the
/// same state fails the same way on every replica.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Fault {
    /// The call used up its fuel budget (an endless or too-long computation).
    #[error("plugin ran out of fuel ({fuel} units) and was stopped")]
    OutOfFuel { fuel: u64 },
    /// The call tried to grow memory past the cap.
    #[error("plugin exceeded its memory limit of {bytes_max} bytes")]
    OutOfMemory { bytes_max: usize },
    /// Any other trap: a panic, `unreachable`, a bad memory access.
    #[error("plugin trapped: {message}")]
    Trapped { message: String },
    /// A response or snapshot larger than the host accepts.
    #[error("plugin returned {bytes} bytes, more than the {max} byte limit")]
    OversizedOutput { bytes: usize, max: usize },
}

impl Fault {
    /// Whether the instance must be discarded after this fault. An oversized
    /// output leaves the instance intact; a trap does not.
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, Fault::OversizedOutput { .. })
    }
}

/// Outcome of a call that ran to completion: the plugin's own `ok`/`err`.
pub type PluginResult = Result<Vec<u8>, String>;

/// A plugin instance with its store.
pub struct PluginInstance {
    store: Store<InstanceState>,
    bindings: StateMachine,
    call: CallContext,
    limits: PluginLimits,
    /// Fuel the last call burned, for `plugin check`'s limits report.
    fuel_used: u64,
    /// The store writes the last completed `apply` kept.
    last_kept: KeptWrites,
    /// Whether the code imports the store (its snapshots are envelopes).
    uses_store: bool,
}

/// What the store writes of one `apply` amount to (all empty: none, or
/// the call trapped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeptWrites {
    /// Their sha256 in key order, folded into the applied digest.
    pub digest: Option<[u8; 32]>,
    /// Key and value bytes written.
    pub bytes: usize,
    /// How much they grew the store's part of an envelope (negative:
    /// shrank it).
    pub size_delta: i64,
}

impl PluginInstance {
    /// Instantiate `code` in a fresh store.
    pub fn new(code: &PluginCode, limits: PluginLimits) -> Result<Self, Fault> {
        let call = CallContext::default();
        let label = code.digest().short();
        let state = InstanceState {
            wasi: build_wasi(&call, &label, code.output_gate()),
            table: ResourceTable::new(),
            limiter: PluginLimiter::new(limits.memory_bytes_max),
            call: call.clone(),
            store: StoreView::empty(),
        };
        let mut store = Store::new(code.component().engine(), state);
        store.limiter(|state| &mut state.limiter);
        call.enter(0, 0, 0, CallKind::Start);
        set_fuel(&mut store, limits.fuel_per_bulk_call);
        let bindings = code
            .pre()
            .instantiate(&mut store)
            .map_err(|error| classify(error, &limits, limits.fuel_per_bulk_call))?;
        Ok(Self {
            store,
            bindings,
            call,
            limits,
            fuel_used: 0,
            last_kept: KeptWrites::default(),
            uses_store: code.uses_store(),
        })
    }

    /// The limits calls run under.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Run every later call under `limits`.
    pub fn set_limits(&mut self, limits: PluginLimits) {
        self.limits = limits;
        self.store
            .data_mut()
            .limiter
            .set_memory_bytes_max(limits.memory_bytes_max);
    }

    /// Call `apply` for the entry at `position`.
    pub fn apply(
        &mut self,
        position: EntryPosition,
        command: &[u8],
    ) -> Result<PluginResult, Fault> {
        self.enter(position, CallKind::Apply, self.limits.fuel_per_call);
        let entry = WitEntry {
            index: position.index,
            term: position.term,
            time_ms: position.time_ms,
        };
        self.last_kept = KeptWrites::default();
        self.store.data_mut().store.access = Access::ReadWrite;
        let result = self.bindings.call_apply(&mut self.store, entry, command);
        let result = self
            .finish(result, self.limits.fuel_per_call)
            .and_then(|result| check_result_size(result, self.limits.response_bytes_max));
        // A call that ran to completion keeps its writes (even when its
        // response is refused as too large); a trap leaves no trace.
        let view = &mut self.store.data_mut().store;
        view.access = Access::Closed;
        match &result {
            Err(fault) if fault.poisons_instance() => view.drop_call(),
            _ => {
                let kept = view.keep_call();
                self.last_kept = KeptWrites {
                    digest: writes_digest(&kept.writes),
                    bytes: writes_bytes(&kept.writes),
                    size_delta: kept.size_delta,
                };
            }
        }
        result
    }

    /// The sha256 of the store writes the last `apply` kept (`None`: none).
    pub fn last_writes_digest(&self) -> Option<[u8; 32]> {
        self.last_kept.digest
    }

    /// The store writes the last `apply` kept.
    pub fn last_kept(&self) -> KeptWrites {
        self.last_kept
    }

    /// The instance's view of the store.
    pub fn store_view_mut(&mut self) -> &mut StoreView {
        &mut self.store.data_mut().store
    }

    /// Call `query` against the state after `position`.
    pub fn query(
        &mut self,
        position: EntryPosition,
        request: &[u8],
    ) -> Result<PluginResult, Fault> {
        self.enter(position, CallKind::Query, self.limits.fuel_per_call);
        self.store.data_mut().store.access = Access::ReadOnly;
        let result = self.bindings.call_query(&mut self.store, request);
        let view = &mut self.store.data_mut().store;
        view.access = Access::Closed;
        view.drop_call();
        let result = self.finish(result, self.limits.fuel_per_call)?;
        check_result_size(result, self.limits.response_bytes_max)
    }

    /// Call `snapshot` on the state after `position`.
    pub fn snapshot(&mut self, position: EntryPosition) -> Result<Vec<u8>, Fault> {
        self.enter(position, CallKind::Snapshot, self.limits.fuel_per_bulk_call);
        let result = self.bindings.call_snapshot(&mut self.store);
        let bytes = self.finish(result, self.limits.fuel_per_bulk_call)?;
        if bytes.len() > self.limits.snapshot_bytes_max {
            return Err(Fault::OversizedOutput {
                bytes: bytes.len(),
                max: self.limits.snapshot_bytes_max,
            });
        }
        Ok(bytes)
    }

    /// [`PluginInstance::snapshot`], enveloped with the store's contents
    /// when the plugin uses the store (as the runtime's snapshots are): for
    /// `plugin check`, whose instances keep their store in memory (the
    /// runtime snapshots its state file instead).
    pub fn snapshot_with_store(&mut self, position: EntryPosition) -> Result<Vec<u8>, Fault> {
        let bytes = self.snapshot(position)?;
        if !self.uses_store {
            return Ok(bytes);
        }
        let entries = self
            .store
            .data()
            .store
            .all_entries()
            .map_err(|error| Fault::Trapped {
                message: error.to_string(),
            })?;
        Ok(envelope::encode(&bytes, &entries))
    }

    /// [`PluginInstance::restore`] of what
    /// [`PluginInstance::snapshot_with_store`] wrote: the store's contents
    /// go into this instance's store, in memory. `written_by_store`:
    /// whether the code that wrote `snapshot` imports the store, so it is an
    /// envelope (decided by the writer, never by the bytes, as the cluster
    /// does; see [`envelope::split_for`] for what a plugin takes over).
    pub fn restore_with_store(
        &mut self,
        position: EntryPosition,
        snapshot: &[u8],
        written_by_store: bool,
    ) -> Result<Result<(), String>, Fault> {
        if !written_by_store {
            return self.restore(position, snapshot);
        }
        let (plugin_part, entries) = match envelope::split_for(self.uses_store, snapshot) {
            Ok(split) => split,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let restored = self.restore(position, plugin_part)?;
        if restored.is_ok() {
            self.store.data_mut().store = StoreView::from_entries(entries.to_vec());
        }
        Ok(restored)
    }

    /// Call `restore` with a snapshot taken after `position`.
    pub fn restore(
        &mut self,
        position: EntryPosition,
        snapshot: &[u8],
    ) -> Result<Result<(), String>, Fault> {
        self.enter(position, CallKind::Restore, self.limits.fuel_per_bulk_call);
        let result = self.bindings.call_restore(&mut self.store, snapshot);
        self.finish(result, self.limits.fuel_per_bulk_call)
    }

    /// Fuel the last call burned (all of its budget if it ran out).
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }

    /// Bytes the instance's linear memories hold now.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes()
    }

    fn enter(&mut self, position: EntryPosition, kind: CallKind, fuel: u64) {
        self.call
            .enter(position.index, position.term, position.time_ms, kind);
        set_fuel(&mut self.store, fuel);
    }

    fn finish<T>(&mut self, result: wasmtime::Result<T>, fuel: u64) -> Result<T, Fault> {
        // Fuel is always enabled on our engine; a failed read counts as none left.
        self.fuel_used = fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        // Output dropped past the call's cap is counted and warned about,
        // at a bounded rate, by the node's output gate.
        result.map_err(|error| classify(error, &self.limits, fuel))
    }
}

fn set_fuel(store: &mut Store<InstanceState>, fuel: u64) {
    // Fuel is always enabled on our engine, so this cannot fail.
    store
        .set_fuel(fuel)
        .expect("the plugin engine is configured with fuel");
}

fn check_result_size(result: PluginResult, max: usize) -> Result<PluginResult, Fault> {
    let length = match &result {
        Ok(bytes) => bytes.len(),
        Err(message) => message.len(),
    };
    if length > max {
        return Err(Fault::OversizedOutput { bytes: length, max });
    }
    Ok(result)
}

fn classify(error: wasmtime::Error, limits: &PluginLimits, fuel: u64) -> Fault {
    let out_of_memory = Fault::OutOfMemory {
        bytes_max: limits.memory_bytes_max,
    };
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Fault::OutOfFuel { fuel },
        Some(Trap::AllocationTooLarge) => out_of_memory,
        // The trap code alone, not the backtrace, which can differ between
        // host builds and would otherwise leak into replicated results.
        Some(trap) => Fault::Trapped {
            message: trap.to_string(),
        },
        None => match limit_exceeded(&error) {
            Some(LimitExceeded::Memory { .. }) => out_of_memory,
            Some(table @ LimitExceeded::Table { .. }) => Fault::Trapped {
                message: table.to_string(),
            },
            None => Fault::Trapped {
                message: error.root_cause().to_string(),
            },
        },
    }
}

/// The refusal of our [`PluginLimiter`] behind `error`, if that is what it is.
fn limit_exceeded(error: &wasmtime::Error) -> Option<&LimitExceeded> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<LimitExceeded>())
}
