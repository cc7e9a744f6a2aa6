//! The plugin store's final checkpoint at a clean stop. Raft owns the
//! machine, so only the machine knows its state once Raft has stopped
//! applying: it hands that state over as it is dropped, and the node's
//! shutdown writes it and waits, so the process cannot exit before the
//! state file is durable at the last applied entry.

use tokio::sync::oneshot;

use super::StateMachineStore;
use crate::limits::STORE_STOP_CHECKPOINT_TIMEOUT;
use crate::plugin::PluginHandle;
use crate::plugin::store::SideRecord;

/// What the final checkpoint writes: the host's part at the last applied
/// entry `index`.
pub(super) struct FinalState {
    index: u64,
    host: Vec<u8>,
    side: SideRecord,
}

/// The machine's end: `None` when there is nothing to checkpoint (no state
/// file, nothing applied); a dropped sender when an apply or install was
/// cut off half way (the host state and the plugin's may differ).
pub(super) type AtStop = oneshot::Sender<Option<FinalState>>;

/// The node's side of the final checkpoint.
pub struct StopCheckpoint {
    plugin: PluginHandle,
    state: oneshot::Receiver<Option<FinalState>>,
}

impl StateMachineStore {
    /// Have this machine hand its state over when it stops, for the
    /// returned [`StopCheckpoint`] to write, instead of queueing a
    /// checkpoint nobody waits for.
    pub fn stop_checkpoint(&mut self) -> StopCheckpoint {
        let (sender, state) = oneshot::channel();
        self.at_stop = Some(sender);
        StopCheckpoint {
            plugin: self.plugin.clone(),
            state,
        }
    }

    /// Hand the machine's state to its [`StopCheckpoint`], or queue the
    /// checkpoint when nobody takes it.
    fn hand_over(&mut self) {
        let state = match self.final_state() {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!("cannot checkpoint the plugin store at stop: {error}");
                return;
            }
        };
        let state = match self.at_stop.take() {
            Some(sender) => match sender.send(state) {
                Ok(()) => return,
                Err(state) => state,
            },
            None => state,
        };
        if let Some(state) = state {
            self.plugin
                .checkpoint_soon(state.index, state.host, state.side);
        }
    }

    fn final_state(&mut self) -> std::io::Result<Option<FinalState>> {
        let Some(last_applied) = self.last_applied else {
            return Ok(None);
        };
        if self.plugin.unsaved_write_bytes().is_none() {
            return Ok(None);
        }
        let (host, side) = self.host_record()?;
        Ok(Some(FinalState {
            index: last_applied.index,
            host,
            side,
        }))
    }
}

/// A machine stopping cleanly checkpoints once more, so the next start
/// resumes where it stopped: closing the state file makes its later commits
/// durable, which a checkpoint from before would not match. Not while an
/// apply or install was cut off half way; then the next start rebuilds
/// from the snapshot.
impl Drop for StateMachineStore {
    fn drop(&mut self) {
        if !self.in_flight {
            self.hand_over();
        }
    }
}

impl StopCheckpoint {
    /// Write the final checkpoint once Raft has stopped and dropped the
    /// machine, waiting at most [`STORE_STOP_CHECKPOINT_TIMEOUT`]; whether
    /// one was written. A skipped one is logged: the next start replays
    /// from the checkpoint before, or rebuilds from the snapshot.
    pub async fn write(self) -> bool {
        let plugin = self.plugin;
        let written = tokio::time::timeout(STORE_STOP_CHECKPOINT_TIMEOUT, async {
            let Ok(state) = self.state.await else {
                tracing::warn!(
                    "no final checkpoint of the plugin store: the machine stopped mid-apply"
                );
                return false;
            };
            let Some(state) = state else {
                return false;
            };
            match plugin.checkpoint(state.index, state.host, state.side).await {
                Ok(written) => {
                    if written {
                        tracing::info!(
                            index = state.index,
                            "checkpointed the plugin store at stop"
                        );
                    }
                    written
                }
                Err(error) => {
                    tracing::warn!("no final checkpoint of the plugin store: {error}");
                    false
                }
            }
        })
        .await;
        written.unwrap_or_else(|_| {
            tracing::warn!(
                "no final checkpoint of the plugin store within {STORE_STOP_CHECKPOINT_TIMEOUT:?}"
            );
            false
        })
    }
}
