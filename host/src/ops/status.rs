//! What the status page shows, as JSON (`GET /status.json`): the members,
//! leader, term and indexes, health and readiness, the plugin history, and
//! write and read rates over the last minutes. Building it is pure; the
//! rate history is filled by a sampling task (`super::spawn_sampler`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use clusterhost_client::proto;
use serde_json::{Value, json};

use crate::consensus::plugin_history::PluginHistory;
use crate::limits::STATUS_SAMPLES_KEPT;
use crate::metrics::{RequestCount, RequestCounts};

/// Counters at one moment, for rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatePoint {
    /// When, ms since the epoch.
    pub time_ms: u64,
    /// This node's applied index: every write the cluster committed.
    pub applied_index: u64,
    /// Client writes and queries this node answered so far, with their
    /// total time.
    pub requests: RequestCounts,
}

/// The last [`STATUS_SAMPLES_KEPT`] points. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct RateHistory(Arc<Mutex<VecDeque<RatePoint>>>);

impl RateHistory {
    /// Add a point, dropping the oldest beyond the bound.
    pub fn push(&self, point: RatePoint) {
        let mut points = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if points.len() == STATUS_SAMPLES_KEPT {
            points.pop_front();
        }
        points.push_back(point);
    }

    /// The points, oldest first.
    pub fn points(&self) -> Vec<RatePoint> {
        let points = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        points.iter().copied().collect()
    }
}

/// Writes and reads per second between consecutive points, at the later
/// point's time, and the mean latency of the writes and queries this node
/// answered in between (null when it answered none). A counter that went
/// backwards (a restored snapshot never does that to the applied index,
/// but be safe) counts as 0.
pub fn rates(points: &[RatePoint]) -> Vec<Value> {
    points
        .windows(2)
        .filter_map(|pair| {
            let (before, after) = (pair[0], pair[1]);
            let elapsed_ms = after.time_ms.checked_sub(before.time_ms)?;
            if elapsed_ms == 0 {
                return None;
            }
            let per_second = |delta: u64| delta as f64 * 1000.0 / elapsed_ms as f64;
            Some(json!({
                "time_ms": after.time_ms,
                "writes_per_second": per_second(after.applied_index.saturating_sub(before.applied_index)),
                "reads_per_second": per_second(after.requests.reads.count.saturating_sub(before.requests.reads.count)),
                "write_latency_ms": mean_latency_ms(before.requests.writes, after.requests.writes),
                "read_latency_ms": mean_latency_ms(before.requests.reads, after.requests.reads),
            }))
        })
        .collect()
}

/// The mean time of the requests answered between two counts, in ms.
fn mean_latency_ms(before: RequestCount, after: RequestCount) -> Option<f64> {
    let count = after
        .count
        .checked_sub(before.count)
        .filter(|count| *count > 0)?;
    let micros = after.micros.saturating_sub(before.micros);
    Some(micros as f64 / count as f64 / 1000.0)
}

/// The page's JSON.
pub struct StatusInput<'a> {
    /// This node's status report.
    pub status: &'a proto::StatusResponse,
    /// Every member this node knows of.
    pub members: &'a proto::MembersResponse,
    /// The deploy history.
    pub history: &'a PluginHistory,
    /// healthz and readyz verdicts.
    pub healthy: &'a Result<String, String>,
    /// readyz's verdict.
    pub ready: &'a Result<String, String>,
    /// Rate points, oldest first.
    pub points: &'a [RatePoint],
}

/// The JSON the status page renders.
pub fn status_json(input: &StatusInput<'_>) -> Value {
    let status = input.status;
    let members: Vec<Value> = input
        .members
        .members
        .iter()
        .map(|member| {
            json!({
                "id": member.id,
                "rpc_addr": member.rpc_addr,
                "gossip_addr": member.gossip_addr,
                "role": member.raft_role,
                "liveness": member.liveness,
                "applied_index": member.applied_index,
                "plugin_digest": member.plugin_digest,
                "leaving": member.leaving,
            })
        })
        .collect();
    let history: Vec<Value> = input
        .history
        .records
        .iter()
        .map(|record| {
            json!({
                "version": record.version,
                "digest": record.digest,
                "size_bytes": record.size_bytes,
                "index": record.index,
                "time_ms": record.time_ms,
                "failure": record.failure,
            })
        })
        .collect();
    let verdict = |verdict: &Result<String, String>| match verdict {
        Ok(why) => json!({"ok": true, "detail": why}),
        Err(why) => json!({"ok": false, "detail": why}),
    };
    json!({
        "node_id": status.node_id,
        "rpc_addr": status.rpc_addr,
        "role": status.role,
        "term": status.term,
        "leader_id": status.leader_id,
        "leader_addr": status.leader_addr,
        "last_log_index": status.last_log_index,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "snapshot_index": status.snapshot_index,
        "cluster_version": status.cluster_version,
        "plugin_digest": status.plugin_digest,
        "cluster_health": status.health,
        "healthy": verdict(input.healthy),
        "ready": verdict(input.ready),
        "members": members,
        "holding": input.members.holding,
        "plugin_history": history,
        "rates": rates(input.points),
        "version": status.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(time_ms: u64, applied_index: u64, queries: u64) -> RatePoint {
        RatePoint {
            time_ms,
            applied_index,
            requests: RequestCounts {
                writes: RequestCount::default(),
                reads: RequestCount {
                    count: queries,
                    micros: queries * 500,
                },
            },
        }
    }

    #[test]
    fn rates_are_per_second_between_consecutive_points() {
        let rates = rates(&[
            point(0, 10, 0),
            point(2_000, 110, 40),
            point(2_000, 120, 40),
        ]);
        assert_eq!(rates.len(), 1, "a zero interval is skipped");
        assert_eq!(rates[0]["writes_per_second"], 50.0);
        assert_eq!(rates[0]["reads_per_second"], 20.0);
        assert_eq!(rates[0]["time_ms"], 2_000);
        assert_eq!(rates[0]["read_latency_ms"], 0.5);
        assert_eq!(
            rates[0]["write_latency_ms"],
            Value::Null,
            "no writes answered here: no latency, not zero"
        );
    }

    #[test]
    fn the_history_keeps_only_the_newest_points() {
        let history = RateHistory::default();
        for n in 0..(STATUS_SAMPLES_KEPT as u64 + 5) {
            history.push(point(n, n, n));
        }
        let points = history.points();
        assert_eq!(points.len(), STATUS_SAMPLES_KEPT);
        assert_eq!(points[0].time_ms, 5);
    }

    #[test]
    fn the_json_names_members_leader_and_verdicts() {
        let status = proto::StatusResponse {
            node_id: 1,
            leader_id: Some(2),
            role: "follower".to_string(),
            ..Default::default()
        };
        let members = proto::MembersResponse {
            members: vec![proto::MemberInfo {
                id: 2,
                raft_role: "leader".to_string(),
                ..Default::default()
            }],
            holding: Vec::new(),
        };
        let value = status_json(&StatusInput {
            status: &status,
            members: &members,
            history: &PluginHistory::default(),
            healthy: &Ok("fine".to_string()),
            ready: &Err("no leader known".to_string()),
            points: &[],
        });
        assert_eq!(value["leader_id"], 2);
        assert_eq!(value["members"][0]["role"], "leader");
        assert_eq!(value["ready"]["ok"], false);
        assert_eq!(value["healthy"]["detail"], "fine");
    }
}
