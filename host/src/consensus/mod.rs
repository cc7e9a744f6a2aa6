//! Consensus: openraft behind our own seam. openraft is used nowhere else.
//!
//! - [`handle`]: [`Consensus`], what the rest of the node calls.
//! - [`view`]: [`ConsensusView`], Raft's state as plain data.
//! - [`types`]: the type configuration: entries, responses, members.
//! - [`log_store`]: the Raft log on the node's log database.
//! - [`state_machine`]: committed entries to the plugin; snapshots
//!   ([`snapshot_builder`] writes them); [`machine_status`] is what it
//!   publishes.
//! - [`swap`]: the plugin-switch decisions at a deploy entry (pure).
//! - [`host_state`]: the host's replicated state: [`plugin_history`] (the
//!   record of deploys), [`settings`] (what every replica must agree on),
//!   [`digest`] (a running hash of what was applied), [`alarms`],
//!   [`sessions`] (client sessions: exactly-once writes; pure).
//! - [`snapshot`]: what a snapshot carries, and its file.
//! - [`backup`]: backup files: a snapshot with a whole-file checksum, and
//!   reseeding one as a new single-node cluster (pure).
//! - [`transport`]: Raft messages between nodes over gRPC.

pub mod alarms;
pub mod backup;
pub mod digest;
pub mod handle;
pub mod host_state;
pub mod log_store;
pub mod machine_status;
pub mod plugin_history;
pub mod session_batch;
pub mod sessions;
pub mod settings;
pub mod snapshot;
pub mod snapshot_builder;
pub mod state_machine;
pub mod swap;
pub mod transport;
pub mod trusted_signers;
pub mod types;
pub mod view;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

use clusterhost_client::ClientTls;

pub use handle::{
    CommandAnswer, Consensus, DeployError, MembershipChange, ProposeError, Proposed,
    ReadIndexError, now_ms,
};
pub use log_store::LogStore;
pub use state_machine::{DurableStore, MachineStatus, StateMachineStore, StopCheckpoint};
pub use transport::AddressBook;
pub use types::{DeployReceipt, NodeId, Request, Response};
pub use view::{ConsensusView, Role, quorum_size};

use crate::limits::{
    RAFT_APPEND_ENTRIES_MAX, RAFT_ELECTION_TIMEOUT_MAX, RAFT_ELECTION_TIMEOUT_MIN,
    RAFT_HEARTBEAT_INTERVAL, RAFT_INSTALL_SNAPSHOT_TIMEOUT,
};

/// The openraft handle.
type Raft = openraft::Raft<types::TypeConfig, StateMachineStore>;

/// Per-node Raft settings.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// Entries between automatic snapshots.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot.
    pub log_entries_kept: u64,
    /// Where proposals are counted.
    pub metrics: crate::metrics::Metrics,
    /// The certificate this node presents to peers (mutual TLS); `None`:
    /// plaintext.
    pub tls: Option<Arc<ClientTls>>,
}

/// Start Raft on `log` and `machine`, reaching peers at the addresses in
/// `addresses` first.
pub async fn start(
    config: &ConsensusConfig,
    log: LogStore,
    machine: StateMachineStore,
    addresses: AddressBook,
) -> Result<Consensus, String> {
    let raft_config = raft_config(config.snapshot_every_entries, config.log_entries_kept)
        .map_err(|error| format!("raft configuration: {error}"))?;
    let status = machine.status();
    let raft = Raft::new(
        config.node_id,
        raft_config,
        transport::PeerNetwork::new(
            addresses.clone(),
            config.metrics.clone(),
            config.tls.clone(),
        ),
        log,
        machine,
    )
    .await
    .map_err(|error| format!("cannot start raft: {error}"))?;
    Ok(
        Consensus::new(raft, config.node_id, addresses, status, config.tls.clone())
            .recording_to(config.metrics.clone()),
    )
}

/// A copy of the node's current Raft metrics.
fn current_metrics(raft: &Raft) -> openraft::RaftMetrics<types::TypeConfig> {
    use openraft::async_runtime::WatchReceiver;
    raft.metrics().borrow_watched().clone()
}

/// The openraft configuration every node runs with.
fn raft_config(
    snapshot_every_entries: u64,
    log_entries_kept: u64,
) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
    let config = openraft::Config {
        cluster_name: "clusterhost".to_string(),
        heartbeat_interval: RAFT_HEARTBEAT_INTERVAL.as_millis() as u64,
        election_timeout_min: RAFT_ELECTION_TIMEOUT_MIN.as_millis() as u64,
        election_timeout_max: RAFT_ELECTION_TIMEOUT_MAX.as_millis() as u64,
        max_payload_entries: RAFT_APPEND_ENTRIES_MAX,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every_entries),
        max_in_snapshot_log_to_keep: log_entries_kept,
        enable_pre_vote: Some(true),
        // A leader restarted fast enough would otherwise resume leading
        // without an election, with only its lazily saved commit index: it
        // could confirm a read index below writes it had acknowledged before
        // the crash and serve a stale linearizable read (the fault suite's
        // restart-all run found exactly that). An election makes the new
        // leader commit an entry of its own term first.
        enable_leader_restore: Some(false),
        install_snapshot_timeout: RAFT_INSTALL_SNAPSHOT_TIMEOUT.as_millis() as u64,
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}
