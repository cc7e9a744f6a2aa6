//! The metric families a node keeps, and their registration under the
//! `clusterhost_` prefix with names, help and units.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::labels::{
    ActionLabels, ExportOutcomeLabels, LivenessLabels, MethodCodeLabels, MethodLabels,
    OutcomeLabels, PeerCallLabels, PeerLabels, RoleLabels,
};

pub(super) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 50 µs to ~3.3 s, doubling: an in-memory apply, an
/// fsync and a forwarded write all land inside.
pub(super) fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// Group sizes from 1 to 256 jobs, doubling.
pub(super) fn group_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 9))
}

/// What is recorded as it happens.
#[derive(Default)]
pub(super) struct Recorded {
    pub(super) leader_changes: Counter,
    pub(super) proposals: Family<OutcomeLabels, Counter>,
    pub(super) grpc_requests: Family<MethodCodeLabels, Counter>,
    pub(super) grpc_forwarded: Family<MethodLabels, Counter>,
    pub(super) plugin_calls: Family<ExportOutcomeLabels, Counter>,
    pub(super) log_fsyncs: Counter,
    pub(super) autopilot_actions: Family<ActionLabels, Counter>,
    pub(super) raft_rpcs: Family<PeerCallLabels, Counter>,
    pub(super) raft_entries_sent: Family<PeerLabels, Counter>,
}

/// What is set from a [`Sample`] at scrape time.
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
}

pub(super) fn register_recorded(registry: &mut Registry, recorded: &Recorded) {
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

pub(super) fn register_sampled(registry: &mut Registry, sampled: &Sampled) {
    let gauges: [(&str, &str, &Gauge); 10] = [
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
            "client_sessions_open",
            "Client sessions open in the replicated state",
            &sampled.sessions_open,
        ),
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
