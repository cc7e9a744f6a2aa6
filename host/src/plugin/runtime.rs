//! The replicated state machine as the host drives it: one plugin instance
//! plus what it takes to rebuild that instance deterministically.
//!
//! A trap leaves an instance in an unknown state, so it is discarded. The
//! runtime keeps a base snapshot and a journal of every entry applied since,
//! and rebuilds by restoring the base into a fresh instance and replaying the
//! journal (trapped entries are never journaled). Every replica does the same,
//! so every replica ends in the same state whatever its snapshot timing.
//! Each journaled entry keeps how it ended (accepted, rejected, or with an
//! oversized response); a replay must end every entry the same way, and a
//! rebuild that cannot is a [`RebuildError`]. Until a rebuild succeeds there
//! is no instance at all, so a crashed one never serves another call.

use super::code::PluginCode;
use super::instance::{EntryPosition, Fault, PluginInstance, PluginResult};
use super::journal::{Journal, Outcome};
use crate::limits::PluginLimits;

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

/// The plugin instance plus its rebuild journal.
pub struct FsmRuntime {
    code: PluginCode,
    limits: PluginLimits,
    /// `None` after a trap whose rebuild failed.
    instance: Option<PluginInstance>,
    journal: Journal,
    last_applied: Option<EntryPosition>,
}

impl FsmRuntime {
    /// A runtime holding a fresh, empty instance of `code`.
    pub fn new(code: PluginCode, limits: PluginLimits) -> Result<Self, Fault> {
        let instance = PluginInstance::new(&code, limits)?;
        Ok(Self {
            code,
            limits,
            instance: Some(instance),
            journal: Journal::new(None),
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
            instance: Some(instance),
            journal: Journal::new(Some((position, snapshot))),
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
        let result = self.instance()?.apply(position, &command);
        self.last_applied = Some(position);
        if let Err(fault) = &result {
            tracing::warn!(
                index = position.index,
                "entry failed in the plugin: {fault}"
            );
        }
        match Outcome::of(&result) {
            // The call completed and may have changed state (even when its
            // output was refused), so it belongs in the journal.
            Some(outcome) => {
                self.journal.push(position, command, outcome);
                self.compact_journal_if_full();
            }
            None => self.rebuild()?,
        }
        Ok(match result {
            Ok(result) => result.map_err(ApplyError::Rejected),
            Err(fault) => Err(ApplyError::Fault(fault)),
        })
    }

    /// Answer a read against the current state.
    pub fn query(&mut self, request: &[u8]) -> Result<Result<PluginResult, Fault>, RebuildError> {
        let position = self.query_position();
        let result = self.instance()?.query(position, request);
        if let Err(fault) = &result
            && fault.poisons_instance()
        {
            self.rebuild()?;
        }
        Ok(result)
    }

    /// Serialize the current state. The bytes also become the new rebuild
    /// base, which empties the journal.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, Fault> {
        let position = self.query_position();
        let instance = match self.instance() {
            Ok(instance) => instance,
            Err(error) => {
                return Err(Fault::Trapped {
                    message: error.to_string(),
                });
            }
        };
        match instance.snapshot(position) {
            Ok(bytes) => {
                self.journal.rebase(position, bytes.clone());
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

    /// The live instance, rebuilt first if the last rebuild failed.
    fn instance(&mut self) -> Result<&mut PluginInstance, RebuildError> {
        if self.instance.is_none() {
            self.rebuild()?;
        }
        Ok(self
            .instance
            .as_mut()
            .expect("a successful rebuild leaves an instance"))
    }

    fn compact_journal_if_full(&mut self) {
        if self.journal.wants_base()
            && let Err(fault) = self.snapshot()
        {
            tracing::warn!("could not take a rebuild snapshot, keeping the journal: {fault}");
        }
    }

    /// Replace the instance by base + journal replay. The old instance is
    /// dropped first: whatever happens, it never runs another call.
    fn rebuild(&mut self) -> Result<(), RebuildError> {
        self.instance = None;
        let started = std::time::Instant::now();
        let instance = self.journal.rebuild(&self.code, self.limits)?;
        tracing::info!(
            replayed = self.journal.entries().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rebuilt plugin instance after a trap"
        );
        self.instance = Some(instance);
        Ok(())
    }
}
