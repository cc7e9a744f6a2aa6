//! How results are printed: plugin responses, the status table, and the
//! stable status JSON.

use clusterhost_client::proto;

/// Render plugin response bytes: pretty JSON when they are JSON, text when
/// they are UTF-8, hex otherwise.
pub fn render_response(bytes: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        return serde_json::to_string_pretty(&value)
            .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned());
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => format!("0x{}", hex::encode(bytes)),
    }
}

/// The stable JSON form of `clusterhost status --json`. Field names and
/// meanings are a public interface: add fields, never rename or remove.
#[derive(Debug, serde::Serialize)]
pub struct StatusJson {
    /// This node's id.
    pub node_id: u64,
    /// gRPC address of this node.
    pub rpc_addr: String,
    /// leader, follower, candidate, learner or shutdown.
    pub role: String,
    /// Current Raft term.
    pub term: u64,
    /// Current leader's id, if known.
    pub leader_id: Option<u64>,
    /// Current leader's gRPC address, if known.
    pub leader_addr: Option<String>,
    /// Index of the last entry in this node's log.
    pub last_log_index: u64,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied to the plugin.
    pub applied_index: u64,
    /// Entries between commit and apply on this node.
    pub apply_lag: u64,
    /// Index the newest snapshot includes.
    pub snapshot_index: Option<u64>,
    /// Size of the newest snapshot file.
    pub snapshot_size_bytes: u64,
    /// Entries up to this index have been purged from the log.
    pub purged_index: u64,
    /// The running plugin.
    pub plugin: PluginJson,
    /// Raft members.
    pub members: Vec<MemberJson>,
    /// clusterhost version of this node.
    pub version: String,
    /// "ok", or why the cluster cannot take writes as this node sees it.
    pub health: String,
    /// Running hash of everything applied (hex): equal on replicas that
    /// applied the same entries up to `applied_digest_index`.
    pub applied_digest: String,
    /// The index `applied_digest` covers.
    pub applied_digest_index: u64,
    /// Set when this replica differs from the majority: the first
    /// checkpoint index where it does. It serves nothing until repaired.
    pub corrupt_since: Option<u64>,
    /// Client sessions open.
    pub sessions_open: u64,
    /// A membership change is not finished (a joint configuration, or one
    /// not committed yet).
    pub membership_changing: bool,
}

/// The running plugin, in status JSON.
#[derive(Debug, serde::Serialize)]
pub struct PluginJson {
    /// Cluster version: successful deploys so far.
    pub version: u64,
    /// sha256 hex, or null before the first deploy.
    pub digest: Option<String>,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// A member, in status JSON.
#[derive(Debug, serde::Serialize)]
pub struct MemberJson {
    /// Node id.
    pub id: u64,
    /// gRPC address.
    pub rpc_addr: String,
    /// voter or learner.
    pub suffrage: String,
}

impl From<proto::StatusResponse> for StatusJson {
    fn from(status: proto::StatusResponse) -> Self {
        Self {
            node_id: status.node_id,
            rpc_addr: status.rpc_addr,
            role: status.role,
            term: status.term,
            leader_id: status.leader_id,
            leader_addr: Some(status.leader_addr).filter(|addr| !addr.is_empty()),
            last_log_index: status.last_log_index,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            apply_lag: status.commit_index.saturating_sub(status.applied_index),
            snapshot_index: status.snapshot_index,
            snapshot_size_bytes: status.snapshot_size_bytes,
            purged_index: status.purged_index,
            plugin: PluginJson {
                version: status.cluster_version,
                digest: Some(status.plugin_digest).filter(|digest| !digest.is_empty()),
                size_bytes: status.plugin_size_bytes,
            },
            members: status
                .members
                .into_iter()
                .map(|member| MemberJson {
                    id: member.id,
                    rpc_addr: member.rpc_addr,
                    suffrage: member.suffrage,
                })
                .collect(),
            version: status.version,
            health: status.health,
            applied_digest: status.applied_digest,
            applied_digest_index: status.applied_digest_index,
            corrupt_since: status.corrupt_since,
            sessions_open: status.sessions_open,
            membership_changing: status.membership_changing,
        }
    }
}

/// A readable status table.
pub fn render_status(status: &StatusJson) -> String {
    let optional =
        |value: Option<u64>| value.map_or_else(|| "-".to_string(), |value| value.to_string());
    let mut lines = vec![
        format!("node        {} ({})", status.node_id, status.rpc_addr),
        format!("role        {} (term {})", status.role, status.term),
        format!("health      {}", status.health),
        format!(
            "leader      {}",
            match (&status.leader_id, &status.leader_addr) {
                (Some(id), Some(addr)) => format!("{id} ({addr})"),
                (Some(id), None) => id.to_string(),
                _ => "none".to_string(),
            }
        ),
        format!(
            "log         last {}  commit {}  applied {}  purged {}",
            status.last_log_index, status.commit_index, status.applied_index, status.purged_index
        ),
        format!(
            "snapshot    index {}  {} bytes",
            optional(status.snapshot_index),
            status.snapshot_size_bytes
        ),
        format!(
            "plugin      v{} {}  {} bytes",
            status.plugin.version,
            status.plugin.digest.as_deref().unwrap_or("none"),
            status.plugin.size_bytes
        ),
        format!("sessions    {} open", status.sessions_open),
        if status.membership_changing {
            "members     (a membership change is in progress)".to_string()
        } else {
            "members".to_string()
        },
    ];
    lines.push(format!("  {:<20} {:<8} {}", "ID", "SUFFRAGE", "ADDRESS"));
    for member in &status.members {
        lines.push(format!(
            "  {:<20} {:<8} {}",
            member.id, member.suffrage, member.rpc_addr
        ));
    }
    lines.join("\n")
}

/// The stable JSON form of `clusterhost plugin list --json`.
#[derive(Debug, serde::Serialize)]
pub struct HistoryJson {
    /// Successful deploys so far.
    pub cluster_version: u64,
    /// Every deploy attempt, oldest first.
    pub deploys: Vec<DeployJson>,
}

/// One deploy attempt.
#[derive(Debug, serde::Serialize)]
pub struct DeployJson {
    /// Cluster version it became; null when it failed.
    pub version: Option<u64>,
    /// sha256, hex.
    pub digest: String,
    /// Plugin size.
    pub size_bytes: u64,
    /// Log index of the switch.
    pub index: u64,
    /// Leader time, ms since the epoch.
    pub time_ms: u64,
    /// "ok", or "failed: reason".
    pub outcome: String,
}

impl From<proto::PluginHistoryResponse> for HistoryJson {
    fn from(history: proto::PluginHistoryResponse) -> Self {
        Self {
            cluster_version: history.cluster_version,
            deploys: history
                .records
                .into_iter()
                .map(|record| DeployJson {
                    version: record.version,
                    digest: record.digest,
                    size_bytes: record.size_bytes,
                    index: record.index,
                    time_ms: record.time_ms,
                    outcome: if record.failure.is_empty() {
                        "ok".to_string()
                    } else {
                        format!("failed: {}", record.failure)
                    },
                })
                .collect(),
        }
    }
}

/// A readable deploy history.
pub fn render_history(history: &HistoryJson) -> String {
    let mut lines = vec![
        format!("cluster version {}", history.cluster_version),
        format!(
            "{:<8} {:<14} {:>9} {:>8} {:<24} {}",
            "VERSION", "DIGEST", "BYTES", "INDEX", "TIME (ms)", "OUTCOME"
        ),
    ];
    for deploy in &history.deploys {
        lines.push(format!(
            "{:<8} {:<14} {:>9} {:>8} {:<24} {}",
            deploy
                .version
                .map_or_else(|| "-".to_string(), |version| version.to_string()),
            deploy.digest.chars().take(12).collect::<String>(),
            deploy.size_bytes,
            deploy.index,
            deploy.time_ms,
            deploy.outcome
        ));
    }
    lines.join("\n")
}

/// The stable JSON form of `clusterhost members --json`.
#[derive(Debug, serde::Serialize)]
pub struct MembersJson {
    /// Every node known.
    pub members: Vec<MemberInfoJson>,
    /// Membership changes the leader holds back, and why.
    pub holding: Vec<String>,
}

/// One node in `members --json`.
#[derive(Debug, serde::Serialize)]
pub struct MemberInfoJson {
    /// Node id.
    pub id: u64,
    /// gRPC address.
    pub rpc_addr: String,
    /// Gossip address.
    pub gossip_addr: String,
    /// leader, follower, learner, or none (gossip only).
    pub raft_role: String,
    /// alive, dead or unknown.
    pub liveness: String,
    /// ms since the leader last heard from it (leader's view only).
    pub last_contact_ms: Option<u64>,
    /// Highest applied index it reported.
    pub applied_index: u64,
    /// Digest of the plugin it runs.
    pub plugin_digest: String,
    /// Asked to leave.
    pub leaving: bool,
    /// Set when it differs from the majority: the first index where it does.
    pub corrupt_since: Option<u64>,
}

impl From<proto::MembersResponse> for MembersJson {
    fn from(response: proto::MembersResponse) -> Self {
        Self {
            members: response
                .members
                .into_iter()
                .map(|member| MemberInfoJson {
                    id: member.id,
                    rpc_addr: member.rpc_addr,
                    gossip_addr: member.gossip_addr,
                    raft_role: member.raft_role,
                    liveness: member.liveness,
                    last_contact_ms: member.last_contact_ms,
                    applied_index: member.applied_index,
                    plugin_digest: member.plugin_digest,
                    leaving: member.leaving,
                    corrupt_since: member.corrupt_since,
                })
                .collect(),
            holding: response.holding,
        }
    }
}

/// A readable members table.
pub fn render_members(response: &proto::MembersResponse) -> String {
    let mut lines = vec![format!(
        "{:<18} {:<9} {:<8} {:<22} {:<22} {:>9} {:>8}  {}",
        "ID", "ROLE", "GOSSIP", "RPC", "GOSSIP ADDR", "APPLIED", "CONTACT", "PLUGIN"
    )];
    for member in &response.members {
        let contact = member
            .last_contact_ms
            .map_or_else(|| "-".to_string(), |millis| format!("{millis}ms"));
        let digest: String = member.plugin_digest.chars().take(12).collect();
        lines.push(format!(
            "{:<18} {:<9} {:<8} {:<22} {:<22} {:>9} {:>8}  {}{}",
            member.id,
            member.raft_role,
            member.liveness,
            member.rpc_addr,
            member.gossip_addr,
            member.applied_index,
            contact,
            if digest.is_empty() { "-" } else { &digest },
            if member.leaving { "  (leaving)" } else { "" }
        ));
        if let Some(index) = member.corrupt_since {
            lines.push(format!(
                "  ^ CORRUPT since index {index}: repair it (wipe its data dir, restart)"
            ));
        }
    }
    for holding in &response.holding {
        lines.push(format!("note: {holding}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_responses_are_pretty_printed() {
        assert_eq!(
            render_response(br#"{"prev":null}"#),
            "{\n  \"prev\": null\n}"
        );
        assert_eq!(render_response(b"plain text"), "plain text");
        assert_eq!(render_response(&[0xff, 0x00]), "0xff00");
    }
}
