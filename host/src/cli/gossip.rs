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

/// Until the process ends: on every SIGHUP, read `path` again and use its
/// keys; a file that does not parse is logged and the keys in use stay.
#[cfg(unix)]
pub async fn reload_on_hangup(path: std::path::PathBuf, keyring: Arc<Keyring>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!("cannot listen for SIGHUP; gossip keys reload only on restart: {error}");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let loaded = tokio::fs::read_to_string(&path)
            .await
            .map_err(|error| error.to_string())
            .and_then(|text| Keyring::parse(&text).map_err(|error| error.to_string()));
        match loaded {
            Ok(newer) => {
                keyring.replace_keys(newer);
                tracing::info!(
                    keys = keyring.len(),
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
}
