//! The state machine the plugin worker runs: a wasm plugin (with its
//! applier, reader and journal) or, for programs that embed clusterhost, a
//! native one. The worker treats both alike.

use std::sync::Arc;

use super::instance::{EntryPosition, Fault, PluginResult};
use super::native::NativeMachine;
use super::runtime::{FsmRuntime, RebuildError, Usage};
use super::worker::ApplyOutcome;
use crate::limits::PluginLimits;

/// A running state machine.
pub enum Machine {
    /// A wasm component (boxed: it is large, and one exists per node).
    Plugin(Box<FsmRuntime>),
    /// Rust code in this process.
    Native(NativeMachine),
}

impl Machine {
    /// Apply one committed command.
    pub fn apply(
        &mut self,
        position: EntryPosition,
        command: Vec<u8>,
    ) -> Result<ApplyOutcome, RebuildError> {
        match self {
            Machine::Plugin(runtime) => runtime.apply(position, command),
            Machine::Native(machine) => Ok(machine.apply(position, &command)),
        }
    }

    /// Commit the store writes of the entries applied since the last
    /// commit (see [`FsmRuntime::commit_store_writes`]).
    pub fn commit_store_writes(&mut self) {
        if let Machine::Plugin(runtime) = self {
            runtime.commit_store_writes();
        }
    }

    /// Whether its snapshots are envelopes with the store.
    pub fn uses_store(&self) -> bool {
        match self {
            Machine::Plugin(runtime) => runtime.code().uses_store(),
            Machine::Native(_) => false,
        }
    }

    /// The digest of the last applied entry's store writes, if any.
    pub fn last_writes_digest(&self) -> Option<[u8; 32]> {
        match self {
            Machine::Plugin(runtime) => runtime.last_writes_digest(),
            Machine::Native(_) => None,
        }
    }

    /// Answer a read.
    pub fn query(&mut self, request: &[u8]) -> Result<Result<PluginResult, Fault>, RebuildError> {
        match self {
            Machine::Plugin(runtime) => runtime.query(request),
            Machine::Native(machine) => Ok(machine.query(request)),
        }
    }

    /// The state after the last applied entry.
    pub fn snapshot(&mut self) -> Result<Result<Vec<u8>, Fault>, RebuildError> {
        match self {
            Machine::Plugin(runtime) => runtime.snapshot(),
            Machine::Native(machine) => Ok(machine.snapshot()),
        }
    }

    /// What snapshots record as the code: the component's bytes, or a
    /// native machine's marker.
    pub fn code(&self) -> Arc<[u8]> {
        match self {
            Machine::Plugin(runtime) => runtime.code().bytes().clone(),
            Machine::Native(machine) => machine.code(),
        }
    }

    /// The last entry applied (or the snapshot position restored from).
    pub fn last_applied(&self) -> Option<EntryPosition> {
        match self {
            Machine::Plugin(runtime) => runtime.last_applied(),
            Machine::Native(machine) => machine.last_applied(),
        }
    }

    /// How large the state was last seen, in bytes.
    pub fn state_size_bytes(&self) -> Option<usize> {
        match self {
            Machine::Plugin(runtime) => runtime.state_size_bytes(),
            Machine::Native(machine) => machine.state_size_bytes(),
        }
    }

    /// Run later calls under `limits`.
    pub fn set_limits(&mut self, limits: PluginLimits) {
        match self {
            Machine::Plugin(runtime) => runtime.set_limits(limits),
            Machine::Native(machine) => machine.set_limits(limits),
        }
    }

    /// A plugin's fuel and rebuilds since last asked, and its memory now
    /// (`None` for a native machine).
    pub fn take_usage(&mut self) -> Option<Usage> {
        match self {
            Machine::Plugin(runtime) => Some(runtime.take_usage()),
            Machine::Native(_) => None,
        }
    }

    /// Let a plugin's reader catch up by up to `entries_max` entries; whether
    /// there is more to do.
    pub fn advance_reader(&mut self, entries_max: usize) -> bool {
        match self {
            Machine::Plugin(runtime) => runtime.advance_reader(entries_max),
            Machine::Native(_) => false,
        }
    }
}
