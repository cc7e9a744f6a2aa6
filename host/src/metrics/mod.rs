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

mod families;
mod labels;
pub mod process;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::registry::Registry;

use families::{Recorded, Sampled};
use labels::{
    ActionLabels, ExportLabels, ExportOutcomeLabels, InstanceLabels, LivenessLabels,
    MethodCodeLabels, MethodLabels, OutcomeLabels, PeerCallLabels, PeerCallOutcomeLabels,
    PeerLabels, ReasonLabels, RoleLabels,
};
pub use labels::{CallOutcome, ProposalOutcome, ROLES};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
    /// Gossip members outside Raft left out (beyond the cap, or silent
    /// too long).
    pub gossip_ignored: u64,
    /// Successful deploys (the cluster version).
    pub cluster_version: u64,
    /// Deploys the history records that failed.
    pub deploys_failed: u64,
    /// Bytes of the plugin's state as last snapshotted (0: unknown).
    pub plugin_state_bytes: u64,
    /// Client sessions open in the replicated state.
    pub sessions_open: u64,
    /// Replicas the divergence check holds corrupt.
    pub corrupt_replicas: u64,
    /// Whether the voters had no majority digest at a checkpoint.
    pub no_majority_digest: bool,
    /// Gossip datagrams dropped unread since start (no key opened them, or
    /// chitchat could not safely read them).
    pub gossip_datagrams_dropped: u64,
    /// Gossip datagrams not sent since start: too large once sealed.
    pub gossip_datagrams_oversized: u64,
    /// Plugin output bytes dropped since start past a call's cap.
    pub plugin_output_dropped_call_cap_bytes: u64,
    /// Plugin output bytes dropped since start past the node's rate.
    pub plugin_output_dropped_rate_bytes: u64,
}

struct Inner {
    registry: Registry,
    recorded: Recorded,
    sampled: Sampled,
    process: process::ProcessMetrics,
    /// Client writes and queries answered and their total time, for the
    /// status page's rates and latencies.
    writes: RequestTotals,
    reads: RequestTotals,
    /// Encoding reads every family; one scrape at a time keeps two
    /// scrapes from interleaving their gauge updates.
    scrape: Mutex<()>,
}

/// A request count and the total time those requests took.
#[derive(Debug, Default)]
struct RequestTotals {
    count: AtomicU64,
    micros: AtomicU64,
}

impl RequestTotals {
    fn add(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn read(&self) -> RequestCount {
        RequestCount {
            count: self.count.load(Ordering::Relaxed),
            micros: self.micros.load(Ordering::Relaxed),
        }
    }
}

/// Requests answered so far and the microseconds they took in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCount {
    /// Requests answered.
    pub count: u64,
    /// Their total time, µs.
    pub micros: u64,
}

/// Client writes (`Apply`, `ApplyInSession`) and queries this node answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Writes.
    pub writes: RequestCount,
    /// Queries.
    pub reads: RequestCount,
}

/// The node's metrics. Cloning shares them. A node records metrics only
/// when something can read them (`--metrics-listen`); otherwise every
/// recording call returns at once ([`Metrics::off`]).
#[derive(Clone)]
pub struct Metrics(Option<Arc<Inner>>);

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
        families::register(&mut registry, &recorded, &sampled);
        let process = process::ProcessMetrics::register(&mut registry);
        Self(Some(Arc::new(Inner {
            registry,
            recorded,
            sampled,
            process,
            writes: RequestTotals::default(),
            reads: RequestTotals::default(),
            scrape: Mutex::new(()),
        })))
    }

    /// Metrics that record nothing: for a node nobody scrapes.
    pub fn off() -> Self {
        Self(None)
    }

    /// Run `record` on the metrics, unless they are off.
    fn record(&self, record: impl FnOnce(&Inner)) {
        if let Some(inner) = self.0.as_deref() {
            record(inner);
        }
    }

    /// Whether anything is recorded.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The leader this node follows changed to a known node.
    pub fn leader_changed(&self) {
        self.record(|inner| {
            inner.recorded.leader_changes.inc();
        });
    }

    /// A proposal on this node ended with `outcome`.
    pub fn proposal(&self, outcome: ProposalOutcome) {
        self.record(|inner| {
            inner
                .recorded
                .proposals
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.label(),
                })
                .inc();
        });
    }

    /// A gRPC request for `method` was answered with `code` after
    /// `elapsed`; `forwarded`: another node sent it on.
    pub fn grpc_request(&self, method: &str, code: &str, elapsed: Duration, forwarded: bool) {
        self.record(|inner| {
            let recorded = &inner.recorded;
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
            let totals = match method.method.rsplit('/').next() {
                Some("Query") => Some(&inner.reads),
                Some("Apply" | "ApplyInSession") => Some(&inner.writes),
                _ => None,
            };
            if let Some(totals) = totals {
                totals.add(elapsed);
            }
            inner
                .recorded
                .grpc_duration
                .get_or_create(&method)
                .observe(elapsed.as_secs_f64());
        });
    }

    /// Client writes and queries this node answered so far, and how long
    /// they took in total (zero when metrics are off).
    pub fn request_totals(&self) -> RequestCounts {
        let Some(inner) = self.0.as_deref() else {
            return RequestCounts::default();
        };
        RequestCounts {
            writes: inner.writes.read(),
            reads: inner.reads.read(),
        }
    }

    /// A call of the plugin's `export` ended with `outcome` after `elapsed`.
    pub fn plugin_call(&self, export: &'static str, outcome: CallOutcome, elapsed: Duration) {
        self.record(|inner| {
            inner
                .recorded
                .plugin_calls
                .get_or_create(&ExportOutcomeLabels {
                    export,
                    outcome: outcome.label(),
                })
                .inc();
            inner
                .recorded
                .plugin_duration
                .get_or_create(&ExportLabels { export })
                .observe(elapsed.as_secs_f64());
        });
    }

    /// A call of the plugin's `export` burned `fuel` units.
    pub fn plugin_fuel(&self, export: &'static str, fuel: u64) {
        self.record(|inner| {
            inner
                .recorded
                .plugin_fuel
                .get_or_create(&ExportLabels { export })
                .inc_by(fuel);
        });
    }

    /// The plugin's `instance` (`applier` or `reader`) holds `bytes` of
    /// linear memory now (0: there is none).
    pub fn plugin_memory(&self, instance: &'static str, bytes: usize) {
        self.record(|inner| {
            inner
                .recorded
                .plugin_memory
                .get_or_create(&InstanceLabels { instance })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        });
    }

    /// The plugin's `instance` was rebuilt `count` more times from its
    /// base and journal.
    pub fn plugin_rebuilds(&self, instance: &'static str, count: u64) {
        self.record(|inner| {
            inner
                .recorded
                .plugin_rebuilds
                .get_or_create(&InstanceLabels { instance })
                .inc_by(count);
        });
    }

    /// A linearizable read waited `elapsed` before it could be served
    /// (`ok`) or was refused.
    pub fn read_wait(&self, ok: bool, elapsed: Duration) {
        self.record(|inner| {
            let outcome = if ok { "ok" } else { "unavailable" };
            inner
                .recorded
                .read_wait
                .get_or_create(&OutcomeLabels { outcome })
                .observe(elapsed.as_secs_f64());
        });
    }

    /// A Raft RPC (`call`, e.g. `APPEND_ENTRIES` or `INSTALL_SNAPSHOT`) to
    /// `peer` ended: `ok`, or failed in transport.
    pub fn raft_rpc(&self, peer: u64, call: &'static str, ok: bool) {
        self.record(|inner| {
            let outcome = if ok { "ok" } else { "unreachable" };
            inner
                .recorded
                .raft_rpcs
                .get_or_create(&PeerCallOutcomeLabels {
                    peer,
                    call,
                    outcome,
                })
                .inc();
        });
    }

    /// `entries` log entries went to `peer` in an AppendEntries.
    pub fn raft_entries_sent(&self, peer: u64, entries: usize) {
        self.record(|inner| {
            inner
                .recorded
                .raft_entries_sent
                .get_or_create(&PeerLabels { peer })
                .inc_by(entries as u64);
        });
    }

    /// `bytes` of an encoded Raft message (`call`, as in [`Metrics::raft_rpc`])
    /// went to `peer`: counted as sent whether or not it arrived.
    pub fn raft_sent_bytes(&self, peer: u64, call: &'static str, bytes: usize) {
        self.record(|inner| {
            inner
                .recorded
                .raft_sent_bytes
                .get_or_create(&PeerCallLabels { peer, call })
                .inc_by(bytes as u64);
        });
    }

    /// The membership autopilot made a change: `action` ended `outcome`.
    pub fn autopilot_action(&self, action: &'static str, outcome: &'static str) {
        self.record(|inner| {
            inner
                .recorded
                .autopilot_actions
                .get_or_create(&ActionLabels { action, outcome })
                .inc();
        });
    }

    /// The log writer committed `jobs` changes in one fsynced transaction
    /// taking `elapsed`.
    pub fn log_commit(&self, jobs: usize, elapsed: Duration) {
        self.record(|inner| {
            let recorded = &inner.recorded;
            recorded.log_fsyncs.inc();
            recorded.fsync_duration.observe(elapsed.as_secs_f64());
            recorded.group_jobs.observe(jobs as f64);
        });
    }

    /// Every metric in the OpenMetrics text format, with the sampled ones
    /// set from `sample` (see [`CONTENT_TYPE`]).
    pub fn encode(&self, sample: &Sample) -> Result<String, std::fmt::Error> {
        let Some(inner) = self.0.as_deref() else {
            return Ok(String::new());
        };
        let _one_scrape = inner.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        Self::set_sampled(inner, sample);
        inner.process.refresh();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &inner.registry)?;
        Ok(text)
    }

    fn set_sampled(inner: &Inner, sample: &Sample) {
        let sampled = &inner.sampled;
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
        for (liveness, count) in [
            ("alive", sample.gossip_alive),
            ("dead", sample.gossip_dead),
            ("ignored", sample.gossip_ignored),
        ] {
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
        sampled.sessions_open.set(gauge_value(sample.sessions_open));
        sampled
            .corrupt_replicas
            .set(gauge_value(sample.corrupt_replicas));
        sampled
            .no_majority_digest
            .set(i64::from(sample.no_majority_digest));
        advance(
            &sampled.gossip_datagrams_dropped,
            sample.gossip_datagrams_dropped,
        );
        advance(
            &sampled.gossip_datagrams_oversized,
            sample.gossip_datagrams_oversized,
        );
        for (reason, bytes) in [
            ("call_cap", sample.plugin_output_dropped_call_cap_bytes),
            ("rate", sample.plugin_output_dropped_rate_bytes),
        ] {
            advance(
                &sampled
                    .plugin_output_dropped
                    .get_or_create(&ReasonLabels { reason }),
                bytes,
            );
        }
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

/// Bring `counter` up to `total`, a count kept elsewhere since start
/// (scrapes are serialized, so nothing else moves it meanwhile); never
/// backwards.
fn advance(counter: &prometheus_client::metrics::counter::Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
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
        metrics.plugin_fuel("apply", 500);
        metrics.plugin_fuel("apply", 20);
        metrics.plugin_memory("applier", 65_536);
        metrics.plugin_rebuilds("reader", 1);
        metrics.raft_sent_bytes(2, "APPEND_ENTRIES", 300);
        let text = metrics
            .encode(&Sample {
                role: "leader",
                committed_index: 10,
                applied_index: 7,
                sessions_open: 2,
                corrupt_replicas: 1,
                gossip_ignored: 3,
                gossip_datagrams_dropped: 8,
                gossip_datagrams_oversized: 1,
                plugin_output_dropped_rate_bytes: 4096,
                ..Sample::default()
            })
            .expect("encode");
        for line in [
            "clusterhost_raft_proposals_total{outcome=\"ok\"} 2",
            "clusterhost_raft_role{role=\"leader\"} 1",
            "clusterhost_raft_role{role=\"follower\"} 0",
            "clusterhost_raft_apply_lag_entries 3",
            "clusterhost_client_sessions_open 2",
            "clusterhost_divergence_corrupt_replicas 1",
            "clusterhost_gossip_members{liveness=\"ignored\"} 3",
            "clusterhost_gossip_datagrams_dropped_total 8",
            "clusterhost_gossip_datagrams_oversized_total 1",
            "clusterhost_plugin_output_dropped_bytes_total{reason=\"rate\"} 4096",
            "clusterhost_plugin_output_dropped_bytes_total{reason=\"call_cap\"} 0",
            "clusterhost_divergence_no_majority 0",
            "clusterhost_log_fsyncs_total 1",
            "clusterhost_plugin_fuel_used_total{export=\"apply\"} 520",
            "clusterhost_plugin_memory_bytes{instance=\"applier\"} 65536",
            "clusterhost_plugin_replay_rebuilds_total{instance=\"reader\"} 1",
            "clusterhost_raft_peer_sent_bytes_total{peer=\"2\",call=\"APPEND_ENTRIES\"} 300",
            "clusterhost_grpc_forwarded_requests_total{method=\"/clusterhost.v1.Cluster/Apply\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(text.contains("clusterhost_grpc_request_duration_seconds_bucket"));
        assert!(text.contains("clusterhost_process_resident_memory_bytes"));
    }

    // Goal: counters kept elsewhere are reported at their totals however
    // often the node is scraped, and never go backwards.
    #[test]
    fn counters_sampled_at_scrape_time_follow_their_totals() {
        let metrics = Metrics::new();
        let scrape = |dropped| {
            metrics
                .encode(&Sample {
                    gossip_datagrams_dropped: dropped,
                    ..Sample::default()
                })
                .expect("encode")
        };
        for (total, shown) in [(3, 3), (3, 3), (10, 10), (4, 10)] {
            let line = format!("clusterhost_gossip_datagrams_dropped_total {shown}\n");
            assert!(scrape(total).contains(&line), "{total}: missing {line}");
        }
    }

    #[test]
    fn metrics_that_are_off_record_and_encode_nothing() {
        let metrics = Metrics::off();
        assert!(!metrics.is_on());
        metrics.proposal(ProposalOutcome::Ok);
        metrics.grpc_request(
            "/clusterhost.v1.Cluster/Query",
            "Ok",
            Duration::from_millis(1),
            false,
        );
        assert_eq!(metrics.request_totals(), RequestCounts::default());
        assert_eq!(metrics.encode(&Sample::default()).expect("encode"), "");
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
