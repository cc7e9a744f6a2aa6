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
use openraft::storage::{EntryResponder, RaftStateMachine};
use tokio::sync::watch;

use super::digest::{Applied, AppliedDigest, DigestBytes, command_digest};
use super::host_state::HostState;
pub use super::machine_status::MachineStatus;
use super::plugin_history::{DeployRecord, PluginHistory};
use super::sessions::{Admission, SessionStamp};
use super::settings::{ClusterSettings, PROTOCOL_LEVEL_LEGACY, PROTOCOL_LEVEL_SUPPORTED};
use super::snapshot::{PluginState, SnapshotBody, Snapshots, StoredSnapshot};
use super::snapshot_builder::SnapshotBuilder;
use super::swap::{self, GENESIS_POSITION, Plan};
use super::types::{
    DeployReceipt, LogId, Payload, Request, Response, SnapshotMeta, StoredMembership, TypeConfig,
};
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
        let restored = snapshots.load()?;
        if let Some(snapshot) = &restored {
            let settings = &snapshot.body.host.settings;
            set_limits(&plugin, effective_limits(settings, &flag_limits)).await?;
            install_body(&engine, &plugin, &snapshot.body, native.as_deref()).await?;
        }
        let (last_applied, last_membership, host) = match &restored {
            Some(snapshot) => (
                snapshot.meta.last_log_id,
                snapshot.meta.last_membership.clone(),
                snapshot.body.host.clone(),
            ),
            None => (None, StoredMembership::default(), HostState::default()),
        };
        let running = restored
            .as_ref()
            .and_then(|snapshot| snapshot.body.plugin.as_ref())
            .map(|plugin| plugin.code.as_slice());
        let (settings, applied_digest, checkpoints, alarms) = MachineStatus::replicated(&host);
        let status = MachineStatus {
            history: host.history.without_bytes(),
            rollback_plugin: rollback_bytes(&host.history),
            plugin_digest: running.map(|code| PluginDigest::of(code).to_hex()),
            plugin_size_bytes: running.map_or(0, <[u8]>::len),
            snapshot_size_bytes: snapshots.size_bytes(),
            settings,
            applied_digest,
            checkpoints,
            alarms,
            sessions_open: host.sessions.open_count(),
            native: native.as_deref().and_then(native_name).map(str::to_string),
        };
        Ok(Self {
            plugin,
            flag_limits,
            native,
            host,
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

    async fn apply_commands(&mut self, pending: &mut Vec<PendingCommand>) -> io::Result<()> {
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
        for (outcome, (position, command, session, responder)) in outcomes.into_iter().zip(rest) {
            self.fold_command(position, &command, &outcome);
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
                let settings = match self.host.settings.after(&change) {
                    Ok(settings) => settings,
                    Err(reason) => {
                        self.host
                            .digest
                            .apply(index, term, Applied::Host(b"settings refused"));
                        return Ok(Response::Settings(Err(reason)));
                    }
                };
                if settings.protocol_level > PROTOCOL_LEVEL_SUPPORTED {
                    // Applying past this entry would guess at entries this
                    // binary cannot read: stop here, the same on every run.
                    return Err(io::Error::other(format!(
                        "the cluster moved to protocol level {} at entry {index}; this clusterhost ({}) supports \
                         up to {PROTOCOL_LEVEL_SUPPORTED}: upgrade this node's binary",
                        settings.protocol_level,
                        env!("CARGO_PKG_VERSION")
                    )));
                }
                if self.host.settings.protocol_level == PROTOCOL_LEVEL_LEGACY
                    && settings.protocol_level > PROTOCOL_LEVEL_LEGACY
                {
                    // Replicas of a legacy cluster may have started their
                    // digests at different points (one restored an old
                    // snapshot): every one starts afresh at this entry.
                    self.host.digest = AppliedDigest::default();
                }
                self.host.settings = settings;
                set_limits(&self.plugin, effective_limits(&settings, &self.flag_limits)).await?;
                let encoded = postcard::to_stdvec(&settings).map_err(io::Error::other)?;
                self.host.digest.apply(index, term, Applied::Host(&encoded));
                tracing::info!(index, "cluster settings changed:\n{settings}");
                // Visible before the proposer hears back.
                self.publish_replicated();
                Response::Settings(Ok(settings))
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
                let client_id = self.host.sessions.open(index, timeout);
                let timeout_ms = clamp_timeout_ms(timeout);
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

    /// Queue a session command for the plugin, or answer it without the
    /// plugin when it is a retry or refused. Session decisions must not
    /// depend on how entries happen to be batched on this replica, so a
    /// session command is admitted only once every earlier one has applied
    /// and been recorded.
    async fn admit_session_command(
        &mut self,
        command: PendingCommand,
        pending: &mut Vec<PendingCommand>,
    ) -> io::Result<()> {
        let Some(stamp) = command.session else {
            pending.push(command);
            return Ok(());
        };
        if pending.iter().any(|queued| queued.session.is_some()) {
            self.apply_commands(pending).await?;
        }
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

fn clamp_timeout_ms(timeout: std::time::Duration) -> u64 {
    u64::try_from(super::sessions::clamp_timeout(timeout).as_millis()).unwrap_or(u64::MAX)
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
        Ok(())
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
