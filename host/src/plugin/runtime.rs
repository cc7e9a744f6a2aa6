//! The replicated state machine as the host drives it: one plugin instance
//! plus what it takes to rebuild that instance deterministically.
//!
//! A trap leaves an instance in an unknown state, so it is discarded. The
//! runtime keeps a base snapshot and a journal of every entry applied since,
//! and rebuilds by restoring the base into a fresh instance and replaying the
//! journal (trapped entries are never journaled). Every replica does the same,
//! so every replica ends in the same state whatever its snapshot timing.

use super::code::PluginCode;
use super::instance::{EntryPosition, Fault, PluginInstance, PluginResult};
use crate::limits::{
    PluginLimits, REPLAY_JOURNAL_BASE_MULTIPLE, REPLAY_JOURNAL_BYTES_MAX, REPLAY_JOURNAL_BYTES_MIN,
    REPLAY_JOURNAL_ENTRY_OVERHEAD_BYTES,
};

/// Why an entry produced no response from the plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ApplyError {
    /// The plugin returned `err`: an application-level rejection.
    #[error("{0}")]
    Rejected(String),
    /// The call trapped or hit a limit; the entry changed nothing.
    #[error("{0}")]
    Fault(Fault),
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum RestoreError {
    /// The plugin's `restore` returned `err`.
    #[error("plugin refused the snapshot: {0}")]
    Refused(String),
    /// `restore` (or instantiation) trapped or hit a limit.
    #[error("plugin failed while restoring: {0}")]
    Fault(Fault),
}

/// A failure the runtime cannot turn into a per-entry result: the plugin
/// could not reproduce its own state. Every replica hits it at the same
/// entry, and the node must stop rather than guess.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin could not rebuild its state after a trap: {0}")]
pub struct RebuildError(pub String);

/// A state the runtime can rebuild from.
#[derive(Debug, Clone, Default)]
struct Base {
    /// Snapshot bytes and the position they were taken at; `None` means
    /// the empty state of a fresh instance.
    snapshot: Option<(EntryPosition, Vec<u8>)>,
}

/// The plugin instance plus its rebuild journal.
pub struct FsmRuntime {
    code: PluginCode,
    limits: PluginLimits,
    instance: PluginInstance,
    base: Base,
    journal: Vec<(EntryPosition, Vec<u8>)>,
    journal_bytes: usize,
    last_applied: Option<EntryPosition>,
}

impl FsmRuntime {
    /// A runtime holding a fresh, empty instance of `code`.
    pub fn new(code: PluginCode, limits: PluginLimits) -> Result<Self, Fault> {
        let instance = PluginInstance::new(&code, limits)?;
        Ok(Self {
            code,
            limits,
            instance,
            base: Base::default(),
            journal: Vec::new(),
            journal_bytes: 0,
            last_applied: None,
        })
    }

    /// A runtime whose state is `snapshot`, taken after `position`.
    pub fn from_snapshot(
        code: PluginCode,
        limits: PluginLimits,
        position: EntryPosition,
        snapshot: Vec<u8>,
    ) -> Result<Self, RestoreError> {
        let mut instance = PluginInstance::new(&code, limits).map_err(RestoreError::Fault)?;
        instance
            .restore(position, &snapshot)
            .map_err(RestoreError::Fault)?
            .map_err(RestoreError::Refused)?;
        Ok(Self {
            code,
            limits,
            instance,
            base: Base {
                snapshot: Some((position, snapshot)),
            },
            journal: Vec::new(),
            journal_bytes: 0,
            last_applied: Some(position),
        })
    }

    /// The plugin code this runtime runs.
    pub fn code(&self) -> &PluginCode {
        &self.code
    }

    /// The bounds every call runs under.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// The last entry applied (or the snapshot position restored from).
    pub fn last_applied(&self) -> Option<EntryPosition> {
        self.last_applied
    }

    /// Apply one committed command. The runtime keeps the bytes for its
    /// replay journal, so it takes them rather than copying.
    pub fn apply(
        &mut self,
        position: EntryPosition,
        command: Vec<u8>,
    ) -> Result<Result<Vec<u8>, ApplyError>, RebuildError> {
        if let Some(last) = self.last_applied {
            assert!(
                position.index > last.index,
                "applied index must increase: {} after {}",
                position.index,
                last.index
            );
        }
        self.last_applied = Some(position);
        match self.instance.apply(position, &command) {
            Ok(result) => {
                self.journal_push(position, command);
                self.compact_journal_if_full();
                Ok(result.map_err(ApplyError::Rejected))
            }
            Err(fault) => {
                tracing::warn!(
                    index = position.index,
                    "entry failed in the plugin: {fault}"
                );
                if fault.poisons_instance() {
                    self.rebuild()?;
                } else {
                    // The call completed and may have changed state, so it
                    // belongs in the journal even though its output was refused.
                    self.journal_push(position, command);
                }
                Ok(Err(ApplyError::Fault(fault)))
            }
        }
    }

    /// Answer a read against the current state.
    pub fn query(&mut self, request: &[u8]) -> Result<Result<PluginResult, Fault>, RebuildError> {
        let position = self.query_position();
        match self.instance.query(position, request) {
            Ok(result) => Ok(Ok(result)),
            Err(fault) => {
                if fault.poisons_instance() {
                    self.rebuild()?;
                }
                Ok(Err(fault))
            }
        }
    }

    /// Serialize the current state. The bytes also become the new rebuild
    /// base, which empties the journal.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, Fault> {
        let position = self.query_position();
        match self.instance.snapshot(position) {
            Ok(bytes) => {
                self.base = Base {
                    snapshot: Some((position, bytes.clone())),
                };
                self.journal.clear();
                self.journal_bytes = 0;
                Ok(bytes)
            }
            Err(fault) => {
                if fault.poisons_instance()
                    && let Err(error) = self.rebuild()
                {
                    tracing::error!("{error}");
                }
                Err(fault)
            }
        }
    }

    fn query_position(&self) -> EntryPosition {
        self.last_applied.unwrap_or(EntryPosition {
            index: 0,
            term: 0,
            time_ms: 0,
        })
    }

    fn journal_push(&mut self, position: EntryPosition, command: Vec<u8>) {
        self.journal_bytes += command.len() + REPLAY_JOURNAL_ENTRY_OVERHEAD_BYTES;
        self.journal.push((position, command));
    }

    /// A new base costs a snapshot of the whole state; a long journal costs
    /// replay time after a trap. Taking a base once the journal outgrows a
    /// multiple of the last snapshot keeps the snapshot cost per entry
    /// constant however large the state, and a rebuild proportional to it.
    fn compact_journal_if_full(&mut self) {
        let base_bytes = self
            .base
            .snapshot
            .as_ref()
            .map_or(0, |(_, bytes)| bytes.len());
        let budget = (base_bytes * REPLAY_JOURNAL_BASE_MULTIPLE)
            .clamp(REPLAY_JOURNAL_BYTES_MIN, REPLAY_JOURNAL_BYTES_MAX);
        let full = self.journal_bytes >= budget;
        if full && let Err(fault) = self.snapshot() {
            tracing::warn!("could not take a rebuild snapshot, keeping the journal: {fault}");
        }
    }

    /// Replace the instance by base + journal replay.
    fn rebuild(&mut self) -> Result<(), RebuildError> {
        let started = std::time::Instant::now();
        let mut instance = PluginInstance::new(&self.code, self.limits)
            .map_err(|fault| RebuildError(fault.to_string()))?;
        if let Some((position, bytes)) = &self.base.snapshot {
            instance
                .restore(*position, bytes)
                .map_err(|fault| RebuildError(fault.to_string()))?
                .map_err(RebuildError)?;
        }
        for (position, command) in &self.journal {
            // A replayed entry ran to completion before, so it does again; a
            // fault now means the plugin is not deterministic.
            // Its `ok`/`err` was already reported when it first applied.
            let _reported_before = instance
                .apply(*position, command)
                .map_err(|fault| RebuildError(format!("entry {}: {fault}", position.index)))?;
        }
        tracing::info!(
            replayed = self.journal.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rebuilt plugin instance after a trap"
        );
        self.instance = instance;
        Ok(())
    }
}
