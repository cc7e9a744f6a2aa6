//! The runtime's side of the state file as the durable copy (see
//! [`crate::plugin::store::durable`]): checkpoints, and resuming from one.

use super::{FsmRuntime, RebuildError, RestoreError, fatal, restore_plugin_part};
use crate::limits::PluginLimits;
use crate::plugin::code::PluginCode;
use crate::plugin::instance::{EntryPosition, PluginInstance};
use crate::plugin::store::durable::{Checkpoint, Stored};
use crate::plugin::store::{SideRecord, StateFile, StoreView};

/// Where a plugin that has applied no command yet restores its part.
const START: EntryPosition = EntryPosition {
    index: 0,
    term: 0,
    time_ms: 0,
};

impl FsmRuntime {
    /// A runtime whose state is the node's state file as of its checkpoint:
    /// the store is the file, the plugin's in-memory part is restored from
    /// the checkpoint. Refused like a snapshot the plugin cannot restore,
    /// so the caller falls back to the snapshot.
    pub fn resume(
        code: PluginCode,
        limits: PluginLimits,
        stored: Stored,
    ) -> Result<Self, RestoreError> {
        let Stored {
            file, checkpoint, ..
        } = stored;
        let mut applier = PluginInstance::new(&code, limits).map_err(RestoreError::Fault)?;
        let unreadable =
            |error: crate::plugin::store::StoreError| RestoreError::Refused(error.to_string());
        let base = file.snapshot().map_err(unreadable)?;
        *applier.store_view_mut() = StoreView::at(&base).map_err(unreadable)?;
        let position = checkpoint.position.unwrap_or(START);
        restore_plugin_part(&mut applier, position, &checkpoint.plugin_part)?;
        let restore_fuel = applier.fuel_used();
        let base = Some((position, checkpoint.plugin_part));
        let mut runtime = Self::with_applier(code, limits, applier, base);
        runtime.usage.fuel_used = restore_fuel;
        runtime.store_bytes = usize::try_from(checkpoint.store_bytes).unwrap_or(usize::MAX);
        runtime.attach_store(Some(file));
        Ok(runtime)
    }

    /// Whether this runtime's store is a file that checkpoints make durable.
    pub fn has_durable_store(&self) -> bool {
        self.store.as_ref().is_some_and(StateFile::is_on_disk)
    }

    /// Store write bytes since the last checkpoint.
    pub fn unsaved_write_bytes(&self) -> u64 {
        self.unsaved_write_bytes
    }

    /// Make a fresh state file the node's state file, now that this runtime
    /// runs. A failed rename only costs the next restart a rebuild.
    pub fn promote_store(&mut self) {
        if let Some(file) = &mut self.store
            && let Err(error) = file.promote()
        {
            tracing::warn!("cannot keep the plugin store for restarts: {error}");
        }
    }

    /// Make the store durable with everything else a restart needs at
    /// Raft index `index` (the last applied entry): the plugin's in-memory
    /// part, `host`, the host's part, and `side`, the host's part that
    /// rarely changes (written only when it did). Whether a checkpoint was written:
    /// none without a state file; when the plugin's snapshot fails, the
    /// commit is still durable but the old checkpoint is removed, so a
    /// restart rebuilds from the snapshot rather than resume a wrong state.
    pub fn checkpoint(
        &mut self,
        index: u64,
        host: Vec<u8>,
        side: &SideRecord,
    ) -> Result<bool, RebuildError> {
        if !self.has_durable_store() {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        self.commit_store_writes();
        // A checkpoint is the runtime's own work, not a call's.
        let fuel_before = self.usage.fuel_used;
        let plugin_part = self.plugin_snapshot();
        self.usage.fuel_used = fuel_before;
        let snapshot_taken = started.elapsed();
        // A reader that cannot catch up, or a plugin whose snapshot fails,
        // only costs this checkpoint (as it costs a Raft snapshot): the
        // record says "none", so a restart rebuilds from the snapshot.
        let plugin_part = plugin_part.map_err(|rebuild| rebuild.to_string());
        let checkpoint = match plugin_part.and_then(|part| part.map_err(|f| f.to_string())) {
            Ok(plugin_part) => Some(Checkpoint {
                index,
                position: self.last_applied,
                plugin_part,
                store_bytes: self.store_bytes as u64,
                host,
            }),
            Err(fault) => {
                tracing::warn!(
                    index,
                    "cannot checkpoint the plugin store; a restart rebuilds it from the snapshot: {fault}"
                );
                None
            }
        };
        if let Some(file) = &mut self.store {
            let encoded = checkpoint.as_ref().map(Checkpoint::encode);
            let record = encoded.as_deref().map(|bytes| (bytes, side));
            fatal(file.checkpoint(index, record));
        }
        tracing::debug!(
            index,
            plugin_snapshot_ms = snapshot_taken.as_millis() as u64,
            durable_commit_ms = (started.elapsed() - snapshot_taken).as_millis() as u64,
            "plugin store checkpoint"
        );
        self.unsaved_write_bytes = 0;
        Ok(checkpoint.is_some())
    }
}
