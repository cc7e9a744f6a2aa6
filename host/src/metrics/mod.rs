//! The node's Prometheus metrics: one [`Metrics`] handle, cloned into what
//! records (the gRPC layer, Raft proposals, the plugin worker, the log
//! writer) and encoded by the ops listener (`ops`). prometheus-client is
//! used here and nowhere else.
//!
//! Recording is a few atomic operations (a label set's counter is found
//! under a read lock), so the apply path and the log writer never wait on
//! a scrape. Values that Raft, gossip and the state machine already keep
//! are not recorded twice: the listener reads them when scraped and hands
//! them over as a [`Sample`].
//!
//! - [`process`]: CPU time, memory and open files of this process.

pub mod process;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Raft roles, as the `role` label names them.
pub const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

/// How a proposal ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// Committed and applied.
    Ok,
    /// This node was not the leader.
    NotLeader,
    /// May or may not have committed (timeout, lost from the log).
    Ambiguous,
    /// Raft refused it.
    Refused,
}

impl ProposalOutcome {
    fn label(self) -> &'static str {
        match self {
            ProposalOutcome::Ok => "ok",
            ProposalOutcome::NotLeader => "not_leader",
            ProposalOutcome::Ambiguous => "ambiguous",
            ProposalOutcome::Refused => "refused",
        }
    }
}

/// How a plugin call ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The plugin answered `ok`.
    Ok,
    /// The plugin answered `err`.
    Rejected,
    /// It trapped or hit a limit (fuel, memory, response size).
    Trapped,
}

impl CallOutcome {
    fn label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Trapped => "trapped",
        }
    }
}

/// What Raft, gossip and the state machine report at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// The current term.
    pub term: u64,
    /// One of [`ROLES`].
    pub role: &'static str,
    /// The leader's id, if one is known.
    pub leader: Option<u64>,
    /// Raft indexes.
    pub last_log_index: u64,
    /// Highest index known committed.
    pub committed_index: u64,
    /// Highest index applied here.
    pub applied_index: u64,
    /// Index the newest snapshot includes.
    pub snapshot_index: u64,
    /// Members gossip sees alive, and dead.
    pub gossip_alive: u64,
    /// Members gossip sees dead.
    pub gossip_dead: u64,
    /// Successful deploys (the cluster version).
    pub cluster_version: u64,
    /// Deploys the history records that failed.
    pub deploys_failed: u64,
    /// Bytes of the plugin's state as last snapshotted (0: unknown).
    pub plugin_state_bytes: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodCodeLabels {
    method: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExportLabels {
    export: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExportOutcomeLabels {
    export: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerCallLabels {
    peer: u64,
    call: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LivenessLabels {
    liveness: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 50 µs to ~3.3 s, doubling: an in-memory apply, an
/// fsync and a forwarded write all land inside.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// Group sizes from 1 to 256 jobs, doubling.
fn group_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 9))
}

/// What is recorded as it happens.
#[derive(Default)]
struct Recorded {
    leader_changes: Counter,
    proposals: Family<OutcomeLabels, Counter>,
    grpc_requests: Family<MethodCodeLabels, Counter>,
    grpc_forwarded: Family<MethodLabels, Counter>,
    plugin_calls: Family<ExportOutcomeLabels, Counter>,
    log_fsyncs: Counter,
    autopilot_actions: Family<ActionLabels, Counter>,
    raft_rpcs: Family<PeerCallLabels, Counter>,
    raft_entries_sent: Family<PeerLabels, Counter>,
}

/// What is set from a [`Sample`] at scrape time.
#[derive(Default)]
struct Sampled {
    term: Gauge,
    role: Family<RoleLabels, Gauge>,
    leader_id: Gauge,
    last_log_index: Gauge,
    committed_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    apply_lag: Gauge,
    gossip_members: Family<LivenessLabels, Gauge>,
    cluster_version: Gauge,
    deploys: Family<OutcomeLabels, Gauge>,
    plugin_state: Gauge,
}

struct Inner {
    registry: Registry,
    recorded: Recorded,
    grpc_duration: Histograms<MethodLabels>,
    plugin_duration: Histograms<ExportLabels>,
    fsync_duration: Histogram,
    group_jobs: Histogram,
    read_wait: Histograms<OutcomeLabels>,
    sampled: Sampled,
    process: process::ProcessMetrics,
    /// Queries answered, for the status page's read rate.
    queries: AtomicU64,
    /// Encoding reads every family; one scrape at a time keeps two
    /// scrapes from interleaving their gauge updates.
    scrape: Mutex<()>,
}

/// The node's metrics. Cloning shares them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, every family registered under `clusterhost_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("clusterhost");
        let recorded = Recorded::default();
        let sampled = Sampled::default();
        let grpc_duration: Histograms<MethodLabels> =
            Family::new_with_constructor(latency_histogram);
        let plugin_duration: Histograms<ExportLabels> =
            Family::new_with_constructor(latency_histogram);
        let fsync_duration = latency_histogram();
        let group_jobs = group_histogram();
        let read_wait: Histograms<OutcomeLabels> = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "linearizable_read_wait",
            "Time a linearizable read waited for its read index and to apply up to it",
            Unit::Seconds,
            read_wait.clone(),
        );
        register_recorded(&mut registry, &recorded);
        register_sampled(&mut registry, &sampled);
        registry.register_with_unit(
            "grpc_request_duration",
            "Time to answer a gRPC request, until its response headers",
            Unit::Seconds,
            grpc_duration.clone(),
        );
        registry.register_with_unit(
            "plugin_call_duration",
            "Time one plugin call took, per export",
            Unit::Seconds,
            plugin_duration.clone(),
        );
        registry.register_with_unit(
            "log_fsync_duration",
            "Time one log transaction took to commit and fsync",
            Unit::Seconds,
            fsync_duration.clone(),
        );
        registry.register(
            "log_group_commit_jobs",
            "Log changes one fsync made durable together",
            group_jobs.clone(),
        );
        let process = process::ProcessMetrics::register(&mut registry);
        Self(Arc::new(Inner {
            registry,
            recorded,
            grpc_duration,
            plugin_duration,
            fsync_duration,
            group_jobs,
            read_wait,
            sampled,
            process,
            queries: AtomicU64::new(0),
            scrape: Mutex::new(()),
        }))
    }

    /// The leader this node follows changed to a known node.
    pub fn leader_changed(&self) {
        self.0.recorded.leader_changes.inc();
    }

    /// A proposal on this node ended with `outcome`.
    pub fn proposal(&self, outcome: ProposalOutcome) {
        self.0
            .recorded
            .proposals
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// A gRPC request for `method` was answered with `code` after
    /// `elapsed`; `forwarded`: another node sent it on.
    pub fn grpc_request(&self, method: &str, code: &str, elapsed: Duration, forwarded: bool) {
        let recorded = &self.0.recorded;
        let labels = MethodCodeLabels {
            method: method.to_string(),
            code: code.to_string(),
        };
        recorded.grpc_requests.get_or_create(&labels).inc();
        let method = MethodLabels {
            method: labels.method,
        };
        if forwarded {
            recorded.grpc_forwarded.get_or_create(&method).inc();
        }
        if method.method.ends_with("/Query") {
            self.0.queries.fetch_add(1, Ordering::Relaxed);
        }
        self.0
            .grpc_duration
            .get_or_create(&method)
            .observe(elapsed.as_secs_f64());
    }

    /// Queries this node answered so far.
    pub fn queries_answered(&self) -> u64 {
        self.0.queries.load(Ordering::Relaxed)
    }

    /// A call of the plugin's `export` ended with `outcome` after `elapsed`.
    pub fn plugin_call(&self, export: &'static str, outcome: CallOutcome, elapsed: Duration) {
        self.0
            .recorded
            .plugin_calls
            .get_or_create(&ExportOutcomeLabels {
                export,
                outcome: outcome.label(),
            })
            .inc();
        self.0
            .plugin_duration
            .get_or_create(&ExportLabels { export })
            .observe(elapsed.as_secs_f64());
    }

    /// A linearizable read waited `elapsed` before it could be served
    /// (`ok`) or was refused.
    pub fn read_wait(&self, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "unavailable" };
        self.0
            .read_wait
            .get_or_create(&OutcomeLabels { outcome })
            .observe(elapsed.as_secs_f64());
    }

    /// A Raft RPC (`call`, e.g. `APPEND_ENTRIES` or `INSTALL_SNAPSHOT`) to
    /// `peer` ended: `ok`, or failed in transport.
    pub fn raft_rpc(&self, peer: u64, call: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "unreachable" };
        self.0
            .recorded
            .raft_rpcs
            .get_or_create(&PeerCallLabels {
                peer,
                call,
                outcome,
            })
            .inc();
    }

    /// `entries` log entries went to `peer` in an AppendEntries.
    pub fn raft_entries_sent(&self, peer: u64, entries: usize) {
        self.0
            .recorded
            .raft_entries_sent
            .get_or_create(&PeerLabels { peer })
            .inc_by(entries as u64);
    }

    /// The membership autopilot made a change: `action` ended `outcome`.
    pub fn autopilot_action(&self, action: &'static str, outcome: &'static str) {
        self.0
            .recorded
            .autopilot_actions
            .get_or_create(&ActionLabels { action, outcome })
            .inc();
    }

    /// The log writer committed `jobs` changes in one fsynced transaction
    /// taking `elapsed`.
    pub fn log_commit(&self, jobs: usize, elapsed: Duration) {
        self.0.recorded.log_fsyncs.inc();
        self.0.fsync_duration.observe(elapsed.as_secs_f64());
        self.0.group_jobs.observe(jobs as f64);
    }

    /// Every metric in the OpenMetrics text format, with the sampled ones
    /// set from `sample` (see [`CONTENT_TYPE`]).
    pub fn encode(&self, sample: &Sample) -> Result<String, std::fmt::Error> {
        let _one_scrape = self.0.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.set_sampled(sample);
        self.0.process.refresh();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.0.registry)?;
        Ok(text)
    }

    fn set_sampled(&self, sample: &Sample) {
        let sampled = &self.0.sampled;
        sampled.term.set(gauge_value(sample.term));
        for role in ROLES {
            let value = i64::from(role == sample.role);
            sampled.role.get_or_create(&RoleLabels { role }).set(value);
        }
        sampled.leader_id.set(sample.leader.map_or(0, gauge_value));
        sampled
            .last_log_index
            .set(gauge_value(sample.last_log_index));
        sampled
            .committed_index
            .set(gauge_value(sample.committed_index));
        sampled.applied_index.set(gauge_value(sample.applied_index));
        sampled
            .snapshot_index
            .set(gauge_value(sample.snapshot_index));
        sampled.apply_lag.set(gauge_value(apply_lag(sample)));
        for (liveness, count) in [("alive", sample.gossip_alive), ("dead", sample.gossip_dead)] {
            sampled
                .gossip_members
                .get_or_create(&LivenessLabels { liveness })
                .set(gauge_value(count));
        }
        sampled
            .cluster_version
            .set(gauge_value(sample.cluster_version));
        sampled
            .plugin_state
            .set(gauge_value(sample.plugin_state_bytes));
        for (outcome, count) in [
            ("ok", sample.cluster_version),
            ("failed", sample.deploys_failed),
        ] {
            sampled
                .deploys
                .get_or_create(&OutcomeLabels { outcome })
                .set(gauge_value(count));
        }
    }
}

/// Entries committed but not yet applied here.
pub fn apply_lag(sample: &Sample) -> u64 {
    sample.committed_index.saturating_sub(sample.applied_index)
}

/// Gauges are i64; indexes never come near its end, but clamp rather
/// than wrap if one ever did.
fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn register_recorded(registry: &mut Registry, recorded: &Recorded) {
    registry.register(
        "raft_leader_changes",
        "Times the leader this node follows changed to a known node",
        recorded.leader_changes.clone(),
    );
    registry.register(
        "raft_proposals",
        "Entries proposed on this node, by outcome",
        recorded.proposals.clone(),
    );
    registry.register(
        "grpc_requests",
        "gRPC requests answered, by method and status code",
        recorded.grpc_requests.clone(),
    );
    registry.register(
        "grpc_forwarded_requests",
        "gRPC requests another node forwarded here (to the leader)",
        recorded.grpc_forwarded.clone(),
    );
    registry.register(
        "plugin_calls",
        "Plugin calls, by export and outcome",
        recorded.plugin_calls.clone(),
    );
    registry.register(
        "log_fsyncs",
        "Log transactions committed with an fsync",
        recorded.log_fsyncs.clone(),
    );
    registry.register(
        "raft_peer_rpcs",
        "Raft RPCs this node sent, by peer, call and outcome",
        recorded.raft_rpcs.clone(),
    );
    registry.register(
        "raft_peer_entries_sent",
        "Log entries this node sent in AppendEntries, by peer",
        recorded.raft_entries_sent.clone(),
    );
    registry.register(
        "autopilot_actions",
        "Membership changes the autopilot made, by action and outcome",
        recorded.autopilot_actions.clone(),
    );
}

fn register_sampled(registry: &mut Registry, sampled: &Sampled) {
    let gauges: [(&str, &str, &Gauge); 7] = [
        ("raft_term", "The current Raft term", &sampled.term),
        (
            "raft_leader_id",
            "The id of the leader this node knows (0: none)",
            &sampled.leader_id,
        ),
        (
            "raft_last_log_index",
            "Index of the last entry in this node's log",
            &sampled.last_log_index,
        ),
        (
            "raft_committed_index",
            "Highest index this node knows committed",
            &sampled.committed_index,
        ),
        (
            "raft_applied_index",
            "Highest index applied to this node's state machine",
            &sampled.applied_index,
        ),
        (
            "raft_snapshot_index",
            "Index the newest snapshot includes",
            &sampled.snapshot_index,
        ),
        (
            "plugin_cluster_version",
            "Successful plugin deploys (the cluster version)",
            &sampled.cluster_version,
        ),
    ];
    for (name, help, gauge) in gauges {
        registry.register(name, help, gauge.clone());
    }
    registry.register_with_unit(
        "raft_apply_lag",
        "Entries committed but not yet applied here",
        Unit::Other("entries".to_string()),
        sampled.apply_lag.clone(),
    );
    registry.register(
        "raft_role",
        "1 for this node's Raft role, 0 for the others",
        sampled.role.clone(),
    );
    registry.register(
        "gossip_members",
        "Cluster members gossip sees, by liveness",
        sampled.gossip_members.clone(),
    );
    registry.register_with_unit(
        "plugin_state",
        "Size of the plugin's state as last snapshotted (0: not known yet)",
        Unit::Bytes,
        sampled.plugin_state.clone(),
    );
    registry.register(
        "plugin_deploys",
        "Plugin deploys the replicated history holds, by outcome",
        sampled.deploys.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_and_sampled_values_are_encoded_with_the_prefix_and_units() {
        let metrics = Metrics::new();
        metrics.proposal(ProposalOutcome::Ok);
        metrics.proposal(ProposalOutcome::Ok);
        metrics.grpc_request(
            "/clusterhost.v1.Cluster/Apply",
            "Ok",
            Duration::from_millis(3),
            true,
        );
        metrics.log_commit(4, Duration::from_micros(700));
        let text = metrics
            .encode(&Sample {
                role: "leader",
                committed_index: 10,
                applied_index: 7,
                ..Sample::default()
            })
            .expect("encode");
        for line in [
            "clusterhost_raft_proposals_total{outcome=\"ok\"} 2",
            "clusterhost_raft_role{role=\"leader\"} 1",
            "clusterhost_raft_role{role=\"follower\"} 0",
            "clusterhost_raft_apply_lag_entries 3",
            "clusterhost_log_fsyncs_total 1",
            "clusterhost_grpc_forwarded_requests_total{method=\"/clusterhost.v1.Cluster/Apply\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(text.contains("clusterhost_grpc_request_duration_seconds_bucket"));
        assert!(text.contains("clusterhost_process_resident_memory_bytes"));
    }

    #[test]
    fn apply_lag_never_goes_negative() {
        let sample = Sample {
            committed_index: 3,
            applied_index: 5,
            ..Sample::default()
        };
        assert_eq!(apply_lag(&sample), 0);
    }
}
