//! A dedicated thread that owns the plugin runtime, and the async handle the
//! rest of the node uses to reach it.
//!
//! Wasm calls are synchronous CPU work and WASI's sync bindings must not run
//! inside the tokio runtime, so every call happens on this one thread. One
//! thread also serializes calls, which the contract promises plugins.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::code::PluginCode;
use super::instance::{EntryPosition, Fault, PluginResult};
use super::machine::Machine;
use super::runtime::{ApplyError, FsmRuntime, RebuildError, RestoreError, SavedState};
use super::store::SideRecord;
use super::store::durable::Stored;

mod durable;
use crate::limits::{PLUGIN_QUEUE_DEPTH, PluginLimits, READER_CATCH_UP_SLICE_ENTRIES};
use crate::metrics::{CallOutcome, Metrics};

/// The worker thread is gone: it stopped after a fatal error or shutdown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    /// The thread has exited.
    #[error("the plugin worker has stopped")]
    Stopped,
    /// The plugin could not rebuild its state; the node must stop.
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    /// The plugin's `snapshot` failed.
    #[error("plugin snapshot failed: {0}")]
    Snapshot(Fault),
}

/// Result of applying one entry.
pub type ApplyOutcome = Result<Vec<u8>, ApplyError>;

/// An applied entry's outcome and the digest of the store writes it kept
/// (`None`: none), which the applied digest covers.
pub type AppliedEntry = (ApplyOutcome, Option<[u8; 32]>);

/// A query's answer, or the fault that stopped it.
type QueryResult = Result<Result<PluginResult, Fault>, RebuildError>;
/// A snapshot (none for a machine without state), or the fault that stopped it.
type SnapshotResult = Result<Result<Option<PluginSnapshot>, Fault>, RebuildError>;

enum Job {
    Apply {
        entries: Vec<(EntryPosition, Vec<u8>)>,
        reply: oneshot::Sender<Result<Vec<AppliedEntry>, RebuildError>>,
    },
    Query {
        request: Vec<u8>,
        reply: oneshot::Sender<QueryResult>,
    },
    Snapshot {
        reply: oneshot::Sender<SnapshotResult>,
    },
    SetLimits {
        limits: PluginLimits,
        reply: oneshot::Sender<()>,
    },
    Install {
        code: PluginCode,
        state: Option<SavedState>,
        reply: oneshot::Sender<Result<(), RestoreError>>,
    },
    RestoreNative {
        position: EntryPosition,
        state: Vec<u8>,
        reply: oneshot::Sender<Result<(), RestoreError>>,
    },
    Checkpoint {
        index: u64,
        host: Vec<u8>,
        side: SideRecord,
        reply: oneshot::Sender<Result<bool, RebuildError>>,
    },
    Resume {
        code: PluginCode,
        stored: Box<Stored>,
        limits: PluginLimits,
        reply: oneshot::Sender<Result<(), RestoreError>>,
    },
}

/// The running plugin's code and state at a position.
#[derive(Debug, Clone)]
pub struct PluginSnapshot {
    /// The plugin's bytes (or a native machine's marker).
    pub code: Arc<[u8]>,
    /// The last entry the state includes.
    pub position: Option<EntryPosition>,
    /// The plugin's serialized state.
    pub state: Vec<u8>,
    /// Whether `state` is an envelope with the store (the plugin uses it).
    pub enveloped: bool,
}

/// Cheap, cloneable handle to the plugin worker thread. The thread exits
/// when the last handle is dropped.
#[derive(Clone)]
pub struct PluginHandle {
    jobs: mpsc::Sender<Job>,
    /// The machine's [`Machine::state_size_bytes`], as of its last job
    /// ([`STATE_SIZE_UNKNOWN`] for `None`).
    state_size_bytes: Arc<AtomicU64>,
    /// Store write bytes since the last checkpoint, as of the last job
    /// ([`STATE_SIZE_UNKNOWN`]: the machine has no state file).
    unsaved_write_bytes: Arc<AtomicU64>,
}

/// What `state_size_bytes` holds while no size is known.
const STATE_SIZE_UNKNOWN: u64 = u64::MAX;

impl PluginHandle {
    /// Start a worker thread running `runtime` (`None`: no plugin deployed
    /// yet; a native machine runs from the start).
    pub fn spawn(
        runtime: Option<Machine>,
        limits: PluginLimits,
        node_label: String,
    ) -> std::io::Result<Self> {
        Self::spawn_recording(runtime, limits, node_label, Metrics::default(), None)
    }

    /// [`PluginHandle::spawn`], with every plugin call counted and timed
    /// in `metrics`, and the state files of plugins that use the store in
    /// `store_dir` (`None`: in memory).
    pub fn spawn_recording(
        runtime: Option<Machine>,
        limits: PluginLimits,
        node_label: String,
        metrics: Metrics,
        store_dir: Option<PathBuf>,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = mpsc::channel(PLUGIN_QUEUE_DEPTH);
        let state_size_bytes = Arc::new(AtomicU64::new(STATE_SIZE_UNKNOWN));
        publish_state_size(runtime.as_ref(), &state_size_bytes);
        let published = state_size_bytes.clone();
        let unsaved_write_bytes = Arc::new(AtomicU64::new(STATE_SIZE_UNKNOWN));
        let unsaved = unsaved_write_bytes.clone();
        std::thread::Builder::new()
            .name(format!("plugin-{node_label}"))
            .spawn(move || {
                // Plugin output and faults are logged under the node's id.
                let span = tracing::info_span!("node", id = %node_label);
                let _entered = span.enter();
                let context = WorkerContext {
                    state_size_bytes: &published,
                    unsaved_write_bytes: &unsaved,
                    metrics: &metrics,
                    store_dir: store_dir.as_deref(),
                };
                run_worker(runtime, limits, receiver, &context);
            })?;
        Ok(Self {
            jobs,
            state_size_bytes,
            unsaved_write_bytes,
        })
    }

    /// Apply committed commands in order; one outcome per command.
    pub async fn apply(
        &self,
        entries: Vec<(EntryPosition, Vec<u8>)>,
    ) -> Result<Vec<AppliedEntry>, WorkerError> {
        let (reply, response) = oneshot::channel();
        self.send(Job::Apply { entries, reply }).await?;
        Ok(response.await.map_err(|_| WorkerError::Stopped)??)
    }

    /// Run a read-only query.
    pub async fn query(
        &self,
        request: Vec<u8>,
    ) -> Result<Result<PluginResult, Fault>, WorkerError> {
        let (reply, response) = oneshot::channel();
        self.send(Job::Query { request, reply }).await?;
        Ok(response.await.map_err(|_| WorkerError::Stopped)??)
    }

    /// Snapshot the plugin state after the last applied entry, with that
    /// entry's position; `None` when no plugin is deployed. The outer error
    /// means the plugin cannot reproduce its state (or the worker stopped),
    /// the inner one that its `snapshot` failed.
    pub async fn snapshot(
        &self,
    ) -> Result<Result<Option<PluginSnapshot>, WorkerError>, WorkerError> {
        let (reply, response) = oneshot::channel();
        self.send(Job::Snapshot { reply }).await?;
        let snapshot = response.await.map_err(|_| WorkerError::Stopped)??;
        Ok(snapshot.map_err(WorkerError::Snapshot))
    }

    /// Replace the running plugin with `code` holding `state` (or empty).
    /// On error the previous plugin keeps running, untouched.
    pub async fn install(
        &self,
        code: PluginCode,
        state: Option<SavedState>,
    ) -> Result<Result<(), RestoreError>, WorkerError> {
        let (reply, response) = oneshot::channel();
        self.send(Job::Install { code, state, reply }).await?;
        response.await.map_err(|_| WorkerError::Stopped)
    }

    /// Restore the running native machine to `state`, taken after
    /// `position` (a snapshot from the leader, or the node's own at start).
    pub async fn restore_native(
        &self,
        position: EntryPosition,
        state: Vec<u8>,
    ) -> Result<Result<(), RestoreError>, WorkerError> {
        let (reply, response) = oneshot::channel();
        self.send(Job::RestoreNative {
            position,
            state,
            reply,
        })
        .await?;
        response.await.map_err(|_| WorkerError::Stopped)
    }

    /// Run every later call, and every plugin installed from now on, under
    /// `limits` (the cluster's settings, at the entry that set them).
    pub async fn set_limits(&self, limits: PluginLimits) -> Result<(), WorkerError> {
        let (reply, response) = oneshot::channel();
        self.send(Job::SetLimits { limits, reply }).await?;
        response.await.map_err(|_| WorkerError::Stopped)
    }

    async fn send(&self, job: Job) -> Result<(), WorkerError> {
        self.jobs.send(job).await.map_err(|_| WorkerError::Stopped)
    }
}

fn publish_state_size(runtime: Option<&Machine>, state_size_bytes: &AtomicU64) {
    let bytes = runtime
        .and_then(Machine::state_size_bytes)
        .map_or(STATE_SIZE_UNKNOWN, |bytes| bytes as u64);
    state_size_bytes.store(bytes, Ordering::Relaxed);
}

/// What the worker thread works with besides its machine.
struct WorkerContext<'a> {
    state_size_bytes: &'a AtomicU64,
    unsaved_write_bytes: &'a AtomicU64,
    metrics: &'a Metrics,
    store_dir: Option<&'a Path>,
}

fn run_worker(
    runtime: Option<Machine>,
    limits: PluginLimits,
    mut jobs: mpsc::Receiver<Job>,
    context: &WorkerContext<'_>,
) {
    let mut worker = WorkerThread {
        runtime,
        limits,
        context,
    };
    while let Some(job) = jobs.blocking_recv() {
        worker.run(job);
        catch_up_reader_while_idle(&jobs, worker.runtime.as_mut());
    }
}

/// The worker thread's machine and the limits it runs under, one job at a
/// time. Every job that can change the state publishes its size before
/// replying, so a caller that got its answer sees the size that answer left.
struct WorkerThread<'a> {
    runtime: Option<Machine>,
    limits: PluginLimits,
    context: &'a WorkerContext<'a>,
}

impl WorkerThread<'_> {
    fn run(&mut self, job: Job) {
        match job {
            Job::Apply { entries, reply } => {
                let outcomes = apply_all(self.runtime.as_mut(), entries, self.context.metrics);
                self.publish_state_size();
                let _ = reply.send(outcomes);
            }
            Job::Query { request, reply } => {
                let _ = reply.send(self.query(&request));
            }
            Job::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Job::SetLimits { limits, reply } => {
                self.limits = limits;
                if let Some(runtime) = self.runtime.as_mut() {
                    runtime.set_limits(limits);
                }
                let _ = reply.send(());
            }
            Job::Install { code, state, reply } => {
                let _ = reply.send(self.install(code, state));
            }
            Job::RestoreNative {
                position,
                state,
                reply,
            } => {
                let _ = reply.send(self.restore_native(position, &state));
            }
            Job::Checkpoint {
                index,
                host,
                side,
                reply,
            } => {
                let _ = reply.send(self.checkpoint(index, host, &side));
            }
            Job::Resume {
                code,
                stored,
                limits,
                reply,
            } => {
                let _ = reply.send(self.resume(code, *stored, limits));
            }
        }
    }

    fn publish_state_size(&self) {
        publish_state_size(self.runtime.as_ref(), self.context.state_size_bytes);
        let unsaved = match &self.runtime {
            Some(Machine::Plugin(runtime)) if runtime.has_durable_store() => {
                runtime.unsaved_write_bytes()
            }
            _ => STATE_SIZE_UNKNOWN,
        };
        self.context
            .unsaved_write_bytes
            .store(unsaved, Ordering::Relaxed);
    }

    fn record_usage(&mut self, export: &'static str) {
        record_usage(self.runtime.as_mut(), export, self.context.metrics);
    }

    fn query(&mut self, request: &[u8]) -> QueryResult {
        let started = Instant::now();
        let result = match self.runtime.as_mut() {
            Some(runtime) => runtime.query(request),
            None => Ok(Ok(Err(NO_PLUGIN.to_string()))),
        };
        let outcome = match &result {
            Ok(Ok(Ok(_))) => CallOutcome::Ok,
            Ok(Ok(Err(_))) => CallOutcome::Rejected,
            Ok(Err(_)) | Err(_) => CallOutcome::Trapped,
        };
        self.context
            .metrics
            .plugin_call("query", outcome, started.elapsed());
        self.record_usage("query");
        result
    }

    fn snapshot(&mut self) -> SnapshotResult {
        let started = Instant::now();
        let snapshot = snapshot(self.runtime.as_mut());
        let outcome = match &snapshot {
            Ok(Ok(_)) => CallOutcome::Ok,
            Ok(Err(_)) | Err(_) => CallOutcome::Trapped,
        };
        self.context
            .metrics
            .plugin_call("snapshot", outcome, started.elapsed());
        self.record_usage("snapshot");
        self.publish_state_size();
        snapshot
    }

    /// Replace the machine with `code`; on error the previous one stays.
    fn install(&mut self, code: PluginCode, state: Option<SavedState>) -> Result<(), RestoreError> {
        let started = Instant::now();
        let store_dir = self.context.store_dir;
        let installed = match state {
            Some(state) => FsmRuntime::from_snapshot_in(code, self.limits, state, store_dir),
            None => FsmRuntime::new_in(code, self.limits, store_dir).map_err(RestoreError::Fault),
        };
        let installed = installed.map(|mut fresh| {
            // Before the old runtime closes its file: the new one replaces it.
            fresh.promote_store();
            self.runtime = Some(Machine::Plugin(Box::new(fresh)));
        });
        let outcome = match &installed {
            Ok(()) => CallOutcome::Ok,
            Err(RestoreError::Refused(_)) => CallOutcome::Rejected,
            Err(RestoreError::Fault(_)) => CallOutcome::Trapped,
        };
        self.context
            .metrics
            .plugin_call("restore", outcome, started.elapsed());
        self.record_usage("restore");
        self.publish_state_size();
        installed
    }

    fn restore_native(
        &mut self,
        position: EntryPosition,
        state: &[u8],
    ) -> Result<(), RestoreError> {
        let restored = match self.runtime.as_mut() {
            Some(Machine::Native(machine)) => machine.restore(position, state),
            _ => Err(RestoreError::Refused(
                "the snapshot holds a native state machine's state, and this node runs none"
                    .to_string(),
            )),
        };
        self.publish_state_size();
        restored
    }
}

/// Count what a plugin's calls of `export` cost (fuel), its rebuilds, and
/// its instances' memory now. Nothing for a native machine.
fn record_usage(runtime: Option<&mut Machine>, export: &'static str, metrics: &Metrics) {
    let Some(usage) = runtime.and_then(Machine::take_usage) else {
        return;
    };
    metrics.plugin_fuel(export, usage.fuel_used);
    metrics.plugin_memory("applier", usage.applier_memory_bytes);
    metrics.plugin_memory("reader", usage.reader_memory_bytes);
    if usage.applier_rebuilds > 0 {
        metrics.plugin_rebuilds("applier", usage.applier_rebuilds);
    }
    if usage.reader_rebuilds > 0 {
        metrics.plugin_rebuilds("reader", usage.reader_rebuilds);
    }
}

/// While no job waits, let the reader catch up a slice at a time, so that a
/// read or a new base does not replay a long stretch at once later.
fn catch_up_reader_while_idle(jobs: &mpsc::Receiver<Job>, runtime: Option<&mut Machine>) {
    let Some(runtime) = runtime else {
        return;
    };
    while jobs.is_empty() && runtime.advance_reader(READER_CATCH_UP_SLICE_ENTRIES) {}
}

fn snapshot(
    runtime: Option<&mut Machine>,
) -> Result<Result<Option<PluginSnapshot>, Fault>, RebuildError> {
    let Some(runtime) = runtime else {
        return Ok(Ok(None));
    };
    Ok(runtime.snapshot()?.map(|state| {
        Some(PluginSnapshot {
            code: runtime.code(),
            position: runtime.last_applied(),
            state,
            enveloped: runtime.uses_store(),
        })
    }))
}

/// What a command gets when no plugin has been deployed yet.
const NO_PLUGIN: &str = "no plugin is deployed on this cluster yet";

fn apply_all(
    mut runtime: Option<&mut Machine>,
    entries: Vec<(EntryPosition, Vec<u8>)>,
    metrics: &Metrics,
) -> Result<Vec<AppliedEntry>, RebuildError> {
    let applied = apply_each(runtime.as_deref_mut(), entries, metrics);
    // One commit of the state file for the whole batch, before anyone
    // hears of its results.
    if let Some(runtime) = runtime.as_deref_mut() {
        runtime.commit_store_writes();
    }
    // Also when a rebuild failed part way: the entries before it burned fuel.
    record_usage(runtime, "apply", metrics);
    applied
}

fn apply_each(
    mut runtime: Option<&mut Machine>,
    entries: Vec<(EntryPosition, Vec<u8>)>,
    metrics: &Metrics,
) -> Result<Vec<AppliedEntry>, RebuildError> {
    let mut outcomes = Vec::with_capacity(entries.len());
    for (position, command) in entries {
        let started = Instant::now();
        let (outcome, writes) = match runtime.as_deref_mut() {
            Some(runtime) => {
                let outcome = runtime.apply(position, command)?;
                (outcome, runtime.last_writes_digest())
            }
            None => (Err(ApplyError::Rejected(NO_PLUGIN.to_string())), None),
        };
        let counted = match &outcome {
            Ok(_) => CallOutcome::Ok,
            Err(ApplyError::Rejected(_)) => CallOutcome::Rejected,
            Err(ApplyError::Fault(_)) => CallOutcome::Trapped,
        };
        metrics.plugin_call("apply", counted, started.elapsed());
        outcomes.push((outcome, writes));
    }
    Ok(outcomes)
}
