//! `clusterhost plugin keygen|sign`, and reading `--plugin-signers` and
//! `config set plugin_signers FILE`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{CliError, ExitCode};
use crate::consensus::trusted_signers::{self, TrustedSigners};
use crate::security::signing;

/// The `config set plugin_signers` value that trusts any plugin.
const SIGNERS_NONE: &str = "none";

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
pub fn load_signers(path: Option<&Path>) -> Result<Option<TrustedSigners>, CliError> {
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
    TrustedSigners::new(signers)
        .map(Some)
        .map_err(|error| invalid(format!("{}: {error}", path.display())))
}

/// What `config set NAME VALUE` sends: for `plugin_signers`, the text of
/// the signers file VALUE names (`none`: any plugin); others as given.
pub fn setting_value(name: &str, value: &str) -> Result<String, CliError> {
    if name != trusted_signers::SETTING_NAME {
        return Ok(value.to_string());
    }
    if value == SIGNERS_NONE {
        return Ok(String::new());
    }
    let text = std::fs::read_to_string(value)
        .map_err(|error| invalid(format!("cannot read {value}: {error}")))?;
    // Checked here too, so a typo is named with its file.
    let signers =
        TrustedSigners::parse(&text).map_err(|error| invalid(format!("{value}: {error}")))?;
    if signers.is_empty() {
        return Err(invalid(format!(
            "{value}: no signer keys (to trust any plugin: config set {} {SIGNERS_NONE})",
            trusted_signers::SETTING_NAME
        )));
    }
    Ok(text)
}

/// How `config get` shows the signers.
pub fn signers_text(keys: &[String]) -> String {
    if keys.is_empty() {
        format!("{SIGNERS_NONE} (any plugin)")
    } else {
        keys.join(", ")
    }
}
