//! openraft's storage conformance suite, run against the real log store
//! (redb on disk) and the real state machine (with its plugin worker and
//! snapshot file), as openraft's own storage crates do.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use tempfile::TempDir;

use super::log_store::LogStore;
use super::snapshot::Snapshots;
use super::state_machine::StateMachineStore;
use super::types::TypeConfig;
use crate::limits::PluginLimits;
use crate::plugin::{PluginEngine, PluginHandle};

/// A fresh, empty log and state machine in a temp dir per test.
struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for OnDisk {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let directory = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&directory.path().join("raft.redb")).expect("open the log");
        let engine = PluginEngine::new(None).expect("plugin engine");
        let plugin = PluginHandle::spawn(None, PluginLimits::default(), "suite".to_string())
            .expect("plugin worker");
        let snapshots = Snapshots::open(&directory.path().join("snapshots")).expect("snapshot dir");
        let machine =
            StateMachineStore::open(plugin, engine, snapshots, PluginLimits::default(), None)
                .await
                .expect("state machine");
        Ok((directory, log, machine))
    }
}

// Goal: our log store and state machine behave as openraft requires of
// every storage implementation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_passes_openraft_conformance_suite() {
    Suite::test_all(OnDisk).await.expect("conformance suite");
}
