//! `clusterhost gossip keygen`, and reading `--gossip-key-file` (at start,
//! and again on SIGHUP so gossip keys rotate without restarts).

use std::path::Path;
use std::sync::Arc;

use super::security_args::GossipCommand;
use super::{CliError, ExitCode};
use crate::discovery::Keyring;

/// Run one `gossip` subcommand.
pub fn gossip(command: GossipCommand) -> Result<(), CliError> {
    match command {
        GossipCommand::Keygen => {
            let key = Keyring::generate().map_err(|_| {
                CliError::new(ExitCode::Failure, "the system random generator failed")
            })?;
            println!("{key}");
            Ok(())
        }
    }
}

/// The keyring in `path`, if given.
pub fn load_keyring(path: Option<&Path>) -> Result<Option<Arc<Keyring>>, CliError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let invalid = |message: String| CliError::new(ExitCode::InvalidInput, message);
    let text = std::fs::read_to_string(path)
        .map_err(|error| invalid(format!("cannot read {}: {error}", path.display())))?;
    let keyring =
        Keyring::parse(&text).map_err(|error| invalid(format!("{}: {error}", path.display())))?;
    Ok(Some(Arc::new(keyring)))
}

/// Listen for SIGHUP from now on (before the node serves, so that a
/// SIGHUP, which would otherwise end the process, never does), and on each
/// read `path` again and use its keys. Without a key file there is nothing
/// to reload: that is logged. Must run inside the runtime.
#[cfg(unix)]
pub fn reload_on_hangup(path: Option<std::path::PathBuf>, keyring: Option<Arc<Keyring>>) {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered here, not in the task: a task may first run after the
    // node already serves.
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!("cannot listen for SIGHUP; gossip keys reload only on restart: {error}");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match (&path, &keyring) {
                (Some(path), Some(keyring)) => reload(path, keyring).await,
                _ => tracing::info!("SIGHUP: nothing to reload (no --gossip-key-file)"),
            }
        }
    });
}

/// Read `path` again and use its keys; a file that does not parse is
/// logged and the keys in use stay.
#[cfg(unix)]
async fn reload(path: &Path, keyring: &Keyring) {
    let loaded = tokio::fs::read_to_string(path)
        .await
        .map_err(|error| error.to_string())
        .and_then(|text| Keyring::parse(&text).map_err(|error| error.to_string()));
    match loaded {
        Ok(newer) => {
            keyring.replace_keys(newer);
            tracing::info!(
                keys = keyring.len(),
                fingerprints = ?keyring.fingerprints(),
                "gossip keyring reloaded from {}",
                path.display()
            );
        }
        Err(error) => tracing::warn!(
            "gossip keyring not reloaded, the keys in use stay: {}: {error}",
            path.display()
        ),
    }
}
