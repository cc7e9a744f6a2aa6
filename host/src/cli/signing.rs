//! `clusterhost plugin keygen|sign`, and reading `--plugin-signers`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use super::{CliError, ExitCode};
use crate::security::signing::{self, Signer};

fn invalid(message: String) -> CliError {
    CliError::new(ExitCode::InvalidInput, message)
}

/// `plugin keygen --out FILE`: the private key to FILE, the public key out.
pub fn keygen(out: &Path) -> Result<(), CliError> {
    let (private, public) = signing::generate_key()
        .map_err(|error| CliError::new(ExitCode::Failure, error.to_string()))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .and_then(|mut file| file.write_all(private.as_bytes()).map(|()| file))
        .map_err(|error| CliError::new(ExitCode::Failure, format!("{}: {error}", out.display())))?;
    file.sync_all()
        .map_err(|error| CliError::new(ExitCode::Failure, format!("{}: {error}", out.display())))?;
    println!("{public}");
    Ok(())
}

/// `plugin sign --key KEY --out OUT FILE`.
pub fn sign(key: &Path, out: &Path, file: &Path) -> Result<(), CliError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|error| invalid(format!("cannot read {}: {error}", path.display())))
    };
    let private = String::from_utf8_lossy(&read(key)?).into_owned();
    let signed = signing::sign(&read(file)?, &private)
        .map_err(|error| invalid(format!("{}: {error}", key.display())))?;
    std::fs::write(out, signed)
        .map_err(|error| CliError::new(ExitCode::Failure, format!("{}: {error}", out.display())))?;
    println!("{}", out.display());
    Ok(())
}

/// The signers in `path`, if given.
pub fn load_signers(path: Option<&Path>) -> Result<Option<Arc<Vec<Signer>>>, CliError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| invalid(format!("cannot read {}: {error}", path.display())))?;
    let signers = signing::parse_signers(&text)
        .map_err(|error| invalid(format!("{}: {error}", path.display())))?;
    if signers.is_empty() {
        return Err(invalid(format!("{}: no signer keys", path.display())));
    }
    Ok(Some(Arc::new(signers)))
}
