//! Writing a snapshot whose content the state machine captured between two
//! applies: only the file write is left, off the apply path.

use std::io;
use std::sync::Arc;

use openraft::storage::RaftSnapshotBuilder;
use tokio::sync::watch;

use super::machine_status::MachineStatus;
use super::snapshot::{SnapshotBody, Snapshots, StoredSnapshot};
use super::types::TypeConfig;

type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotBody>;

/// Writes a snapshot whose content was captured by the state machine.
pub struct SnapshotBuilder {
    pub(super) snapshot: StoredSnapshot,
    pub(super) snapshots: Snapshots,
    pub(super) status: Arc<watch::Sender<MachineStatus>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotBody;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let stored = self.snapshot.clone();
        let snapshots = self.snapshots.clone();
        let stored = tokio::task::spawn_blocking(move || snapshots.save(&stored).map(|()| stored))
            .await
            .map_err(io::Error::other)??;
        tracing::info!(index = stored.index(), "snapshot written");
        self.status.send_modify(|status| {
            status.snapshot_size_bytes = self.snapshots.size_bytes();
        });
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: stored.body,
        })
    }
}
