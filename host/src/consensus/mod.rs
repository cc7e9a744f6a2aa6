//! Consensus: openraft behind our own seam.
//!
//! - [`types`]: the type configuration and aliases every other module uses.
//! - [`state_machine`]: entries to the plugin; snapshots.
//! - [`snapshot`]: what a snapshot carries.
//! - [`network`]: outgoing Raft RPCs over gRPC.
//!
//! The log store lives in [`crate::storage::log_store`].

pub mod network;
pub mod plugin_history;
pub mod snapshot;
pub mod state_machine;
pub mod types;

use std::sync::Arc;

use crate::limits::{
    RAFT_APPEND_ENTRIES_MAX, RAFT_ELECTION_TIMEOUT_MAX_MS, RAFT_ELECTION_TIMEOUT_MIN_MS,
    RAFT_HEARTBEAT_INTERVAL_MS, RAFT_INSTALL_SNAPSHOT_TIMEOUT_MS,
};

/// A copy of the node's current Raft metrics.
pub fn current_metrics(raft: &types::Raft) -> openraft::RaftMetrics<types::TypeConfig> {
    use openraft::async_runtime::WatchReceiver;
    raft.metrics().borrow_watched().clone()
}

/// The openraft configuration every node runs with.
pub fn raft_config(
    snapshot_every_entries: u64,
    log_entries_kept: u64,
) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
    let config = openraft::Config {
        cluster_name: "clusterhost".to_string(),
        heartbeat_interval: RAFT_HEARTBEAT_INTERVAL_MS,
        election_timeout_min: RAFT_ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: RAFT_ELECTION_TIMEOUT_MAX_MS,
        max_payload_entries: RAFT_APPEND_ENTRIES_MAX,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every_entries),
        max_in_snapshot_log_to_keep: log_entries_kept,
        enable_pre_vote: Some(true),
        install_snapshot_timeout: RAFT_INSTALL_SNAPSHOT_TIMEOUT_MS,
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}
