//! The Raft state machine: committed entries go to the plugin, host entries
//! (blank, membership, deploy) are handled here.
//!
//! The machine is transient: the plugin's state lives in its instance, and
//! on start the node restores the newest snapshot ([`StateMachineStore::open`])
//! and openraft re-applies the committed log after it. A store plugin's
//! state file is the exception: checkpointed now and then, it is resumed
//! from at start when it can be (`durable`).
//!
//! `deploy` switches plugins at a deploy entry and installs snapshots;
//! `host_entries` applies settings changes.

#[cfg(test)]
mod batching_tests;
mod deploy;
#[cfg(test)]
mod deploy_trust_tests;
mod durable;
mod host_entries;
#[cfg(test)]
mod level_tests;
mod stop_checkpoint;

use durable::CheckpointClock;
pub use durable::DurableStore;
pub use stop_checkpoint::StopCheckpoint;

use deploy::install_body;

use std::io;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::EntryPayload;
use openraft::storage::{EntryResponder, RaftStateMachine};
use tokio::sync::watch;

use super::digest::{Applied, DigestBytes, command_digest};
use super::host_state::HostState;
pub use super::machine_status::MachineStatus;
use super::plugin_history::PluginHistory;
use super::session_batch::SessionBatch;
use super::sessions::{Admission, SessionStamp};
use super::settings::{ClusterSettings, PROTOCOL_LEVEL_LEGACY};
use super::snapshot::{
    PluginState, SnapshotBody, Snapshots, StoredSnapshot, refuse_unsupported_level,
};
use super::snapshot_builder::SnapshotBuilder;
use super::types::{LogId, Payload, Request, Response, SnapshotMeta, StoredMembership, TypeConfig};
use crate::limits::PluginLimits;
use crate::plugin::native::native_name;
use crate::plugin::{
    ApplyError, ApplyOutcome, EntryPosition, PluginDigest, PluginEngine, PluginHandle,
};

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotBody>;
type Responder = openraft::storage::ApplyResponder<TypeConfig>;

/// A command waiting for the plugin, with what its digest needs.
struct PendingCommand {
    position: EntryPosition,
    bytes: Vec<u8>,
    command_digest: DigestBytes,
    /// The session whose response to keep, for a session command.
    session: Option<SessionStamp>,
    responder: Option<Responder>,
}

/// The state machine openraft drives.
pub struct StateMachineStore {
    plugin: PluginHandle,
    /// The node's own plugin flags: in force only while the cluster is at
    /// protocol level 0 (before cluster settings existed).
    flag_limits: PluginLimits,
    /// The marker of the native state machine this node runs instead of
    /// plugins, if it is embedded with one.
    native: Option<Arc<[u8]>>,
    host: HostState,
    engine: PluginEngine,
    snapshots: Snapshots,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    status: Arc<watch::Sender<MachineStatus>>,
    /// The session commands among those waiting for the plugin.
    session_batch: SessionBatch,
    /// What has been applied since the plugin store's last checkpoint.
    checkpoints: CheckpointClock,
    /// An apply or install is under way (or was cut off): the host state
    /// may not match the plugin's.
    in_flight: bool,
    /// Where the machine hands its state over when it stops, if a node
    /// waits to write the final checkpoint.
    at_stop: Option<stop_checkpoint::AtStop>,
}

impl StateMachineStore {
    /// A machine holding the newest snapshot in `snapshots` (installed into
    /// `plugin`), or empty when there is none. `native`: the marker of the
    /// native state machine `plugin` runs, if any.
    pub async fn open(
        plugin: PluginHandle,
        engine: PluginEngine,
        snapshots: Snapshots,
        flag_limits: PluginLimits,
        native: Option<Arc<[u8]>>,
    ) -> io::Result<Self> {
        Self::open_with(plugin, engine, snapshots, flag_limits, native, None).await
    }

    /// [`StateMachineStore::open`], resuming from the plugin's state file
    /// in `durable` instead of the snapshot where it can.
    pub async fn open_with(
        plugin: PluginHandle,
        engine: PluginEngine,
        snapshots: Snapshots,
        flag_limits: PluginLimits,
        native: Option<Arc<[u8]>>,
        durable: Option<DurableStore>,
    ) -> io::Result<Self> {
        let restored = snapshots.load()?;
        let resumed = match &durable {
            Some(durable) if native.is_none() => {
                durable::resume(&plugin, &engine, &flag_limits, durable, restored.as_ref()).await?
            }
            _ => None,
        };
        let (start, running) = match resumed {
            Some(resumed) => (resumed.snapshot, Some(resumed.code)),
            None => {
                if let Some(snapshot) = &restored {
                    let settings = &snapshot.body.host.settings;
                    set_limits(&plugin, effective_limits(settings, &flag_limits)).await?;
                    install_body(&engine, &plugin, &snapshot.body, native.as_deref()).await?;
                }
                let running = restored
                    .as_ref()
                    .and_then(|snapshot| snapshot.body.plugin.as_ref())
                    .map(|plugin| plugin.code.clone());
                (restored.unwrap_or_default(), running)
            }
        };
        let host = start.body.host;
        let (settings, applied_digest, checkpoints, alarms) = MachineStatus::replicated(&host);
        let status = MachineStatus {
            history: host.history.without_bytes(),
            rollback_plugin: rollback_bytes(&host.history),
            plugin_digest: running
                .as_deref()
                .map(|code| PluginDigest::of(code).to_hex()),
            plugin_size_bytes: running.as_ref().map_or(0, Vec::len),
            snapshot_size_bytes: snapshots.size_bytes(),
            settings,
            signers: host.signers.clone(),
            applied_digest,
            checkpoints,
            alarms,
            sessions_open: host.sessions.open_count(),
            native: native.as_deref().and_then(native_name).map(str::to_string),
        };
        let machine = Self {
            plugin,
            flag_limits,
            native,
            host,
            engine,
            snapshots,
            last_applied: start.meta.last_log_id,
            last_membership: start.meta.last_membership,
            status: Arc::new(watch::channel(status).0),
            session_batch: SessionBatch::default(),
            checkpoints: CheckpointClock::start(),
            in_flight: false,
            at_stop: None,
        };
        machine.prune_compiled().await;
        Ok(machine)
    }

    /// Status updates published by the machine.
    pub fn status(&self) -> watch::Receiver<MachineStatus> {
        self.status.subscribe()
    }

    async fn apply_commands(&mut self, pending: &mut Vec<PendingCommand>) -> io::Result<()> {
        self.session_batch.clear();
        if pending.is_empty() {
            return Ok(());
        }
        let mut commands = Vec::with_capacity(pending.len());
        let mut rest = Vec::with_capacity(pending.len());
        for command in pending.drain(..) {
            commands.push((command.position, command.bytes));
            rest.push((
                command.position,
                command.command_digest,
                command.session,
                command.responder,
            ));
        }
        let outcomes = self
            .plugin
            .apply(commands)
            .await
            .map_err(io::Error::other)?;
        for ((outcome, writes), (position, command, session, responder)) in
            outcomes.into_iter().zip(rest)
        {
            self.fold_command(position, &command, &outcome, writes.as_ref());
            if let Some(stamp) = session {
                self.host
                    .sessions
                    .record(stamp, command, position.index, &outcome);
            }
            respond(responder, Response::Command(outcome));
        }
        Ok(())
    }

    /// Fold a command's outcome into the applied digest.
    fn fold_command(
        &mut self,
        position: EntryPosition,
        command: &DigestBytes,
        outcome: &ApplyOutcome,
        store_writes: Option<&DigestBytes>,
    ) {
        let failure;
        let outcome = match outcome {
            Ok(bytes) => Ok(bytes.as_slice()),
            Err(ApplyError::Rejected(message)) => {
                failure = format!("rejected: {message}");
                Err(failure.as_str())
            }
            Err(ApplyError::Fault(fault)) => {
                failure = format!("fault: {fault}");
                Err(failure.as_str())
            }
        };
        self.host.digest.apply(
            position.index,
            position.term,
            Applied::Command {
                time_ms: position.time_ms,
                command,
                outcome,
                store_writes,
            },
        );
    }

    /// Apply an entry that is not a command (after every command before it).
    async fn apply_host_entry(&mut self, log_id: LogId, payload: Payload) -> io::Result<Response> {
        let (index, term) = (log_id.index, log_id.leader_id.term);
        let response = match payload {
            EntryPayload::Blank => {
                self.host.digest.apply(index, term, Applied::Host(b"blank"));
                Response::Host
            }
            EntryPayload::Membership(membership) => {
                self.last_membership = StoredMembership::new(Some(log_id), membership);
                self.host
                    .digest
                    .apply(index, term, Applied::Host(b"membership"));
                Response::Host
            }
            EntryPayload::Normal(Request::Deploy { plugin, time_ms }) => {
                let plugin_digest = PluginDigest::of(&plugin).to_hex();
                let outcome = self.deploy(plugin, index, time_ms).await?;
                let folded = match &outcome {
                    Ok(receipt) => Ok(receipt.version),
                    Err(reason) => Err(reason.as_str()),
                };
                let deploy = Applied::Deploy {
                    plugin_digest: &plugin_digest,
                    outcome: folded,
                };
                self.host.digest.apply(index, term, deploy);
                Response::Deploy(outcome)
            }
            EntryPayload::Normal(Request::Settings(change)) => {
                Response::Settings(self.apply_settings(&change, index, term).await?)
            }
            EntryPayload::Normal(Request::Alarm(alarm)) => {
                self.host.alarms.raise(alarm);
                let encoded = postcard::to_stdvec(&alarm).map_err(io::Error::other)?;
                self.host.digest.apply(index, term, Applied::Host(&encoded));
                tracing::warn!(index, ?alarm, "alarm");
                self.publish_replicated();
                Response::Host
            }
            EntryPayload::Normal(Request::OpenSession {
                time_ms,
                timeout_ms,
            }) => {
                self.host.sessions.advance_clock(time_ms);
                let timeout = std::time::Duration::from_millis(timeout_ms);
                let client_id = index;
                let timeout_ms = self.host.sessions.open(client_id, timeout);
                let encoded =
                    postcard::to_stdvec(&(client_id, timeout_ms)).map_err(io::Error::other)?;
                self.host.digest.apply(index, term, Applied::Host(&encoded));
                Response::SessionOpened {
                    client_id,
                    timeout_ms,
                }
            }
            EntryPayload::Normal(Request::Command { .. } | Request::SessionCommand { .. }) => {
                unreachable!("commands are applied in batches")
            }
        };
        Ok(response)
    }

    /// Queue a session command for the plugin, or answer it without the
    /// plugin when it is a retry or refused. Session decisions must not
    /// depend on how entries happen to be batched on this replica, so a
    /// session command joins the queued ones only where
    /// [`SessionBatch::admits`] shows it is decided as it would be alone;
    /// otherwise the queued ones are applied and recorded first.
    async fn admit_session_command(
        &mut self,
        command: PendingCommand,
        pending: &mut Vec<PendingCommand>,
    ) -> io::Result<()> {
        let Some(stamp) = command.session else {
            pending.push(command);
            return Ok(());
        };
        if !self.session_batch.admits(stamp.client_id) {
            self.apply_commands(pending).await?;
        }
        self.session_batch
            .join(&self.host.sessions, stamp.client_id);
        let position = command.position;
        self.host.sessions.advance_clock(position.time_ms);
        let (response, folded) = match self.host.sessions.admit(stamp, &command.command_digest) {
            Admission::Apply => {
                pending.push(command);
                return Ok(());
            }
            Admission::Replay { index, outcome } => {
                let folded = postcard::to_stdvec(&("replayed", stamp, index));
                (Response::Replayed { index, outcome }, folded)
            }
            Admission::Refuse(refusal) => {
                let folded = postcard::to_stdvec(&("refused", stamp, refusal));
                (Response::SessionRefused(refusal), folded)
            }
        };
        // Answered without the plugin: everything queued before it goes first,
        // so the digest folds entries in log order.
        self.apply_commands(pending).await?;
        let folded = folded.map_err(io::Error::other)?;
        self.host
            .digest
            .apply(position.index, position.term, Applied::Host(&folded));
        respond(command.responder, response);
        Ok(())
    }

    fn publish_history(&self) {
        let history = self.host.history.without_bytes();
        let rollback = rollback_bytes(&self.host.history);
        self.status.send_modify(|status| {
            status.history = history;
            status.rollback_plugin = rollback;
        });
    }

    /// Publish the settings, digest and alarms after a batch.
    fn publish_replicated(&self) {
        let (settings, applied_digest, checkpoints, alarms) = MachineStatus::replicated(&self.host);
        self.status.send_modify(|status| {
            status.settings = settings;
            if status.signers != self.host.signers {
                status.signers = self.host.signers.clone();
            }
            status.applied_digest = applied_digest;
            status.checkpoints = checkpoints;
            status.alarms = alarms;
            status.sessions_open = self.host.sessions.open_count();
        });
    }
}

fn position_of(log_id: LogId, time_ms: u64) -> EntryPosition {
    EntryPosition {
        index: log_id.index,
        term: log_id.leader_id.term,
        time_ms,
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
        self.in_flight = true;
        let mut pending = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id;
            self.last_applied = Some(log_id);
            self.checkpoints.applied(1);
            match entry.payload {
                EntryPayload::Normal(Request::Command { time_ms, bytes }) => {
                    pending.push(PendingCommand {
                        position: position_of(log_id, time_ms),
                        command_digest: command_digest(&bytes),
                        bytes,
                        session: None,
                        responder,
                    });
                }
                EntryPayload::Normal(Request::SessionCommand {
                    time_ms,
                    session,
                    bytes,
                }) => {
                    let command = PendingCommand {
                        position: position_of(log_id, time_ms),
                        command_digest: command_digest(&bytes),
                        bytes,
                        session: Some(session),
                        responder,
                    };
                    self.admit_session_command(command, &mut pending).await?;
                }
                payload => {
                    // Everything before a host entry applies first, so the
                    // digest folds entries in log order.
                    self.apply_commands(&mut pending).await?;
                    let response = self.apply_host_entry(log_id, payload).await?;
                    respond(responder, response);
                }
            }
        }
        self.apply_commands(&mut pending).await?;
        self.publish_replicated();
        self.checkpoint_if_due().await?;
        self.in_flight = false;
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        // The plugin snapshot is taken here, between two applies, so it is
        // exactly the state at `last_applied`; only the file write is left to
        // the builder. A plugin whose snapshot fails skips this snapshot
        // instead of stopping the node. The state file is checkpointed at
        // the same point, so a restart never needs the log before it.
        if let Err(error) = self.checkpoint().await {
            tracing::error!("cannot checkpoint the plugin store: {error}");
        }
        match self.plugin.snapshot().await {
            Ok(Ok(plugin)) => Some(SnapshotBuilder {
                snapshot: StoredSnapshot {
                    meta: SnapshotMeta {
                        last_log_id: self.last_applied,
                        last_membership: self.last_membership.clone(),
                    },
                    body: SnapshotBody {
                        plugin: plugin.map(|snapshot| PluginState {
                            code: snapshot.code.to_vec(),
                            position: snapshot.position,
                            state: snapshot.state,
                        }),
                        host: self.host.clone(),
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
        // Refused before anything changes; the error stops the node, as
        // the settings entry that raised the level would have.
        refuse_unsupported_level(&body)?;
        self.in_flight = true;
        let limits = effective_limits(&body.host.settings, &self.flag_limits);
        set_limits(&self.plugin, limits).await?;
        install_body(&self.engine, &self.plugin, &body, self.native.as_deref()).await?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            body,
        };
        let snapshots = self.snapshots.clone();
        tokio::task::block_in_place(|| snapshots.save(&stored))?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.host = stored.body.host.clone();
        self.publish_history();
        self.publish_replicated();
        let plugin = stored.body.plugin.as_ref();
        self.status.send_modify(|status| {
            status.plugin_digest = plugin.map(|plugin| PluginDigest::of(&plugin.code).to_hex());
            status.plugin_size_bytes = plugin.map_or(0, |plugin| plugin.code.len());
            status.snapshot_size_bytes = self.snapshots.size_bytes();
        });
        self.prune_compiled().await;
        self.checkpoint().await?;
        self.in_flight = false;
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

/// The limits plugin calls run under: the cluster's settings — or, in a
/// cluster still at protocol level 0, where there were none, the node's own
/// flags, as before levels existed.
fn effective_limits(settings: &ClusterSettings, flag_limits: &PluginLimits) -> PluginLimits {
    if settings.protocol_level == PROTOCOL_LEVEL_LEGACY {
        *flag_limits
    } else {
        settings.plugin_limits()
    }
}

async fn set_limits(plugin: &PluginHandle, limits: PluginLimits) -> io::Result<()> {
    plugin.set_limits(limits).await.map_err(io::Error::other)
}

fn respond(responder: Option<Responder>, response: Response) {
    if let Some(responder) = responder {
        responder.send(response);
    }
}
