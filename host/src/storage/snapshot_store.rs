//! Snapshot files on disk: written atomically, checksummed on write and
//! verified on read.
//!
//! Format: 8 magic bytes, the sha256 of the body, then the body (postcard of
//! [`StoredSnapshot`]). Only the newest snapshot is kept.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::consensus::snapshot::SnapshotBody;
use crate::consensus::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"CHSNAP01";
const DIGEST_BYTES: usize = 32;
const FILE_NAME: &str = "current.snap";

/// A snapshot as stored: Raft metadata plus the body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredSnapshot {
    /// Last log id and membership the snapshot includes.
    pub meta: SnapshotMeta,
    /// The plugin and its state.
    pub body: SnapshotBody,
}

/// The directory holding the node's newest snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    directory: PathBuf,
}

impl SnapshotStore {
    /// Use `directory`, creating it if needed.
    pub fn open(directory: &Path) -> io::Result<Self> {
        fs::create_dir_all(directory)?;
        Ok(Self {
            directory: directory.to_path_buf(),
        })
    }

    /// Write `snapshot` as the current one: to a temporary file, fsync,
    /// rename over the old one, fsync the directory.
    pub fn save(&self, snapshot: &StoredSnapshot) -> io::Result<()> {
        let body = postcard::to_stdvec(snapshot).map_err(io::Error::other)?;
        let digest = Sha256::digest(&body);
        let temporary = self.directory.join(format!("{FILE_NAME}.tmp"));
        {
            let mut file = File::create(&temporary)?;
            file.write_all(MAGIC)?;
            file.write_all(&digest)?;
            file.write_all(&body)?;
            file.sync_all()?;
        }
        fs::rename(&temporary, self.path())?;
        File::open(&self.directory)?.sync_all()
    }

    /// The current snapshot, if any, verified against its checksum.
    pub fn load(&self) -> io::Result<Option<StoredSnapshot>> {
        let bytes = match fs::read(self.path()) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let corrupt = |reason: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot {} is corrupt: {reason}", self.path().display()),
            )
        };
        if bytes.len() < MAGIC.len() + DIGEST_BYTES || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("bad header"));
        }
        let (digest, body) = bytes[MAGIC.len()..].split_at(DIGEST_BYTES);
        if Sha256::digest(body).as_slice() != digest {
            return Err(corrupt("checksum mismatch"));
        }
        postcard::from_bytes(body)
            .map(Some)
            .map_err(|error| corrupt(&error.to_string()))
    }

    /// Size of the current snapshot file in bytes, if any.
    pub fn size_bytes(&self) -> Option<u64> {
        fs::metadata(self.path())
            .ok()
            .map(|metadata| metadata.len())
    }

    fn path(&self) -> PathBuf {
        self.directory.join(FILE_NAME)
    }
}
