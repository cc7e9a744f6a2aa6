//! What a Raft snapshot carries — the plugin itself and its state, so a node
//! restoring a snapshot can always run it, whatever it ran before — and how
//! it is kept in the node's snapshot file.

use std::io;
use std::path::Path;

use super::plugin_history::PluginHistory;
use super::types::SnapshotMeta;
use crate::plugin::EntryPosition;
use crate::storage::{Saved, SnapshotFile};

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

/// A snapshot as stored and sent: Raft metadata plus the body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredSnapshot {
    /// Last log id and membership the snapshot includes.
    pub meta: SnapshotMeta,
    /// The plugin and its state.
    pub body: SnapshotBody,
}

impl StoredSnapshot {
    /// The log index the snapshot includes (0: none).
    pub fn index(&self) -> u64 {
        self.meta
            .last_log_id
            .as_ref()
            .map_or(0, |log_id| log_id.index)
    }
}

/// The node's newest snapshot file, holding [`StoredSnapshot`]s.
#[derive(Debug, Clone)]
pub struct Snapshots {
    file: SnapshotFile,
}

impl Snapshots {
    /// The snapshots in `directory`.
    pub fn open(directory: &Path) -> io::Result<Self> {
        Ok(Self {
            file: SnapshotFile::open(directory)?,
        })
    }

    /// Store `snapshot` as the newest, unless a newer one is already stored.
    pub fn save(&self, snapshot: &StoredSnapshot) -> io::Result<()> {
        let body = postcard::to_stdvec(snapshot).map_err(io::Error::other)?;
        match self.file.save(snapshot.index(), &body)? {
            Saved::Current => {}
            Saved::KeptNewer { current_index } => tracing::info!(
                index = snapshot.index(),
                current_index,
                "kept the newer snapshot already stored"
            ),
        }
        Ok(())
    }

    /// The newest snapshot, verified.
    pub fn load(&self) -> io::Result<Option<StoredSnapshot>> {
        let Some(body) = self.file.load()? else {
            return Ok(None);
        };
        postcard::from_bytes(&body)
            .map(Some)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }

    /// Size of the stored file, if any.
    pub fn size_bytes(&self) -> Option<u64> {
        self.file.size_bytes()
    }
}
