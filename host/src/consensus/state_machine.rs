//! The Raft state machine: committed entries go to the plugin, host entries
//! (blank, membership, deploy) are handled here.
//!
//! The machine is transient: the plugin's state lives in its instance, and
//! on start the node restores the newest snapshot ([`StateMachineStore::open`])
//! and openraft re-applies the committed log after it.

use std::io;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::EntryPayload;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use tokio::sync::watch;

use super::plugin_history::{DeployRecord, PluginHistory};
use super::snapshot::{PluginState, SnapshotBody, Snapshots, StoredSnapshot};
use super::swap::{self, GENESIS_POSITION, Plan};
use super::types::{
    DeployReceipt, LogId, Request, Response, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::plugin::{EntryPosition, PluginDigest, PluginEngine, PluginHandle};

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
    /// Size of the newest snapshot file.
    pub snapshot_size_bytes: Option<u64>,
}

/// The state machine openraft drives.
pub struct StateMachineStore {
    plugin: PluginHandle,
    history: PluginHistory,
    engine: PluginEngine,
    snapshots: Snapshots,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    status: Arc<watch::Sender<MachineStatus>>,
}

impl StateMachineStore {
    /// A machine holding the newest snapshot in `snapshots` (installed into
    /// `plugin`), or empty when there is none.
    pub async fn open(
        plugin: PluginHandle,
        engine: PluginEngine,
        snapshots: Snapshots,
    ) -> io::Result<Self> {
        let restored = snapshots.load()?;
        if let Some(snapshot) = &restored {
            install_body(&engine, &plugin, &snapshot.body).await?;
        }
        let (last_applied, last_membership, history) = match &restored {
            Some(snapshot) => (
                snapshot.meta.last_log_id,
                snapshot.meta.last_membership.clone(),
                snapshot.body.history.clone(),
            ),
            None => (None, StoredMembership::default(), PluginHistory::default()),
        };
        let running = restored
            .as_ref()
            .and_then(|snapshot| snapshot.body.plugin.as_ref());
        let status = MachineStatus {
            history: history.without_bytes(),
            rollback_plugin: rollback_bytes(&history),
            plugin_digest: running.map(|plugin| PluginDigest::of(&plugin.code).to_hex()),
            plugin_size_bytes: running.map_or(0, |plugin| plugin.code.len()),
            snapshot_size_bytes: snapshots.size_bytes(),
        };
        Ok(Self {
            plugin,
            history,
            engine,
            snapshots,
            last_applied,
            last_membership,
            status: Arc::new(watch::channel(status).0),
        })
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
        let mut responders = Vec::with_capacity(pending.len());
        let mut commands = Vec::with_capacity(pending.len());
        for (position, bytes, responder) in pending.drain(..) {
            commands.push((position, bytes));
            responders.push(responder);
        }
        let outcomes = self
            .plugin
            .apply(commands)
            .await
            .map_err(io::Error::other)?;
        for (outcome, responder) in outcomes.into_iter().zip(responders) {
            respond(responder, Response::Command(outcome));
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
        let record = DeployRecord {
            version: None,
            digest: PluginDigest::of(&bytes).to_hex(),
            size_bytes: bytes.len() as u64,
            index,
            time_ms,
            failure: None,
        };
        let running = self.status.borrow().plugin_digest.clone();
        if let Plan::AlreadyRunning(receipt) =
            swap::plan(running.as_deref(), &record.digest, &self.history, index)
        {
            return Ok(Ok(receipt));
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
        let outcome = swap::conclude(&mut self.history, record, previous, installed);
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

    fn publish_history(&self) {
        let history = self.history.without_bytes();
        let rollback = rollback_bytes(&self.history);
        self.status.send_modify(|status| {
            status.history = history;
            status.rollback_plugin = rollback;
        });
    }
}

fn rollback_bytes(history: &PluginHistory) -> Option<Arc<Vec<u8>>> {
    history
        .rollback_target()
        .map(|plugin| Arc::new(plugin.bytes.clone()))
}

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
                snapshot: StoredSnapshot {
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
            status.plugin_digest = plugin.map(|plugin| PluginDigest::of(&plugin.code).to_hex());
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

/// Make `plugin` run the plugin and state in `body`: on start-up and when a
/// snapshot arrives from the leader.
async fn install_body(
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
    snapshot: StoredSnapshot,
    snapshots: Snapshots,
    status: Arc<watch::Sender<MachineStatus>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotBody;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let stored = self.snapshot.clone();
        let snapshots = self.snapshots.clone();
        let stored = tokio::task::spawn_blocking(move || snapshots.save(&stored).map(|()| stored))
            .await
            .map_err(io::Error::other)??;
        tracing::info!(index = stored.index(), "snapshot written");
        self.status.send_modify(|status| {
            status.snapshot_size_bytes = self.snapshots.size_bytes();
        });
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: stored.body,
        })
    }
}
