//! The edge of [`super::identity::Bindings`] on disk: the names this node
//! verified for members, kept in its data dir so that a cluster whose every
//! node restarts at a new address (Kubernetes, DHCP) still recognises its
//! members there. Without it no node would remember any name after such a
//! restart, every moved member would be refused, Raft would never learn the
//! new addresses and the cluster would never regain quorum.
//!
//! The file is small (one line per member) and replaced atomically: written
//! to a temporary file, synced, renamed over the old one, and the directory
//! synced, so a crash leaves the old or the new bindings, never a torn file.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::identity::Bindings;
use crate::consensus::NodeId;

/// The file's name within the data dir.
pub const BINDINGS_FILE_NAME: &str = "identity-bindings.json";

/// Errors reading or writing the bindings file.
#[derive(Debug, thiserror::Error)]
pub enum BindingsFileError {
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The file is not the JSON this module writes.
    #[error("{path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The bindings stored at `path` (none when the file does not exist: a new
/// data dir, or one from before names were bound).
pub fn load(path: &Path) -> Result<Bindings, BindingsFileError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Bindings::default()),
        Err(source) => {
            return Err(BindingsFileError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let names: BTreeMap<NodeId, String> =
        serde_json::from_str(&text).map_err(|error| BindingsFileError::Invalid {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    let mut bindings = Bindings::default();
    for (node_id, name) in names {
        bindings.bind(node_id, name);
    }
    Ok(bindings)
}

/// Replace the bindings stored at `path` with `bindings`, atomically.
pub fn store(path: &Path, bindings: &Bindings) -> Result<(), BindingsFileError> {
    let io_error = |source| BindingsFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let names: BTreeMap<NodeId, &str> = bindings.iter().collect();
    let text =
        serde_json::to_string_pretty(&names).map_err(|error| io_error(io::Error::other(error)))?;
    let temporary = path.with_extension("json.tmp");
    fs::write(&temporary, text).map_err(io_error)?;
    fs::File::open(&temporary)
        .and_then(|file| file.sync_all())
        .map_err(io_error)?;
    fs::rename(&temporary, path).map_err(io_error)?;
    let directory = path.parent().unwrap_or(Path::new("."));
    fs::File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: what is stored is what is loaded; a missing file is no bindings.
    #[test]
    fn bindings_round_trip_and_a_missing_file_is_empty() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join(BINDINGS_FILE_NAME);
        assert_eq!(load(&path).expect("load"), Bindings::default());
        let mut bindings = Bindings::default();
        bindings.bind(1, "node-0".into());
        bindings.bind(12, "node-2".into());
        store(&path, &bindings).expect("store");
        assert_eq!(load(&path).expect("load"), bindings);
        bindings.retain(|node_id| node_id != 12);
        store(&path, &bindings).expect("store");
        assert_eq!(load(&path).expect("load"), bindings);
        assert!(
            !path.with_extension("json.tmp").exists(),
            "no temporary left"
        );
    }

    #[test]
    fn a_garbled_file_is_an_error_naming_it() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join(BINDINGS_FILE_NAME);
        fs::write(&path, "{not json").expect("write");
        let error = load(&path).expect_err("garbled");
        assert!(error.to_string().contains(BINDINGS_FILE_NAME), "{error}");
    }
}
