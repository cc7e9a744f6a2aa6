//! `clusterhost gossip keygen`, and reading `--gossip-key-file`.

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
