//! The Raft state machine: committed entries go to the plugin, host entries
//! (blank, membership, deploy) are handled here.
//!
//! The machine is transient: the plugin's state lives in its instance, and
//! on start the node restores the newest snapshot and openraft re-applies the
//! committed log after it.

use std::io;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::EntryPayload;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use tokio::sync::watch;

use super::plugin_history::{DeployRecord, PluginHistory};
use super::snapshot::{PluginState, SnapshotBody};
use super::types::{
    DeployReceipt, LogId, Request, Response, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::plugin::{EntryPosition, PluginEngine, PluginHandle, PluginSnapshot, RestoreError};
use crate::storage::snapshot_store::{SnapshotStore, StoredSnapshot};

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotBody>;
type Responder = openraft::storage::ApplyResponder<TypeConfig>;

/// What the state machine publishes for status reports.
#[derive(Debug, Clone, Default)]
pub struct MachineStatus {
    /// The deploy history (without plugin bytes); its `cluster_version`
    /// counts successful deploys.
    pub history: PluginHistory,
    /// The plugin a rollback would deploy.
    pub rollback_plugin: Option<Arc<Vec<u8>>>,
    /// sha256 of the running plugin, hex; `None` before the first deploy.
    pub plugin_digest: Option<String>,
    /// Size of the running plugin in bytes.
    pub plugin_size_bytes: usize,
    /// Size of that snapshot file.
    pub snapshot_size_bytes: Option<u64>,
}

/// The state machine openraft drives.
pub struct StateMachineStore {
    plugin: PluginHandle,
    history: PluginHistory,
    engine: PluginEngine,
    snapshots: SnapshotStore,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    status: Arc<watch::Sender<MachineStatus>>,
}

impl StateMachineStore {
    /// A machine whose state is `restored` (the newest snapshot, already
    /// installed into `plugin`) or empty.
    pub fn new(
        plugin: PluginHandle,
        engine: PluginEngine,
        snapshots: SnapshotStore,
        restored: Option<&StoredSnapshot>,
    ) -> Self {
        let (last_applied, last_membership) = match restored {
            Some(snapshot) => (
                snapshot.meta.last_log_id,
                snapshot.meta.last_membership.clone(),
            ),
            None => (None, StoredMembership::default()),
        };
        let history = restored
            .map(|snapshot| snapshot.body.history.clone())
            .unwrap_or_default();
        let status = MachineStatus {
            history: history.without_bytes(),
            rollback_plugin: history
                .rollback_target()
                .map(|plugin| Arc::new(plugin.bytes.clone())),
            plugin_digest: restored
                .and_then(|snapshot| snapshot.body.plugin.as_ref())
                .map(|plugin| crate::plugin::PluginDigest::of(&plugin.code).to_hex()),
            plugin_size_bytes: restored
                .and_then(|snapshot| snapshot.body.plugin.as_ref())
                .map_or(0, |plugin| plugin.code.len()),
            snapshot_size_bytes: snapshots.size_bytes(),
        };
        Self {
            plugin,
            history,
            engine,
            snapshots,
            last_applied,
            last_membership,
            status: Arc::new(watch::channel(status).0),
        }
    }

    /// Status updates published by the machine.
    pub fn status(&self) -> watch::Receiver<MachineStatus> {
        self.status.subscribe()
    }

    async fn apply_commands(
        &mut self,
        pending: &mut Vec<(EntryPosition, Vec<u8>, Option<Responder>)>,
    ) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let batch: Vec<(EntryPosition, Vec<u8>, Option<Responder>)> = std::mem::take(pending);
        let mut responders = Vec::with_capacity(batch.len());
        let mut commands = Vec::with_capacity(batch.len());
        for (position, bytes, responder) in batch {
            commands.push((position, bytes));
            responders.push(responder);
        }
        let outcomes = self
            .plugin
            .apply(commands)
            .await
            .map_err(io::Error::other)?;
        for (outcome, responder) in outcomes.into_iter().zip(responders) {
            if let Some(responder) = responder {
                responder.send(Response::Command(outcome));
            }
        }
        Ok(())
    }

    /// Switch to the plugin in `bytes` at entry `index`, carrying the
    /// current state over. `Err` is the deterministic reason the cluster kept
    /// the old plugin (recorded in the history on every replica); an
    /// `io::Error` means this node cannot run the plugin and must stop rather
    /// than apply past the deploy.
    async fn deploy(
        &mut self,
        bytes: Vec<u8>,
        index: u64,
        time_ms: u64,
    ) -> io::Result<Result<DeployReceipt, String>> {
        let size_bytes = bytes.len() as u64;
        let digest = crate::plugin::PluginDigest::of(&bytes).to_hex();
        if self.status.borrow().plugin_digest.as_deref() == Some(digest.as_str()) {
            // Already running: deploying the same plugin again changes nothing
            // (checked before compiling, which would be wasted).
            return Ok(Ok(DeployReceipt {
                version: self.history.cluster_version,
                digest,
                index,
            }));
        }
        let code = self.engine.load_off_thread(bytes).await.map_err(|error| {
                io::Error::other(format!(
                    "this node cannot run the plugin the cluster deployed at entry {index}, stopping: {error}"
                ))
            })?;
        let record = DeployRecord {
            version: None,
            digest: digest.clone(),
            size_bytes,
            index,
            time_ms,
            failure: None,
        };
        let current = self.plugin.snapshot().await.map_err(io::Error::other)?;
        let (state, previous) = match current {
            Err(fault) => {
                let reason = format!("the running plugin could not hand over its state: {fault}");
                self.history.record_failure(record, reason.clone());
                self.publish_history();
                return Ok(Err(reason));
            }
            Ok(None) => (None, None),
            Ok(Some(PluginSnapshot {
                code,
                position,
                state,
            })) => (
                Some((position.unwrap_or(GENESIS_POSITION), state)),
                Some(code.bytes().to_vec()),
            ),
        };
        let outcome = match self
            .plugin
            .install(code, state)
            .await
            .map_err(io::Error::other)?
        {
            Ok(()) => {
                let version = self.history.record_success(record, previous);
                self.status.send_modify(|status| {
                    status.plugin_digest = Some(digest.clone());
                    status.plugin_size_bytes = size_bytes as usize;
                });
                tracing::info!(digest = %digest, version, index, "plugin deployed");
                Ok(DeployReceipt {
                    version,
                    digest,
                    index,
                })
            }
            Err(error) => {
                let reason = match error {
                    RestoreError::Refused(reason) => {
                        format!("the new plugin refused the state: {reason}")
                    }
                    RestoreError::Fault(fault) => {
                        format!("the new plugin failed to take over: {fault}")
                    }
                };
                tracing::warn!(index, "deploy failed, the running plugin stays: {reason}");
                self.history.record_failure(record, reason.clone());
                Err(reason)
            }
        };
        self.publish_history();
        Ok(outcome)
    }

    fn publish_history(&self) {
        let history = self.history.without_bytes();
        let rollback = self
            .history
            .rollback_target()
            .map(|plugin| Arc::new(plugin.bytes.clone()));
        self.status.send_modify(|status| {
            status.history = history;
            status.rollback_plugin = rollback;
        });
    }
}

/// Position used for a plugin that has applied nothing yet.
const GENESIS_POSITION: EntryPosition = EntryPosition {
    index: 0,
    term: 0,
    time_ms: 0,
};

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotBody;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut pending = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id;
            self.last_applied = Some(log_id);
            match entry.payload {
                EntryPayload::Blank => respond(responder, Response::Host),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(log_id), membership);
                    respond(responder, Response::Host);
                }
                EntryPayload::Normal(Request::Command { time_ms, bytes }) => {
                    let position = EntryPosition {
                        index: log_id.index,
                        term: log_id.leader_id.term,
                        time_ms,
                    };
                    pending.push((position, bytes, responder));
                }
                EntryPayload::Normal(Request::Deploy { plugin, time_ms }) => {
                    self.apply_commands(&mut pending).await?;
                    let outcome = self.deploy(plugin, log_id.index, time_ms).await?;
                    respond(responder, Response::Deploy(outcome));
                }
            }
        }
        self.apply_commands(&mut pending).await
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        // The plugin snapshot is taken here, between two applies, so it is
        // exactly the state at `last_applied`; only the file write is left to
        // the builder. A plugin whose snapshot fails skips this snapshot
        // instead of stopping the node.
        match self.plugin.snapshot().await {
            Ok(Ok(plugin)) => Some(SnapshotBuilder {
                meta: SnapshotMeta {
                    last_log_id: self.last_applied,
                    last_membership: self.last_membership.clone(),
                },
                body: SnapshotBody {
                    plugin: plugin.map(|snapshot| PluginState {
                        code: snapshot.code.bytes().to_vec(),
                        position: snapshot.position,
                        state: snapshot.state,
                    }),
                    history: self.history.clone(),
                },
                snapshots: self.snapshots.clone(),
                status: self.status.clone(),
            }),
            Ok(Err(error)) | Err(error) => {
                tracing::error!("skipping snapshot: {error}");
                None
            }
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        unreachable!("openraft 0.10 calls try_create_snapshot_builder")
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        body: SnapshotBody,
    ) -> Result<(), io::Error> {
        install_body(&self.engine, &self.plugin, &body).await?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            body,
        };
        let snapshots = self.snapshots.clone();
        tokio::task::block_in_place(|| snapshots.save(&stored))?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.history = stored.body.history.clone();
        self.publish_history();
        let plugin = stored.body.plugin.as_ref();
        self.status.send_modify(|status| {
            status.plugin_digest =
                plugin.map(|plugin| crate::plugin::PluginDigest::of(&plugin.code).to_hex());
            status.plugin_size_bytes = plugin.map_or(0, |plugin| plugin.code.len());
            status.snapshot_size_bytes = self.snapshots.size_bytes();
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let snapshots = self.snapshots.clone();
        let stored = tokio::task::block_in_place(|| snapshots.load())?;
        Ok(stored.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: stored.body,
        }))
    }
}

/// Make `plugin` run the plugin and state in `body`. Used on start-up and
/// when a snapshot arrives from the leader.
pub async fn install_body(
    engine: &PluginEngine,
    plugin: &PluginHandle,
    body: &SnapshotBody,
) -> io::Result<()> {
    let Some(state) = &body.plugin else {
        return Ok(());
    };
    let code = engine
        .load_off_thread(state.code.clone())
        .await
        .map_err(|error| {
            io::Error::other(format!("cannot run the plugin in the snapshot: {error}"))
        })?;
    let position = state.position.unwrap_or(GENESIS_POSITION);
    plugin
        .install(code, Some((position, state.state.clone())))
        .await
        .map_err(io::Error::other)?
        .map_err(|error| io::Error::other(format!("cannot restore the snapshot: {error}")))
}

fn respond(responder: Option<Responder>, response: Response) {
    if let Some(responder) = responder {
        responder.send(response);
    }
}

/// Writes a snapshot whose content was captured by the state machine.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    body: SnapshotBody,
    snapshots: SnapshotStore,
    status: Arc<watch::Sender<MachineStatus>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotBody;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let stored = StoredSnapshot {
            meta: self.meta.clone(),
            body: self.body.clone(),
        };
        let snapshots = self.snapshots.clone();
        let stored = tokio::task::spawn_blocking(move || snapshots.save(&stored).map(|()| stored))
            .await
            .map_err(io::Error::other)??;
        let index = stored.meta.last_log_id.as_ref().map(|log_id| log_id.index);
        tracing::info!(index, "snapshot written");
        self.status.send_modify(|status| {
            status.snapshot_size_bytes = self.snapshots.size_bytes();
        });
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: stored.body,
        })
    }
}
