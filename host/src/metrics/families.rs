//! The metric families a node keeps, and their registration under the
//! `clusterhost_` prefix with names, help and units, one function per
//! concern: Raft, the log writer, the API, the plugin, and membership
//! (gossip, autopilot, divergence). Process metrics live in
//! [`super::process`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::labels::{
    ActionLabels, ExportLabels, ExportOutcomeLabels, InstanceLabels, LivenessLabels,
    MethodCodeLabels, MethodLabels, OutcomeLabels, PeerCallLabels, PeerCallOutcomeLabels,
    PeerLabels, ReasonLabels, RoleLabels,
};

pub(super) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 50 µs to ~3.3 s, doubling: an in-memory apply, an
/// fsync and a forwarded write all land inside.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// Group sizes from 1 to 256 jobs, doubling.
fn group_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 9))
}

fn latency_histograms<L: Clone + Eq + std::hash::Hash>() -> Histograms<L> {
    Family::new_with_constructor(latency_histogram)
}

/// What is recorded as it happens.
pub(super) struct Recorded {
    // Raft.
    pub(super) leader_changes: Counter,
    pub(super) proposals: Family<OutcomeLabels, Counter>,
    pub(super) raft_rpcs: Family<PeerCallOutcomeLabels, Counter>,
    pub(super) raft_entries_sent: Family<PeerLabels, Counter>,
    pub(super) raft_sent_bytes: Family<PeerCallLabels, Counter>,
    // The log writer.
    pub(super) log_fsyncs: Counter,
    pub(super) fsync_duration: Histogram,
    pub(super) group_jobs: Histogram,
    // The API.
    pub(super) grpc_requests: Family<MethodCodeLabels, Counter>,
    pub(super) grpc_forwarded: Family<MethodLabels, Counter>,
    pub(super) grpc_duration: Histograms<MethodLabels>,
    pub(super) read_wait: Histograms<OutcomeLabels>,
    // The plugin.
    pub(super) plugin_calls: Family<ExportOutcomeLabels, Counter>,
    pub(super) plugin_duration: Histograms<ExportLabels>,
    pub(super) plugin_fuel: Family<ExportLabels, Counter>,
    pub(super) plugin_memory: Family<InstanceLabels, Gauge>,
    pub(super) plugin_rebuilds: Family<InstanceLabels, Counter>,
    // Membership.
    pub(super) autopilot_actions: Family<ActionLabels, Counter>,
}

impl Default for Recorded {
    fn default() -> Self {
        Self {
            leader_changes: Counter::default(),
            proposals: Family::default(),
            raft_rpcs: Family::default(),
            raft_entries_sent: Family::default(),
            raft_sent_bytes: Family::default(),
            log_fsyncs: Counter::default(),
            fsync_duration: latency_histogram(),
            group_jobs: group_histogram(),
            grpc_requests: Family::default(),
            grpc_forwarded: Family::default(),
            grpc_duration: latency_histograms(),
            read_wait: latency_histograms(),
            plugin_calls: Family::default(),
            plugin_duration: latency_histograms(),
            plugin_fuel: Family::default(),
            plugin_memory: Family::default(),
            plugin_rebuilds: Family::default(),
            autopilot_actions: Family::default(),
        }
    }
}

/// What is set from a [`super::Sample`] at scrape time.
#[derive(Default)]
pub(super) struct Sampled {
    pub(super) term: Gauge,
    pub(super) role: Family<RoleLabels, Gauge>,
    pub(super) leader_id: Gauge,
    pub(super) last_log_index: Gauge,
    pub(super) committed_index: Gauge,
    pub(super) applied_index: Gauge,
    pub(super) snapshot_index: Gauge,
    pub(super) apply_lag: Gauge,
    pub(super) gossip_members: Family<LivenessLabels, Gauge>,
    pub(super) cluster_version: Gauge,
    pub(super) deploys: Family<OutcomeLabels, Gauge>,
    pub(super) plugin_state: Gauge,
    pub(super) sessions_open: Gauge,
    pub(super) corrupt_replicas: Gauge,
    pub(super) no_majority_digest: Gauge,
    // Counters kept where they happen (the gossip transport, the plugin's
    // output gate), brought up to their totals at scrape time.
    pub(super) gossip_datagrams_dropped: Counter,
    pub(super) gossip_datagrams_oversized: Counter,
    pub(super) plugin_output_dropped: Family<ReasonLabels, Counter>,
}

/// Register every family (but the process's) in `registry`.
pub(super) fn register(registry: &mut Registry, recorded: &Recorded, sampled: &Sampled) {
    register_raft_state(registry, sampled);
    register_raft_traffic(registry, recorded);
    register_log_writer(registry, recorded);
    register_api(registry, recorded, sampled);
    register_plugin_calls(registry, recorded);
    register_plugin_state(registry, recorded, sampled);
    register_membership(registry, recorded, sampled);
}

/// Register plain gauges, each by name and help.
fn register_gauges(registry: &mut Registry, gauges: &[(&str, &str, &Gauge)]) {
    for (name, help, gauge) in gauges {
        registry.register(*name, *help, (*gauge).clone());
    }
}

/// Raft's view of this node: term, role, leader and log positions.
fn register_raft_state(registry: &mut Registry, sampled: &Sampled) {
    register_gauges(
        registry,
        &[
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
        ],
    );
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
}

/// What this node proposed and what it sent its peers.
fn register_raft_traffic(registry: &mut Registry, recorded: &Recorded) {
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
        "raft_peer_rpcs",
        "Raft RPCs this node sent, by peer, call and outcome",
        recorded.raft_rpcs.clone(),
    );
    registry.register(
        "raft_peer_entries_sent",
        "Log entries this node sent in AppendEntries, by peer",
        recorded.raft_entries_sent.clone(),
    );
    registry.register_with_unit(
        "raft_peer_sent",
        "Encoded Raft messages this node sent (AppendEntries, votes, snapshot chunks), by peer and call",
        Unit::Bytes,
        recorded.raft_sent_bytes.clone(),
    );
}

/// The log writer's transactions and their group commits.
fn register_log_writer(registry: &mut Registry, recorded: &Recorded) {
    registry.register(
        "log_fsyncs",
        "Log transactions committed with an fsync",
        recorded.log_fsyncs.clone(),
    );
    registry.register_with_unit(
        "log_fsync_duration",
        "Time one log transaction took to commit and fsync",
        Unit::Seconds,
        recorded.fsync_duration.clone(),
    );
    registry.register(
        "log_group_commit_jobs",
        "Log changes one fsync made durable together",
        recorded.group_jobs.clone(),
    );
}

/// Client requests: gRPC calls, forwarding, reads and sessions.
fn register_api(registry: &mut Registry, recorded: &Recorded, sampled: &Sampled) {
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
    registry.register_with_unit(
        "grpc_request_duration",
        "Time to answer a gRPC request, until its response headers",
        Unit::Seconds,
        recorded.grpc_duration.clone(),
    );
    registry.register_with_unit(
        "linearizable_read_wait",
        "Time a linearizable read waited for its read index and to apply up to it",
        Unit::Seconds,
        recorded.read_wait.clone(),
    );
    registry.register(
        "client_sessions_open",
        "Client sessions open in the replicated state",
        sampled.sessions_open.clone(),
    );
}

/// Calls into the plugin: count, time and fuel per export.
fn register_plugin_calls(registry: &mut Registry, recorded: &Recorded) {
    registry.register(
        "plugin_calls",
        "Plugin calls, by export and outcome",
        recorded.plugin_calls.clone(),
    );
    registry.register_with_unit(
        "plugin_call_duration",
        "Time one plugin call took, per export",
        Unit::Seconds,
        recorded.plugin_duration.clone(),
    );
    registry.register(
        "plugin_fuel_used",
        "Wasm fuel the plugin's calls burned, per export (replays not included)",
        recorded.plugin_fuel.clone(),
    );
}

/// The plugin's instances, state and deploys.
fn register_plugin_state(registry: &mut Registry, recorded: &Recorded, sampled: &Sampled) {
    registry.register_with_unit(
        "plugin_memory",
        "Linear memory of the plugin's instances (the applier, and the reader serving reads)",
        Unit::Bytes,
        recorded.plugin_memory.clone(),
    );
    registry.register(
        "plugin_replay_rebuilds",
        "Plugin instances rebuilt from base and journal replay, by instance",
        recorded.plugin_rebuilds.clone(),
    );
    registry.register_with_unit(
        "plugin_state",
        "Size of the plugin's state as last snapshotted (0: not known yet)",
        Unit::Bytes,
        sampled.plugin_state.clone(),
    );
    registry.register_with_unit(
        "plugin_output_dropped",
        "Plugin stdout/stderr not forwarded to the log, by reason (call_cap: past one call's bytes or writes; rate: past the node's rate)",
        Unit::Bytes,
        sampled.plugin_output_dropped.clone(),
    );
    registry.register(
        "plugin_cluster_version",
        "Successful plugin deploys (the cluster version)",
        sampled.cluster_version.clone(),
    );
    registry.register(
        "plugin_deploys",
        "Plugin deploys the replicated history holds, by outcome",
        sampled.deploys.clone(),
    );
}

/// Gossip, the autopilot and the divergence check.
fn register_membership(registry: &mut Registry, recorded: &Recorded, sampled: &Sampled) {
    registry.register(
        "gossip_members",
        "Cluster members gossip sees, by liveness",
        sampled.gossip_members.clone(),
    );
    registry.register(
        "gossip_datagrams_dropped",
        "Gossip datagrams received and dropped unread: no gossip key opened them, or chitchat could not safely read them",
        sampled.gossip_datagrams_dropped.clone(),
    );
    registry.register(
        "gossip_datagrams_oversized",
        "Gossip datagrams not sent: larger than one UDP datagram once sealed",
        sampled.gossip_datagrams_oversized.clone(),
    );
    registry.register(
        "autopilot_actions",
        "Membership changes the autopilot made, by action and outcome (refused_identity: gossip whose certificate check failed, ignored)",
        recorded.autopilot_actions.clone(),
    );
    register_gauges(
        registry,
        &[
            (
                "divergence_corrupt_replicas",
                "Replicas the divergence check holds corrupt (an alarm in the log)",
                &sampled.corrupt_replicas,
            ),
            (
                "divergence_no_majority",
                "1 when the voters had no majority applied digest at a checkpoint",
                &sampled.no_majority_digest,
            ),
        ],
    );
}
