//! The replicated state machine as the host drives it: the plugin instance
//! that applies entries, a second instance that serves reads, and the
//! journal that rebuilds either.
//!
//! **Only the log reaches the applying instance.** The applier gets nothing
//! but committed entries (and the restores at deploy, start and snapshot
//! install). Everything else runs on the *reader*: queries, the `snapshot`
//! export (for Raft snapshots and the deploy handover) and the journal's
//! bases. Reads happen at different times on each node, and a trapped read
//! rebuilds an instance on one node only; on the applier either would leave
//! a different heap on each replica, and a command near the memory cap or the
//! fuel limit could then succeed on one replica and fail on another.
//!
//! **Rebuilds.** A trap leaves an instance in an unknown state, so it is
//! discarded. The [`Journal`] keeps a base snapshot and every entry applied
//! since (a trapped entry changed nothing and is not journaled), each with
//! how it ended; a rebuild restores the base into a fresh instance and
//! replays the journal, which must end every entry the same way, or it is a
//! [`RebuildError`]. The applier is rebuilt after each trap; until a rebuild
//! succeeds there is none, so a crashed instance never applies again.
//!
//! **The reader** is caught up lazily: before it serves, it applies the
//! journaled entries it has not seen. When it traps, or its replay ends an
//! entry differently than the applier did (its heap carries its reads), it is
//! discarded and rebuilt from base and journal at the next read. A snapshot
//! that fails on a reader that has served reads is retried once on a fresh
//! one, so whether it succeeds depends on base and journal rather than on
//! this node's reads.
//!
//! **Bases.** A new base is due once the journal outgrows its budget, which
//! depends only on the log, so replicas with the same history rebuild from
//! the same bases; a Raft snapshot is not a base. After a failed base the
//! next waits until the journal has grown by another budget.
//!
//! **The store.** For a plugin that imports the store, the applier's writes
//! go to the state file after each batch of entries, the journal's base carries a read
//! snapshot of the store beside the plugin's, and a snapshot of the whole
//! state is an envelope of both. Checkpoints make the file durable, and a
//! runtime can resume from one (`durable`); see [`super::store`].
//!
//! **Cost.** Every entry is applied twice: by the applier, and by the reader
//! when the worker is idle, at the next read, or at the latest when the next
//! base is taken. With reads or idle time between writes the reader replays
//! entries as they come; under a steady stream of writes and no reads it
//! replays a budget's worth at once when the base is due.

mod durable;

use super::code::PluginCode;
use super::instance::{EntryPosition, Fault, PluginInstance, PluginResult};
use std::path::Path;

use super::journal::{Journal, Outcome, replay};
use super::store::envelope::{self, Entries};
use super::store::{StateFile, StoreError, StoreView};
use crate::limits::PluginLimits;

/// A state to start a runtime from: a snapshot taken after `position`,
/// and whether it is an envelope of the plugin's part and the store, which
/// the code that wrote it decides ([`SavedState::written_by`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    pub position: EntryPosition,
    pub bytes: Vec<u8>,
    /// The writer used the store, so `bytes` is an envelope.
    pub enveloped: bool,
}

impl SavedState {
    /// `bytes`, written after `position` by a runtime of `code`: a store
    /// plugin's runtime writes envelopes, any other its plain state.
    pub fn written_by(code: &PluginCode, position: EntryPosition, bytes: Vec<u8>) -> Self {
        Self {
            position,
            bytes,
            enveloped: code.uses_store(),
        }
    }
}

/// Why an entry produced no response from the plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ApplyError {
    /// The plugin returned `err`: an application-level rejection.
    #[error("{0}")]
    Rejected(String),
    /// The call trapped or hit a limit. A trapped entry changed nothing;
    /// one whose response was too large ran (and may have changed state).
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
/// could not reproduce its own state from its base and journal (it is not
/// deterministic). Every replica hits it at the same entry, and the node
/// must stop rather than guess.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin could not reproduce its state: {0}")]
pub struct RebuildError(pub String);

/// What the plugin's calls cost since it was last asked, and its instances
/// as they are now: what the worker reports to the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Fuel the calls burned (not the replays, nor a base taken on the way).
    pub fuel_used: u64,
    /// Linear memory of the applying instance (0: none).
    pub applier_memory_bytes: usize,
    /// Linear memory of the reader (0: none).
    pub reader_memory_bytes: usize,
    /// Times the applier was rebuilt by replay.
    pub applier_rebuilds: u64,
    /// Times the reader was built by replay.
    pub reader_rebuilds: u64,
}

/// The instance that serves reads, and how far into the journal it is.
struct Reader {
    instance: PluginInstance,
    /// How many of the journal's entries it has applied.
    replayed: usize,
    /// Built from the current base and journal and has served no read: its
    /// state is exactly a rebuild's, so retrying on a new one is pointless.
    pristine: bool,
}

/// The applying instance, the reader and their journal.
pub struct FsmRuntime {
    code: PluginCode,
    limits: PluginLimits,
    /// `None` after a trap whose rebuild failed.
    applier: Option<PluginInstance>,
    /// `None` until the first read, and after one trapped.
    reader: Option<Reader>,
    journal: Journal,
    last_applied: Option<EntryPosition>,
    /// Bytes of the plugin's own part in the last snapshot, or in the one
    /// refused as too large.
    plugin_part_bytes: Option<usize>,
    /// The store's file, for a plugin that imports the store.
    store: Option<StateFile>,
    /// The bytes the store takes in an envelope, kept up to date with every
    /// applied entry, so the state quota and the snapshot bound see the
    /// store as it is now (0: the plugin has no store).
    store_bytes: usize,
    /// The digest of the last applied entry's store writes.
    last_writes_digest: Option<[u8; 32]>,
    /// Store write bytes since the last checkpoint.
    unsaved_write_bytes: u64,
    /// The last entry whose store writes are in the applier's layer but
    /// not yet in the state file (see [`FsmRuntime::commit_store_writes`]).
    uncommitted_index: Option<u64>,
    /// Fuel and rebuilds since [`FsmRuntime::take_usage`] last ran.
    usage: Usage,
}

/// The state file failed. Not a result of any entry, so it must not become
/// one: the worker stops, and the node with it (see [`super::store`]).
fn fatal<T>(result: Result<T, StoreError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("the plugin store failed: {error}"),
    }
}

impl FsmRuntime {
    /// A runtime holding a fresh, empty instance of `code` (and, if it
    /// uses one, an empty store in memory).
    pub fn new(code: PluginCode, limits: PluginLimits) -> Result<Self, Fault> {
        Self::new_in(code, limits, None)
    }

    /// [`FsmRuntime::new`], with the state file of a plugin that uses the
    /// store in `store_dir` (`None`: in memory).
    pub fn new_in(
        code: PluginCode,
        limits: PluginLimits,
        store_dir: Option<&Path>,
    ) -> Result<Self, Fault> {
        let mut applier = PluginInstance::new(&code, limits)?;
        let store = open_store(&code, store_dir, &Entries::NONE, &mut applier);
        let mut runtime = Self::with_applier(code, limits, applier, None);
        if store.is_some() {
            // An envelope of an empty store.
            runtime.store_bytes = envelope::HEADER_BYTES;
        }
        runtime.attach_store(store);
        Ok(runtime)
    }

    /// A runtime whose state is `snapshot`, taken after `position` by a
    /// runtime of the same `code` (a store it holds is kept in memory).
    pub fn from_snapshot(
        code: PluginCode,
        limits: PluginLimits,
        position: EntryPosition,
        snapshot: Vec<u8>,
    ) -> Result<Self, RestoreError> {
        let state = SavedState::written_by(&code, position, snapshot);
        Self::from_snapshot_in(code, limits, state, None)
    }

    /// A runtime whose state is `state`, with the state file of a plugin
    /// that uses the store in `store_dir` (`None`: in memory).
    pub fn from_snapshot_in(
        code: PluginCode,
        limits: PluginLimits,
        state: SavedState,
        store_dir: Option<&Path>,
    ) -> Result<Self, RestoreError> {
        let SavedState {
            position,
            bytes: snapshot,
            enveloped,
        } = state;
        let mut applier = PluginInstance::new(&code, limits).map_err(RestoreError::Fault)?;
        // A store plugin's state is an envelope of its own part and the
        // store; a plain snapshot (from a version without the store) is
        // the plugin's part alone, with an empty store. A plugin without
        // the store takes over an envelope only while the store is empty.
        // Whether it is an envelope is the writer's to say, never the
        // bytes': a plain state may start like one.
        let snapshot_len = snapshot.len();
        let (plugin_part, store) = if enveloped {
            let (plugin_part, entries) =
                envelope::split_for(code.uses_store(), &snapshot).map_err(RestoreError::Refused)?;
            restore_plugin_part(&mut applier, position, plugin_part)?;
            let store = open_store(&code, store_dir, &entries, &mut applier);
            (plugin_part.to_vec(), store)
        } else {
            restore_plugin_part(&mut applier, position, &snapshot)?;
            let store = open_store(&code, store_dir, &Entries::NONE, &mut applier);
            (snapshot, store)
        };
        let store_bytes = match (code.uses_store(), enveloped) {
            (false, _) => 0,
            (true, true) => snapshot_len.saturating_sub(plugin_part.len()),
            (true, false) => envelope::HEADER_BYTES,
        };
        let restore_fuel = applier.fuel_used();
        let mut runtime = Self::with_applier(code, limits, applier, Some((position, plugin_part)));
        runtime.usage.fuel_used = restore_fuel;
        runtime.store_bytes = store_bytes;
        runtime.attach_store(store);
        Ok(runtime)
    }

    /// Keep `store` and base the journal on it.
    fn attach_store(&mut self, store: Option<StateFile>) {
        if let Some(file) = &store {
            self.journal.set_store_base(Some(fatal(file.snapshot())));
        }
        self.store = store;
    }

    fn with_applier(
        code: PluginCode,
        limits: PluginLimits,
        applier: PluginInstance,
        base: Option<(EntryPosition, Vec<u8>)>,
    ) -> Self {
        Self {
            code,
            limits,
            applier: Some(applier),
            reader: None,
            last_applied: base.as_ref().map(|(position, _)| *position),
            plugin_part_bytes: base.as_ref().map(|(_, bytes)| bytes.len()),
            journal: Journal::new(base, limits),
            store: None,
            store_bytes: 0,
            last_writes_digest: None,
            unsaved_write_bytes: 0,
            uncommitted_index: None,
            usage: Usage::default(),
        }
    }

    /// The digest of the last applied entry's store writes (`None`: it
    /// wrote nothing, trapped, or the plugin has no store).
    pub fn last_writes_digest(&self) -> Option<[u8; 32]> {
        self.last_writes_digest
    }

    /// The plugin code this runtime runs.
    pub fn code(&self) -> &PluginCode {
        &self.code
    }

    /// The bounds every call runs under.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Run every later call (and every instance built from now on) under
    /// `limits`: the cluster's settings changed at this point of the log.
    pub fn set_limits(&mut self, limits: PluginLimits) {
        self.limits = limits;
        // Entries journaled before keep the limits they ran under.
        self.journal.set_limits(limits);
        if let Some(applier) = &mut self.applier {
            applier.set_limits(limits);
        }
        if let Some(reader) = &mut self.reader {
            reader.instance.set_limits(limits);
        }
    }

    /// The last entry applied (or the snapshot position restored from).
    pub fn last_applied(&self) -> Option<EntryPosition> {
        self.last_applied
    }

    /// How large the plugin's state is: its own part as of the last
    /// snapshot taken or restored (or refused as too large), and its store
    /// as it is now; `None` before the first snapshot of a plugin without
    /// the store.
    pub fn state_size_bytes(&self) -> Option<usize> {
        if self.store.is_none() {
            return self.plugin_part_bytes;
        }
        Some(
            self.plugin_part_bytes
                .unwrap_or(0)
                .saturating_add(self.store_bytes),
        )
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
        let (result, kept, fuel) = {
            let applier = self.applier()?;
            let result = applier.apply(position, &command);
            (result, applier.last_kept(), applier.fuel_used())
        };
        self.usage.fuel_used += fuel;
        self.last_writes_digest = kept.digest;
        self.last_applied = Some(position);
        if self.store.is_some() {
            // The entry's kept writes wait in the applier's layer for the
            // batch's commit; a trap kept none.
            self.unsaved_write_bytes = self.unsaved_write_bytes.saturating_add(kept.bytes as u64);
            let size_delta = isize::try_from(kept.size_delta).unwrap_or(0);
            self.store_bytes = self.store_bytes.saturating_add_signed(size_delta);
            if kept.digest.is_some() {
                self.uncommitted_index = Some(position.index);
            }
        }
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
                self.journal
                    .push_with_writes(position, command, outcome, kept.digest, kept.bytes);
                self.take_base_if_due();
            }
            None => self.rebuild_applier()?,
        }
        Ok(match result {
            Ok(result) => result.map_err(ApplyError::Rejected),
            Err(fault) => Err(ApplyError::Fault(fault)),
        })
    }

    /// Answer a read against the state after the last applied entry.
    pub fn query(&mut self, request: &[u8]) -> Result<Result<PluginResult, Fault>, RebuildError> {
        let position = self.read_position();
        let reader = self.caught_up_reader()?;
        reader.pristine = false;
        let result = reader.instance.query(position, request);
        let fuel = reader.instance.fuel_used();
        self.usage.fuel_used += fuel;
        self.discard_reader_after(&result);
        Ok(result)
    }

    /// Serialize the state after the last applied entry: the plugin's
    /// snapshot, enveloped with the store's contents for a store plugin.
    pub fn snapshot(&mut self) -> Result<Result<Vec<u8>, Fault>, RebuildError> {
        let plugin_part = match self.plugin_snapshot()? {
            Ok(bytes) => bytes,
            Err(fault) => return Ok(Err(fault)),
        };
        self.commit_store_writes();
        let Some(file) = &self.store else {
            return Ok(Ok(plugin_part));
        };
        // The same bound as a plugin's own snapshot: a larger one could
        // never be sent to a lagging or new node. Judged before the store
        // is read, from its size as kept up to date.
        let expected = plugin_part.len().saturating_add(self.store_bytes);
        if expected > self.limits.snapshot_bytes_max {
            // The refusal can be replicated (a deploy's handover records
            // it), so its size is counted from the file, not taken from the
            // running estimate: this reads the store once, not into memory.
            let store_bytes = fatal(StateFile::envelope_store_bytes(&fatal(file.snapshot())));
            self.store_bytes = store_bytes;
            let exact = plugin_part.len().saturating_add(store_bytes);
            if exact > self.limits.snapshot_bytes_max {
                return Ok(Err(Fault::OversizedOutput {
                    bytes: exact,
                    max: self.limits.snapshot_bytes_max,
                }));
            }
        }
        // The file holds the store after the last applied entry, the
        // position the reader's snapshot was taken at.
        let bytes = fatal(StateFile::envelope(
            &fatal(file.snapshot()),
            &plugin_part,
            expected,
        ));
        self.store_bytes = bytes.len() - plugin_part.len();
        if bytes.len() > self.limits.snapshot_bytes_max {
            return Ok(Err(Fault::OversizedOutput {
                bytes: bytes.len(),
                max: self.limits.snapshot_bytes_max,
            }));
        }
        Ok(Ok(bytes))
    }

    /// The plugin's own snapshot (its in-memory part) after the last
    /// applied entry.
    fn plugin_snapshot(&mut self) -> Result<Result<Vec<u8>, Fault>, RebuildError> {
        let position = self.read_position();
        let reader = self.caught_up_reader()?;
        let retry_on_fresh = !reader.pristine;
        reader.pristine = false;
        let mut result = reader.instance.snapshot(position);
        let fuel = reader.instance.fuel_used();
        self.usage.fuel_used += fuel;
        self.discard_reader_after(&result);
        if retry_on_fresh && self.reader.is_none() {
            let fresh = self.caught_up_reader()?;
            fresh.pristine = false;
            result = fresh.instance.snapshot(position);
            let fuel = fresh.instance.fuel_used();
            self.usage.fuel_used += fuel;
            self.discard_reader_after(&result);
        }
        // The size of the plugin's own part, for the state's size.
        match &result {
            Ok(bytes) => self.plugin_part_bytes = Some(bytes.len()),
            Err(Fault::OversizedOutput { bytes, .. }) => {
                self.plugin_part_bytes = Some(*bytes);
            }
            Err(_) => {}
        }
        Ok(result)
    }

    fn read_position(&self) -> EntryPosition {
        self.last_applied.unwrap_or(EntryPosition {
            index: 0,
            term: 0,
            time_ms: 0,
        })
    }

    /// The applying instance, rebuilt first if the last rebuild failed.
    fn applier(&mut self) -> Result<&mut PluginInstance, RebuildError> {
        if self.applier.is_none() {
            self.rebuild_applier()?;
        }
        Ok(self
            .applier
            .as_mut()
            .expect("a successful rebuild leaves an instance"))
    }

    /// Replace the applier by base + journal replay. The old one is dropped
    /// first: whatever happens, it never runs another call.
    fn rebuild_applier(&mut self) -> Result<(), RebuildError> {
        // The writes of the entries before the trap are only in its layer.
        self.commit_store_writes();
        self.applier = None;
        let started = std::time::Instant::now();
        let mut applier = self.journal.rebuild(&self.code, self.limits)?;
        self.usage.applier_rebuilds += 1;
        if let Some(file) = &self.store {
            // The replay rewrote what the file already holds.
            fatal(applier.store_view_mut().rebase(&fatal(file.snapshot())));
        }
        tracing::info!(
            replayed = self.journal.entries().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rebuilt plugin instance after a trap"
        );
        self.applier = Some(applier);
        Ok(())
    }

    /// Commit the store writes the applier kept since the last commit to
    /// the state file, in one transaction, and move the applier's base to
    /// it. The worker calls this once per batch of entries, before it
    /// answers for them; everything that reads the file or replaces the
    /// applier (snapshots, checkpoints, bases, rebuilds) commits first.
    /// Until then the applier reads its own writes from its layer, so an
    /// entry sees the same store whichever batch it came in.
    pub fn commit_store_writes(&mut self) {
        let Some(index) = self.uncommitted_index.take() else {
            return;
        };
        if let (Some(file), Some(applier)) = (&mut self.store, &mut self.applier) {
            let view = applier.store_view_mut();
            fatal(file.commit(index, view.layer()));
            fatal(view.rebase(&fatal(file.snapshot())));
        }
    }

    /// Fuel and rebuilds since the last call of this (which starts them
    /// over), and the instances' memory now.
    pub fn take_usage(&mut self) -> Usage {
        let memory =
            |instance: Option<&PluginInstance>| instance.map_or(0, PluginInstance::memory_bytes);
        let taken = Usage {
            applier_memory_bytes: memory(self.applier.as_ref()),
            reader_memory_bytes: memory(self.reader.as_ref().map(|reader| &reader.instance)),
            ..self.usage
        };
        self.usage = Usage::default();
        taken
    }

    /// Let the reader, if there is one, apply at most `entries_max` of the
    /// journaled entries it has not seen; whether more remain. The worker
    /// calls this when idle, so that neither the next read nor the next base
    /// replays a long stretch at once. It never builds a reader.
    pub fn advance_reader(&mut self, entries_max: usize) -> bool {
        let entries = self.journal.entries();
        let Some(reader) = &mut self.reader else {
            return false;
        };
        let end = entries
            .len()
            .min(reader.replayed.saturating_add(entries_max));
        match replay(&mut reader.instance, &entries[reader.replayed..end]) {
            Ok(()) => {
                reader.replayed = end;
                end < entries.len()
            }
            Err(error) => {
                tracing::warn!("discarding the plugin's reader instance: {error}");
                self.reader = None;
                false
            }
        }
    }

    /// The reader, having applied every journaled entry; rebuilt from base
    /// and journal when there is none or its replay goes wrong.
    fn caught_up_reader(&mut self) -> Result<&mut Reader, RebuildError> {
        self.advance_reader(usize::MAX);
        if self.reader.is_none() {
            let instance = self.journal.rebuild(&self.code, self.limits)?;
            self.usage.reader_rebuilds += 1;
            self.reader = Some(Reader {
                instance,
                replayed: self.journal.entries().len(),
                pristine: true,
            });
        }
        Ok(self.reader.as_mut().expect("a reader was just built"))
    }

    /// A reader that trapped is never used again.
    fn discard_reader_after<T>(&mut self, result: &Result<T, Fault>) {
        if let Err(fault) = result
            && fault.poisons_instance()
        {
            self.reader = None;
        }
    }

    /// Take a new base from the reader once the journal outgrows its budget.
    fn take_base_if_due(&mut self) {
        if !self.journal.wants_base() {
            return;
        }
        let position = self.read_position();
        self.commit_store_writes();
        // A base is the runtime's own work, not a call's: its fuel is not
        // the call's.
        let fuel_before = self.usage.fuel_used;
        let snapshot = self.plugin_snapshot();
        self.usage.fuel_used = fuel_before;
        let failure = match snapshot {
            Ok(Ok(bytes)) => {
                self.journal.rebase(position, bytes);
                // The file holds the store at `position`, the new base.
                let store_base = self.store.as_ref().map(|file| fatal(file.snapshot()));
                if let (Some(reader), Some(base)) = (&mut self.reader, &store_base) {
                    fatal(reader.instance.store_view_mut().rebase(base));
                }
                self.journal.set_store_base(store_base);
                if let Some(reader) = &mut self.reader {
                    reader.replayed = 0;
                }
                return;
            }
            Ok(Err(fault)) => fault,
            Err(error) => {
                tracing::warn!("could not take a rebuild snapshot, keeping the journal: {error}");
                self.journal.base_failed(None);
                return;
            }
        };
        tracing::warn!("could not take a rebuild snapshot, keeping the journal: {failure}");
        // When the next base is due must depend on the log alone, as the
        // base does: only this attempt's size counts, not the sizes that
        // this node's own Raft snapshots and checkpoints have seen.
        let attempted_bytes = match failure {
            Fault::OversizedOutput { bytes, .. } => Some(bytes),
            _ => None,
        };
        self.journal.base_failed(attempted_bytes);
    }
}

/// The plugin's own `restore` of its part of a snapshot.
fn restore_plugin_part(
    applier: &mut PluginInstance,
    position: EntryPosition,
    plugin_part: &[u8],
) -> Result<(), RestoreError> {
    applier
        .restore(position, plugin_part)
        .map_err(RestoreError::Fault)?
        .map_err(RestoreError::Refused)
}

/// A fresh state file holding `entries`, with `applier` reading it, if the
/// plugin uses the store.
fn open_store(
    code: &PluginCode,
    store_dir: Option<&Path>,
    entries: &Entries<'_>,
    applier: &mut PluginInstance,
) -> Option<StateFile> {
    if !code.uses_store() {
        return None;
    }
    let mut file = fatal(StateFile::create(store_dir));
    fatal(file.fill(entries, code.bytes()));
    *applier.store_view_mut() = fatal(StoreView::at(&fatal(file.snapshot())));
    Some(file)
}
