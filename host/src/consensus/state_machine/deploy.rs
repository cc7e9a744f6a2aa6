//! Switching the running plugin at a deploy entry (or recording a native
//! state machine's), and installing the plugin and state a snapshot holds.

use std::io;

use super::StateMachineStore;
use crate::consensus::plugin_history::DeployRecord;
use crate::consensus::snapshot::SnapshotBody;
use crate::consensus::swap::{self, GENESIS_POSITION, Plan};
use crate::consensus::types::DeployReceipt;
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
        match (&self.native, native_name(&bytes)) {
            (None, None) => {}
            (Some(mine), Some(_)) if **mine == *bytes => {
                return Ok(self.deploy_native(record));
            }
            (mine, deployed) => {
                let runs = |name: Option<&str>| {
                    name.map_or("plugins".to_string(), |name| {
                        format!("the native state machine {name}")
                    })
                };
                // Applying past this entry would diverge from the nodes
                // that run what the cluster deployed: stop instead.
                return Err(io::Error::other(format!(
                    "the cluster deployed {} at entry {index}, but this node runs {}; every node of a \
                     cluster runs the same state machine",
                    runs(deployed),
                    runs(mine.as_deref().and_then(native_name)),
                )));
            }
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
        if let Some(reason) = self.unsigned_reason(&bytes) {
            tracing::warn!(
                index,
                "deploy refused at apply, the running plugin stays: {reason}"
            );
            let outcome = swap::conclude(&mut self.host.history, record, None, Err(reason));
            self.publish_history();
            return Ok(outcome);
        }
        let code = self.engine.load_off_thread(bytes).await.map_err(|error| {
            io::Error::other(format!(
                "this node cannot run the plugin the cluster deployed at entry {index}, stopping: {error}"
            ))
        })?;
        let handover = swap::handover(self.plugin.snapshot().await.map_err(io::Error::other)?);
        let (installed, previous) = match handover {
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
        };
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
        Ok(outcome)
    }

    /// Why `--plugin-signers` refuses `bytes`, if it does. Every replica
    /// checks a committed deploy itself, not only the node that took the
    /// upload: an entry that reached the log some other way (a node with a
    /// different list, a rollback to a plugin signed by a retired key) is
    /// refused here. The outcome depends only on the bytes and the list, so
    /// replicas configured alike (as they must be, like the plugin limits)
    /// all record the same failure and keep the same plugin.
    fn unsigned_reason(&self, bytes: &[u8]) -> Option<String> {
        let signers = self.signers.as_deref()?;
        let error = crate::security::signing::verify(bytes, signers).err()?;
        Some(format!("refused by --plugin-signers: {error}"))
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
        .load_off_thread(state.code.clone())
        .await
        .map_err(|error| {
            io::Error::other(format!("cannot run the plugin in the snapshot: {error}"))
        })?;
    plugin
        .install(code, Some((position, state.state.clone())))
        .await
        .map_err(io::Error::other)?
        .map_err(|error| io::Error::other(format!("cannot restore the snapshot: {error}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::consensus::snapshot::Snapshots;
    use crate::limits::PluginLimits;
    use crate::security::signing::{generate_key, sign};

    /// A fresh replica whose `--plugin-signers` lists the key
    /// `signer_public_hex`, and the temp dir it keeps its snapshots in.
    async fn replica(signer_public_hex: &str) -> (StateMachineStore, tempfile::TempDir) {
        let directory = tempfile::tempdir().expect("temp dir");
        let engine = PluginEngine::new(None).expect("plugin engine");
        let plugin = PluginHandle::spawn(None, PluginLimits::default(), "test".to_string())
            .expect("plugin worker");
        let snapshots = Snapshots::open(&directory.path().join("snapshots")).expect("snapshots");
        let mut public = [0u8; 32];
        hex::decode_to_slice(signer_public_hex, &mut public).expect("public key");
        let machine =
            StateMachineStore::open(plugin, engine, snapshots, PluginLimits::default(), None)
                .await
                .expect("state machine")
                .with_signers(Some(Arc::new(vec![public])));
        (machine, directory)
    }

    // Goal: a deploy entry whose plugin no listed key signed is refused by
    // the replica applying it, before any compile, as a recorded failure
    // that is the same on every replica; nothing starts running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_replica_refuses_an_unsigned_deploy_identically() {
        let (private, public) = generate_key().expect("key");
        let (other_private, _) = generate_key().expect("another key");
        let unsigned = b"\0asm not even a plugin".to_vec();
        let foreign = sign(&unsigned, &other_private).expect("signed by another key");
        let mut outcomes = Vec::new();
        for _replica in 0..2 {
            let (mut machine, _directory) = replica(&public).await;
            let first = machine
                .deploy(unsigned.clone(), 3, 10)
                .await
                .expect("no stop");
            let second = machine
                .deploy(foreign.clone(), 4, 11)
                .await
                .expect("no stop");
            let reason = first.clone().expect_err("an unsigned deploy was installed");
            assert!(reason.contains("refused by --plugin-signers"), "{reason}");
            assert!(second.is_err(), "a foreign signature was accepted");
            let status = machine.status().borrow().clone();
            assert_eq!(status.plugin_digest, None, "a refused plugin runs");
            outcomes.push((first, second, status.history));
        }
        assert_eq!(outcomes[0], outcomes[1], "replicas decided differently");

        // Signed by the listed key, the same bytes pass the check and reach
        // the compiler (which cannot run them: this node must stop).
        let (mut machine, _directory) = replica(&public).await;
        let signed = sign(&unsigned, &private).expect("signed");
        let error = machine
            .deploy(signed, 3, 10)
            .await
            .expect_err("compiled garbage");
        assert!(error.to_string().contains("cannot run"), "{error}");
    }
}
