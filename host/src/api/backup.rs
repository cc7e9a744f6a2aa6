//! Serving `Backup`: take a snapshot now on the leader and stream it as a
//! backup file ([`crate::consensus::backup`]) in chunks.

use std::pin::Pin;

use clusterhost_client::proto;
use futures::Stream;
use tonic::Status;

use crate::consensus::snapshot::Snapshots;
use crate::consensus::{Consensus, Role, backup};
use crate::limits::{BACKUP_CHUNK_BYTES, REQUEST_TIMEOUT};

/// The chunks of one backup.
pub type BackupStream = Pin<Box<dyn Stream<Item = Result<proto::BackupChunk, Status>> + Send>>;

/// A backup of everything this leader has applied, as chunks. Only the
/// leader serves one: it has applied every acknowledged write.
pub async fn backup_stream(
    consensus: &Consensus,
    snapshots: &Snapshots,
) -> Result<BackupStream, Status> {
    let view = consensus.view();
    if view.role != Role::Leader {
        let leader = view
            .leader
            .and_then(|leader| view.member_addr(leader))
            .unwrap_or("unknown");
        return Err(Status::failed_precondition(format!(
            "backups are taken on the leader; this node is a {}, the leader is at {leader}",
            view.role.name()
        )));
    }
    // The snapshot includes everything applied before this call, and so
    // every write acknowledged before it; writes go on meanwhile.
    consensus
        .snapshot_now(REQUEST_TIMEOUT)
        .await
        .map_err(Status::unavailable)?;
    let snapshots = snapshots.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        let stored = snapshots
            .load()?
            .ok_or_else(|| std::io::Error::other("no snapshot was stored"))?;
        backup::encode(&stored)
    })
    .await
    .map_err(|error| Status::internal(error.to_string()))?
    .map_err(|error| Status::unavailable(format!("cannot read the snapshot: {error}")))?;
    let chunks: Vec<Result<proto::BackupChunk, Status>> = bytes
        .chunks(BACKUP_CHUNK_BYTES)
        .map(|chunk| {
            Ok(proto::BackupChunk {
                data: chunk.to_vec(),
            })
        })
        .collect();
    Ok(Box::pin(futures::stream::iter(chunks)))
}
