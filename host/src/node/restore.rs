//! `clusterhost backup restore`: seed a new data dir from a backup file, as
//! the first and only voter of a new cluster that others then join.
//!
//! The file is verified before anything is written, and the data dir is
//! built beside its destination and renamed into place at the end, so a
//! refused file or a failure part way leaves nothing behind.

use std::path::{Path, PathBuf};

use openraft::storage::RaftLogStorage;

use crate::consensus::backup::{self, BackupInfo};
use crate::consensus::snapshot::Snapshots;
use crate::consensus::types::Vote;
use crate::consensus::{LogStore, NodeId};
use crate::storage::data_dir::LAYOUT_VERSION;
use crate::storage::{DataDir, NodeIdentity};

/// Why a restore did not happen. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file is not a usable backup.
    #[error("{path}: {source}")]
    Backup {
        /// The file.
        path: PathBuf,
        /// Why.
        source: backup::BackupError,
    },
    /// The destination holds something already.
    #[error("{0} exists and is not empty: restore into a new data dir")]
    NotEmpty(PathBuf),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
}

/// Verify `bytes` (read from `path`) and make `data_dir` the data dir of
/// node `node_id`, reachable at `rpc_addr`, leading a new cluster holding
/// the backup's state. What the backup held is returned.
pub async fn restore(
    path: &Path,
    bytes: &[u8],
    data_dir: &Path,
    node_id: NodeId,
    rpc_addr: &str,
) -> Result<BackupInfo, RestoreError> {
    let stored = backup::decode(bytes).map_err(|source| RestoreError::Backup {
        path: path.to_path_buf(),
        source,
    })?;
    let is_empty = match std::fs::read_dir(data_dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
        Err(error) => return Err(io(data_dir, error)),
    };
    if !is_empty {
        return Err(RestoreError::NotEmpty(data_dir.to_path_buf()));
    }
    let info = backup::info(&stored);
    let building = data_dir.with_extension("restoring");
    let _ = std::fs::remove_dir_all(&building);
    let built = build(
        &building,
        backup::reseed(stored, node_id, rpc_addr),
        &info,
        node_id,
    )
    .await;
    let moved = built.and_then(|()| {
        // An empty destination is replaced; a missing one is created.
        let _ = std::fs::remove_dir(data_dir);
        std::fs::rename(&building, data_dir).map_err(|error| io(data_dir, error))
    });
    if moved.is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    moved.map(|()| info)
}

/// Write the snapshot, a vote at the backup's term, and the identity.
async fn build(
    root: &Path,
    stored: crate::consensus::snapshot::StoredSnapshot,
    info: &BackupInfo,
    node_id: NodeId,
) -> Result<(), RestoreError> {
    let data_dir = DataDir::open(root).map_err(|error| RestoreError::Io(error.to_string()))?;
    Snapshots::open(&data_dir.snapshot_dir())
        .and_then(|snapshots| snapshots.save(&stored))
        .map_err(|error| io(&data_dir.snapshot_dir(), error))?;
    // The node campaigns from the backup's term: a leader's term is never
    // below the entries it holds.
    let mut log = LogStore::open(&data_dir.log_path())
        .map_err(|error| RestoreError::Io(format!("cannot create the log: {error}")))?;
    log.save_vote(&Vote::new(info.term, node_id))
        .await
        .map_err(|error| io(&data_dir.log_path(), error))?;
    drop(log);
    data_dir
        .write_identity(&NodeIdentity {
            layout_version: LAYOUT_VERSION,
            node_id,
            bootstrapped: true,
            plugin_digest: info.plugin_digest.clone(),
        })
        .map_err(|error| RestoreError::Io(error.to_string()))
}

fn io(path: &Path, error: std::io::Error) -> RestoreError {
    RestoreError::Io(format!("{}: {error}", path.display()))
}
