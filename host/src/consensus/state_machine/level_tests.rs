//! A snapshot of a cluster at a protocol level above this binary's is
//! refused as it installs, before anything changes: the error stops the
//! node, as applying the settings entry that raised the level would have.

use openraft::storage::RaftStateMachine as _;
use openraft::testing::log_id;

use super::batching_tests::machine;
use crate::consensus::settings::PROTOCOL_LEVEL_SUPPORTED;
use crate::consensus::snapshot::SnapshotBody;
use crate::consensus::types::{SnapshotMeta, TypeConfig};

/// An empty snapshot up to entry 10 of a cluster at `level`.
fn snapshot_at(level: u32) -> (SnapshotMeta, SnapshotBody) {
    let mut body = SnapshotBody::default();
    body.host.settings.protocol_level = level;
    let meta = SnapshotMeta {
        last_log_id: Some(log_id::<TypeConfig>(1, 1, 10)),
        ..SnapshotMeta::default()
    };
    (meta, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_above_the_supported_level_is_refused_as_it_installs() {
    let (_directory, mut machine) = machine().await;
    let (meta, body) = snapshot_at(PROTOCOL_LEVEL_SUPPORTED + 1);
    let error = machine
        .install_snapshot(&meta, body)
        .await
        .expect_err("a level this binary does not support");
    let expected = format!("protocol level {}", PROTOCOL_LEVEL_SUPPORTED + 1);
    assert!(error.to_string().contains(&expected), "{error}");
    assert_eq!(machine.last_applied, None, "nothing was installed");
    assert_eq!(machine.host.settings.protocol_level, 0);
    // The supported level itself installs.
    let (meta, body) = snapshot_at(PROTOCOL_LEVEL_SUPPORTED);
    machine
        .install_snapshot(&meta, body)
        .await
        .expect("installed");
    assert_eq!(machine.last_applied, meta.last_log_id);
}
