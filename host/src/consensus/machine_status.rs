//! What the state machine publishes for status reports: a plain value
//! read by the API and membership code, updated as entries apply.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::alarms::Alarms;
use super::digest::DigestBytes;
use super::host_state::HostState;
use super::plugin_history::PluginHistory;
use super::settings::ClusterSettings;
use super::trusted_signers::TrustedSigners;

/// What the state machine publishes for status reports.
#[derive(Debug, Clone, Default)]
pub struct MachineStatus {
    /// The deploy history (without plugin bytes); its `cluster_version`
    /// counts successful deploys.
    pub history: PluginHistory,
    /// The plugin a rollback would deploy.
    pub rollback_plugin: Option<Arc<Vec<u8>>>,
    /// sha256 of the running plugin, hex; `None` before the first deploy.
    pub plugin_digest: Option<String>,
    /// Size of the running plugin in bytes.
    pub plugin_size_bytes: usize,
    /// Size of the newest snapshot file.
    pub snapshot_size_bytes: Option<u64>,
    /// The cluster settings in force.
    pub settings: ClusterSettings,
    /// The plugin signers in force (a cluster setting kept beside them).
    pub signers: TrustedSigners,
    /// The applied digest (hex) and the index it covers.
    pub applied_digest: (String, u64),
    /// Recent checkpoints of the applied digest.
    pub checkpoints: BTreeMap<u64, DigestBytes>,
    /// Alarms in force.
    pub alarms: Alarms,
    /// Client sessions open.
    pub sessions_open: usize,
    /// The native state machine this node runs instead of plugins, if any.
    pub native: Option<String>,
}

impl MachineStatus {
    pub(super) fn replicated(
        host: &HostState,
    ) -> (
        ClusterSettings,
        (String, u64),
        BTreeMap<u64, DigestBytes>,
        Alarms,
    ) {
        (
            host.settings,
            (host.digest.hex(), host.digest.index),
            host.digest.checkpoints.clone(),
            host.alarms.clone(),
        )
    }
}
