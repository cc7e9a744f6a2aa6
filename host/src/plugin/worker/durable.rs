//! The worker's part in making a store plugin's state file the durable
//! copy (see [`crate::plugin::store::durable`]): checkpoints, and resuming
//! from one at start.

use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::{Job, PluginHandle, STATE_SIZE_UNKNOWN, WorkerError, WorkerThread};
use crate::limits::PluginLimits;
use crate::plugin::code::PluginCode;
use crate::plugin::machine::Machine;
use crate::plugin::runtime::{FsmRuntime, RebuildError, RestoreError};
use crate::plugin::store::SideRecord;
use crate::plugin::store::durable::Stored;

impl PluginHandle {
    /// Store write bytes since the running plugin's last checkpoint; `None`
    /// when it keeps no state file (nothing to checkpoint).
    pub fn unsaved_write_bytes(&self) -> Option<u64> {
        match self.unsaved_write_bytes.load(Ordering::Relaxed) {
            STATE_SIZE_UNKNOWN => None,
            bytes => Some(bytes),
        }
    }

    /// Make the plugin's state file durable with `host` (the host's part)
    /// at Raft index `index`, the last entry applied; whether a checkpoint
    /// was written (see [`FsmRuntime::checkpoint`]).
    pub async fn checkpoint(
        &self,
        index: u64,
        host: Vec<u8>,
        side: SideRecord,
    ) -> Result<bool, WorkerError> {
        let (reply, response) = oneshot::channel();
        let job = Job::Checkpoint {
            index,
            host,
            side,
            reply,
        };
        self.send(job).await?;
        Ok(response.await.map_err(|_| WorkerError::Stopped)??)
    }

    /// [`PluginHandle::checkpoint`] without waiting, for a machine being
    /// dropped: whether the job was queued (not when the queue is full).
    pub fn checkpoint_soon(&self, index: u64, host: Vec<u8>, side: SideRecord) -> bool {
        // Nobody waits for the answer.
        let (reply, _) = oneshot::channel();
        let job = Job::Checkpoint {
            index,
            host,
            side,
            reply,
        };
        self.jobs.try_send(job).is_ok()
    }

    /// Run `code` on the state file in `stored`, under `limits` (see
    /// [`FsmRuntime::resume`]). On error nothing changed.
    pub async fn resume(
        &self,
        code: PluginCode,
        stored: Stored,
        limits: PluginLimits,
    ) -> Result<Result<(), RestoreError>, WorkerError> {
        let (reply, response) = oneshot::channel();
        let stored = Box::new(stored);
        self.send(Job::Resume {
            code,
            stored,
            limits,
            reply,
        })
        .await?;
        response.await.map_err(|_| WorkerError::Stopped)
    }

    /// How large the running plugin's state was last seen, in bytes: its
    /// last snapshot (taken or restored), or one refused as too large.
    /// `None` before the first, or with no plugin deployed.
    pub fn state_size_bytes(&self) -> Option<u64> {
        match self.state_size_bytes.load(Ordering::Relaxed) {
            STATE_SIZE_UNKNOWN => None,
            bytes => Some(bytes),
        }
    }
}

impl WorkerThread<'_> {
    pub(super) fn checkpoint(
        &mut self,
        index: u64,
        host: Vec<u8>,
        side: &SideRecord,
    ) -> Result<bool, RebuildError> {
        let written = match &mut self.runtime {
            Some(Machine::Plugin(runtime)) => runtime.checkpoint(index, host, side),
            _ => Ok(false),
        };
        self.publish_state_size();
        written
    }

    /// Replace the machine by one resumed from the state file in `stored`.
    pub(super) fn resume(
        &mut self,
        code: PluginCode,
        stored: Stored,
        limits: PluginLimits,
    ) -> Result<(), RestoreError> {
        let resumed = FsmRuntime::resume(code, limits, stored)?;
        self.limits = limits;
        self.runtime = Some(Machine::Plugin(Box::new(resumed)));
        self.publish_state_size();
        Ok(())
    }
}
