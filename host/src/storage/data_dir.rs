//! The node's data directory: its identity file and where everything else
//! lives.
//!
//! ```text
//! <data-dir>/node.json        identity: node id, whether this node bootstrapped a cluster, plugin
//! <data-dir>/raft.redb        Raft log, vote, commit marker
//! <data-dir>/snapshots/       newest snapshot
//! <data-dir>/compiled/        compiled plugin cache, by digest and engine
//! <data-dir>/identity-bindings.json  node names verified for members (TLS)
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Version of the data dir layout, bumped on incompatible changes.
pub const LAYOUT_VERSION: u32 = 1;

/// What a node remembers about itself across restarts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeIdentity {
    /// Layout version of the data dir.
    pub layout_version: u32,
    /// This node's Raft id, chosen once.
    pub node_id: u64,
    /// Whether this node initialized its cluster with `--bootstrap`.
    pub bootstrapped: bool,
    /// sha256 of the plugin this node was started with, hex.
    pub plugin_digest: Option<String>,
}

/// Errors reading or writing the data dir.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Filesystem failure.
    #[error("data dir {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// node.json is unreadable.
    #[error("data dir {path}: node.json is not valid: {reason}")]
    BadIdentity {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A newer clusterhost wrote this data dir.
    #[error(
        "data dir {path} has layout version {found}, newer than the {LAYOUT_VERSION} this clusterhost \
         ({version}) reads: run a clusterhost at least as new as the one that wrote it; nothing was changed",
        version = env!("CARGO_PKG_VERSION")
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its layout version.
        found: u32,
    },
}

/// Paths within a data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Use `root`, creating it if needed.
    pub fn open(root: &Path) -> Result<Self, DataDirError> {
        fs::create_dir_all(root).map_err(|source| DataDirError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Raft log database.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("raft.redb")
    }

    /// The snapshot directory.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The compiled-plugin cache directory.
    pub fn compiled_dir(&self) -> PathBuf {
        self.root.join("compiled")
    }

    fn identity_path(&self) -> PathBuf {
        self.root.join("node.json")
    }

    /// The stored identity, if this data dir has been used before.
    pub fn identity(&self) -> Result<Option<NodeIdentity>, DataDirError> {
        let path = self.identity_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(DataDirError::Io { path, source }),
        };
        let identity: NodeIdentity =
            serde_json::from_str(&text).map_err(|error| DataDirError::BadIdentity {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        if identity.layout_version > LAYOUT_VERSION {
            return Err(DataDirError::Newer {
                path,
                found: identity.layout_version,
            });
        }
        // Older layouts would be migrated here; layout 1 is the first.
        Ok(Some(identity))
    }

    /// Store `identity` atomically.
    pub fn write_identity(&self, identity: &NodeIdentity) -> Result<(), DataDirError> {
        let path = self.identity_path();
        let temporary = path.with_extension("json.tmp");
        let io_error = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(identity)
            .map_err(|error| io_error(io::Error::other(error)))?;
        fs::write(&temporary, text).map_err(io_error)?;
        fs::File::open(&temporary)
            .and_then(|file| file.sync_all())
            .map_err(io_error)?;
        fs::rename(&temporary, &path).map_err(io_error)?;
        fs::File::open(&self.root)
            .and_then(|directory| directory.sync_all())
            .map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the identity survives a round trip and a missing file is "new".
    #[test]
    fn identity_round_trips() {
        let directory = tempfile::tempdir().expect("temp dir");
        let data_dir = DataDir::open(directory.path()).expect("open");
        assert_eq!(data_dir.identity().expect("read"), None);
        let identity = NodeIdentity {
            layout_version: LAYOUT_VERSION,
            node_id: 42,
            bootstrapped: true,
            plugin_digest: Some("ab".repeat(32)),
        };
        data_dir.write_identity(&identity).expect("write");
        assert_eq!(data_dir.identity().expect("read"), Some(identity));
    }

    // Goal: a data dir written by a newer binary is refused, naming both
    // versions, and left as it was.
    #[test]
    fn a_newer_layout_is_refused_naming_both_versions() {
        let directory = tempfile::tempdir().expect("temp dir");
        let data_dir = DataDir::open(directory.path()).expect("open");
        let newer = format!(
            r#"{{"layout_version":{},"node_id":1,"bootstrapped":false,"plugin_digest":null}}"#,
            LAYOUT_VERSION + 1
        );
        fs::write(directory.path().join("node.json"), &newer).expect("write");
        let error = data_dir.identity().expect_err("newer");
        let text = error.to_string();
        assert!(
            text.contains(&format!("layout version {}", LAYOUT_VERSION + 1)),
            "{text}"
        );
        assert!(
            text.contains(&format!("newer than the {LAYOUT_VERSION}")),
            "{text}"
        );
        let after = fs::read_to_string(directory.path().join("node.json")).expect("read");
        assert_eq!(after, newer, "nothing changed");
    }

    #[test]
    fn garbage_identity_is_a_clear_error() {
        let directory = tempfile::tempdir().expect("temp dir");
        let data_dir = DataDir::open(directory.path()).expect("open");
        fs::write(directory.path().join("node.json"), "not json").expect("write");
        let error = data_dir.identity().expect_err("garbage must fail");
        assert!(
            error.to_string().contains("node.json is not valid"),
            "{error}"
        );
    }
}
