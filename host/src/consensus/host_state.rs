//! The host's part of the replicated state, beside the plugin's: the deploy
//! history, the cluster settings, the applied digest, the alarms, the
//! client sessions and the trusted plugin signers. Every
//! replica changes it at the same entries; snapshots carry it.

use super::alarms::Alarms;
use super::digest::AppliedDigest;
use super::plugin_history::PluginHistory;
use super::sessions::Sessions;
use super::settings::ClusterSettings;
use super::trusted_signers::TrustedSigners;

/// The host's replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostState {
    /// Deploys so far, and earlier plugins kept for rollback.
    pub history: PluginHistory,
    /// The cluster settings.
    pub settings: ClusterSettings,
    /// The running hash of everything applied.
    pub digest: AppliedDigest,
    /// Alarms in force.
    pub alarms: Alarms,
    /// Client sessions (protocol level 2 on).
    pub sessions: Sessions,
    /// The keys deployed plugins must be signed by (protocol level 3 on).
    pub signers: TrustedSigners,
}
