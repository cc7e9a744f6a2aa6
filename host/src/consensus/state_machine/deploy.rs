//! Switching the running plugin at a deploy entry (or recording a native
//! state machine's), and installing the plugin and state a snapshot holds.

use std::io;

use super::StateMachineStore;
use crate::consensus::plugin_history::DeployRecord;
use crate::consensus::snapshot::SnapshotBody;
use crate::consensus::swap::{self, GENESIS_POSITION, Plan};
use crate::consensus::types::DeployReceipt;
use crate::plugin::SavedState;
use crate::plugin::native::native_name;
use crate::plugin::{PluginDigest, PluginEngine, PluginHandle};

impl StateMachineStore {
    /// Switch to the plugin in `bytes` at entry `index`, carrying the
    /// current state over. `Err` is the deterministic reason the cluster kept
    /// the old plugin (recorded in the history on every replica); an
    /// `io::Error` means this node cannot run the plugin and must stop rather
    /// than apply past the deploy.
    pub(super) async fn deploy(
        &mut self,
        bytes: Vec<u8>,
        index: u64,
        time_ms: u64,
    ) -> io::Result<Result<DeployReceipt, String>> {
        let record = DeployRecord {
            version: None,
            digest: PluginDigest::of(&bytes).to_hex(),
            size_bytes: bytes.len() as u64,
            index,
            time_ms,
            failure: None,
        };
        // Checked here, against the replicated setting, so an entry that
        // reached the log past the API's check (another node's flags, an
        // older leader) is refused alike on every replica. A native
        // machine's marker is no code to trust: each node runs its own.
        let verified = match native_name(&bytes) {
            Some(_) => Ok(()),
            None => self.host.signers.verify(&bytes),
        };
        if let Err(error) = verified {
            let reason = format!("deploy refused: {error}");
            tracing::warn!(index, "{reason}; the running plugin stays");
            let outcome = swap::conclude(&mut self.host.history, record, None, Err(reason));
            self.publish_history();
            return Ok(outcome);
        }
        if self.deploys_own_native(&bytes, index)? {
            return Ok(self.deploy_native(record));
        }
        let running = self.status.borrow().plugin_digest.clone();
        if let Plan::AlreadyRunning(receipt) = swap::plan(
            running.as_deref(),
            &record.digest,
            &self.host.history,
            index,
        ) {
            return Ok(Ok(receipt));
        }
        let (installed, previous) = self.swap_in(bytes, index).await?;
        // A new plugin's state file holds no checkpoint until the next.
        self.checkpoints.force();
        let (digest, size_bytes) = (record.digest.clone(), record.size_bytes as usize);
        let outcome = swap::conclude(&mut self.host.history, record, previous, installed);
        match &outcome {
            Ok(receipt) => {
                self.status.send_modify(|status| {
                    status.plugin_digest = Some(digest.clone());
                    status.plugin_size_bytes = size_bytes;
                });
                tracing::info!(digest = %digest, version = receipt.version, index, "plugin deployed");
            }
            Err(reason) => {
                tracing::warn!(index, "deploy failed, the running plugin stays: {reason}");
            }
        }
        self.publish_history();
        self.prune_compiled().await;
        Ok(outcome)
    }

    /// Remove the compiled artifacts of plugins this replica neither runs
    /// nor keeps for rollback: at start, after a deploy or rollback (a
    /// deploy entry too) and after installing a snapshot.
    pub(super) async fn prune_compiled(&self) {
        let running = self.status.borrow().plugin_digest.clone();
        let keep: Vec<PluginDigest> = running
            .as_deref()
            .and_then(PluginDigest::from_hex)
            .into_iter()
            .chain(
                self.host
                    .history
                    .retained
                    .iter()
                    .map(|plugin| PluginDigest::of(&plugin.bytes)),
            )
            .collect();
        let engine = self.engine.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || engine.prune_cache(&keep)).await {
            tracing::warn!("pruning the compiled-plugin cache failed: {error}");
        }
    }

    /// Whether the deployed `bytes` are this node's own native machine's
    /// marker (`false`: a plugin, on a node that runs plugins). A node that
    /// runs another kind of machine than the one deployed must stop: applying
    /// past this entry would diverge from the nodes that run what the cluster
    /// deployed.
    fn deploys_own_native(&self, bytes: &[u8], index: u64) -> io::Result<bool> {
        match (&self.native, native_name(bytes)) {
            (None, None) => Ok(false),
            (Some(mine), Some(_)) if **mine == *bytes => Ok(true),
            (mine, deployed) => {
                let runs = |name: Option<&str>| {
                    name.map_or("plugins".to_string(), |name| {
                        format!("the native state machine {name}")
                    })
                };
                Err(io::Error::other(format!(
                    "the cluster deployed {} at entry {index}, but this node runs {}; every node of a \
                     cluster runs the same state machine",
                    runs(deployed),
                    runs(mine.as_deref().and_then(native_name)),
                )))
            }
        }
    }

    /// Load the plugin in `bytes` and install it with the running plugin's
    /// state. Returns whether the plugin took the state (`Err`: the
    /// deterministic reason it did not) and the bytes of the plugin it
    /// replaced, kept for rollback. An
    /// `io::Error` means this node cannot run the plugin at all.
    async fn swap_in(
        &mut self,
        bytes: Vec<u8>,
        index: u64,
    ) -> io::Result<(Result<(), String>, Option<Vec<u8>>)> {
        let code = self.engine.load_to_apply(bytes).await.map_err(|error| {
            io::Error::other(format!(
                "this node cannot run the plugin the cluster deployed at entry {index}, stopping: {error}"
            ))
        })?;
        let handover = swap::handover(self.plugin.snapshot().await.map_err(io::Error::other)?);
        Ok(match handover {
            Err(reason) => (Err(reason), None),
            Ok(handover) => {
                let installed = self
                    .plugin
                    .install(code, handover.state)
                    .await
                    .map_err(io::Error::other)?
                    .map_err(swap::restore_failure);
                (installed, handover.previous)
            }
        })
    }

    /// The entry that starts a native state machine's cluster: the machine
    /// already runs; record it as version 1 everywhere.
    fn deploy_native(&mut self, record: DeployRecord) -> Result<DeployReceipt, String> {
        let (digest, size_bytes) = (record.digest.clone(), record.size_bytes as usize);
        let outcome = swap::conclude(&mut self.host.history, record, None, Ok(()));
        self.status.send_modify(|status| {
            status.plugin_digest = Some(digest);
            status.plugin_size_bytes = size_bytes;
        });
        self.publish_history();
        outcome
    }
}

/// Make `plugin` run the plugin and state in `body`: on start-up and when a
/// snapshot arrives from the leader.
pub(super) async fn install_body(
    engine: &PluginEngine,
    plugin: &PluginHandle,
    body: &SnapshotBody,
    native: Option<&[u8]>,
) -> io::Result<()> {
    let Some(state) = &body.plugin else {
        return Ok(());
    };
    let position = state.position.unwrap_or(GENESIS_POSITION);
    let runs = |code: Option<&[u8]>| match code {
        None => "plugins".to_string(),
        Some(code) => format!(
            "the native state machine {}",
            native_name(code).unwrap_or("(unnamed)")
        ),
    };
    let snapshot_native = native_name(&state.code).map(|_| state.code.as_slice());
    if snapshot_native != native {
        return Err(io::Error::other(format!(
            "the snapshot holds the state of {}, but this node runs {}; every node of a cluster runs \
             the same state machine",
            runs(snapshot_native),
            runs(native)
        )));
    }
    if snapshot_native.is_some() {
        return plugin
            .restore_native(position, state.state.clone())
            .await
            .map_err(io::Error::other)?
            .map_err(|error| io::Error::other(format!("cannot restore the snapshot: {error}")));
    }
    let code = engine
        .load_to_apply(state.code.clone())
        .await
        .map_err(|error| {
            io::Error::other(format!("cannot run the plugin in the snapshot: {error}"))
        })?;
    // The snapshot's state was written by the snapshot's plugin.
    let saved = SavedState::written_by(&code, position, state.state.clone());
    plugin
        .install(code, Some(saved))
        .await
        .map_err(io::Error::other)?
        .map_err(|error| io::Error::other(format!("cannot restore the snapshot: {error}")))
}
