//! What a Raft snapshot carries: the plugin itself and its state, so a node
//! restoring a snapshot can always run it, whatever it ran before.

use super::plugin_history::PluginHistory;
use crate::plugin::EntryPosition;

/// The body of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotBody {
    /// The running plugin and its state; `None` before any plugin is deployed.
    pub plugin: Option<PluginState>,
    /// Deploys so far, and earlier plugins kept for rollback.
    pub history: PluginHistory,
}

/// A plugin and the state it had at a log position.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginState {
    /// The component bytes.
    #[serde(with = "serde_bytes")]
    pub code: Vec<u8>,
    /// The last command entry the state includes (`None`: none applied yet).
    pub position: Option<EntryPosition>,
    /// What the plugin's `snapshot` returned.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PluginState")
            .field("code_bytes", &self.code.len())
            .field("position", &self.position)
            .field("state_bytes", &self.state.len())
            .finish()
    }
}
