//! A new cluster's first start: the `--plugin` read and checked, then a
//! single-node cluster initialized with its settings and plugin through
//! the log.

use super::{NodeConfig, StartError};
use crate::consensus::settings::SettingsChange;
use crate::consensus::{Consensus, MachineStatus};
use crate::limits::REQUEST_TIMEOUT;
use crate::plugin::{PluginCode, PluginEngine};

/// Read and validate `--plugin`, if given.
pub(super) async fn load_bootstrap_plugin(
    config: &NodeConfig,
    engine: &PluginEngine,
) -> Result<Option<PluginCode>, StartError> {
    let Some(path) = &config.plugin else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).map_err(|source| StartError::PluginFile {
        path: path.clone(),
        source,
    })?;
    if let Some(signers) = &config.plugin_signers {
        signers
            .verify(&bytes)
            .map_err(|error| StartError::Conflict(format!("{}: {error}", path.display())))?;
    }
    engine
        .load_off_thread(bytes)
        .await
        .map(Some)
        .map_err(|source| StartError::InvalidPlugin {
            path: path.clone(),
            source,
        })
}

/// Initialize a single-node cluster and deploy its plugin (or a native
/// machine's marker) through the log.
pub(super) async fn bootstrap(
    consensus: &Consensus,
    machine: &tokio::sync::watch::Receiver<MachineStatus>,
    rpc_addr: &str,
    plugin: Vec<u8>,
    settings: SettingsChange,
) -> Result<(), StartError> {
    let initialized = consensus
        .is_initialized()
        .await
        .map_err(|error| StartError::other("raft", error))?;
    if !initialized {
        let voters = [(consensus.node_id(), rpc_addr.to_string())].into();
        consensus
            .initialize(voters)
            .await
            .map_err(|error| StartError::other("cannot initialize the cluster", error))?;
    }
    consensus
        .wait_leading(REQUEST_TIMEOUT)
        .await
        .map_err(|error| StartError::other("did not become leader", error))?;
    if machine.borrow().plugin_digest.is_some() {
        return Ok(());
    }
    // The settings every replica applies with come first, from this node's
    // flags; the plugin after them.
    let (_, outcome) = consensus
        .propose_settings(settings)
        .await
        .map_err(|error| StartError::other("cannot set the cluster settings", error))?;
    if let Err(reason) = outcome {
        // A restart after the settings entry but before the deploy: the
        // cluster keeps the settings it has.
        tracing::info!("{reason}");
    }
    let receipt = consensus
        .propose_deploy(plugin)
        .await
        .map_err(|error| StartError::other("cannot deploy the plugin", error))?;
    tracing::info!(digest = %receipt.digest, version = receipt.version, "cluster bootstrapped");
    Ok(())
}
