//! The node's newest snapshot on disk: written atomically, checksummed on
//! write and verified on read. What the bytes mean is the caller's business.
//!
//! Format: 8 magic bytes, the log index the snapshot includes (u64, little
//! endian), the sha256 of the body, then the body. Files of the first format
//! (`CHSNAP01`: no index) are still read.
//!
//! Saves are serialized, each writes its own temporary file, and a snapshot
//! never replaces one that includes more of the log: a snapshot built
//! locally and one installed from the leader may finish in either order.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"CHSNAP02";
/// The first format, without the index.
const MAGIC_V1: &[u8; 8] = b"CHSNAP01";
const INDEX_BYTES: usize = 8;
const DIGEST_BYTES: usize = 32;
const FILE_NAME: &str = "current.snap";
/// Temporary files start with this; leftovers of a crash are removed on open.
const TEMPORARY_PREFIX: &str = "current.snap.tmp";

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The snapshot is now the current one.
    Current,
    /// The current snapshot includes more of the log; it was kept.
    KeptNewer {
        /// The index the kept snapshot includes.
        current_index: u64,
    },
}

/// The directory holding the node's newest snapshot. Clones share the lock
/// that serializes saves.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    directory: PathBuf,
    saving: Arc<Mutex<()>>,
    temporaries: Arc<AtomicU64>,
}

impl SnapshotFile {
    /// Use `directory`, creating it if needed and removing temporary files
    /// a crash left behind.
    pub fn open(directory: &Path) -> io::Result<Self> {
        fs::create_dir_all(directory)?;
        for entry in fs::read_dir(directory)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(TEMPORARY_PREFIX)
            {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(Self {
            directory: directory.to_path_buf(),
            saving: Arc::default(),
            temporaries: Arc::default(),
        })
    }

    /// Make `body`, which includes the log up to `index`, the current
    /// snapshot: write a temporary file, fsync, rename over the old one,
    /// fsync the directory. Keeps the current one if it includes more.
    pub fn save(&self, index: u64, body: &[u8]) -> io::Result<Saved> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current_index) = self.current_index()?
            && current_index > index
        {
            return Ok(Saved::KeptNewer { current_index });
        }
        let temporary = self.directory.join(format!(
            "{TEMPORARY_PREFIX}.{}",
            self.temporaries.fetch_add(1, Ordering::Relaxed)
        ));
        let written =
            write_file(&temporary, index, body).and_then(|()| fs::rename(&temporary, self.path()));
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written?;
        File::open(&self.directory)?.sync_all()?;
        Ok(Saved::Current)
    }

    /// The current snapshot's body, if any, verified against its checksum.
    pub fn load(&self) -> io::Result<Option<Vec<u8>>> {
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
        let header_bytes = match bytes.get(..MAGIC.len()) {
            Some(magic) if magic == MAGIC => MAGIC.len() + INDEX_BYTES,
            Some(magic) if magic == MAGIC_V1 => MAGIC_V1.len(),
            _ => return Err(corrupt("bad header")),
        };
        if bytes.len() < header_bytes + DIGEST_BYTES {
            return Err(corrupt("truncated"));
        }
        let (digest, body) = bytes[header_bytes..].split_at(DIGEST_BYTES);
        if Sha256::digest(body).as_slice() != digest {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(Some(body.to_vec()))
    }

    /// Size of the current snapshot file in bytes, if any.
    pub fn size_bytes(&self) -> Option<u64> {
        fs::metadata(self.path())
            .ok()
            .map(|metadata| metadata.len())
    }

    /// The index the current snapshot includes, from its header (`None`:
    /// no snapshot, or the first format, which does not say).
    fn current_index(&self) -> io::Result<Option<u64>> {
        let mut header = [0u8; MAGIC.len() + INDEX_BYTES];
        let mut file = match File::open(self.path()) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        if io::Read::read_exact(&mut file, &mut header).is_err() || &header[..MAGIC.len()] != MAGIC
        {
            return Ok(None);
        }
        let mut index = [0u8; INDEX_BYTES];
        index.copy_from_slice(&header[MAGIC.len()..]);
        Ok(Some(u64::from_le_bytes(index)))
    }

    fn path(&self) -> PathBuf {
        self.directory.join(FILE_NAME)
    }
}

fn write_file(path: &Path, index: u64, body: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(MAGIC)?;
    file.write_all(&index.to_le_bytes())?;
    file.write_all(&Sha256::digest(body))?;
    file.write_all(body)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a saved body comes back verified, and a flipped byte is refused.
    #[test]
    fn bodies_round_trip_and_corruption_is_refused() {
        let directory = tempfile::tempdir().expect("temp dir");
        let snapshots = SnapshotFile::open(directory.path()).expect("open");
        assert_eq!(snapshots.load().expect("load"), None);
        assert_eq!(snapshots.save(7, b"state").expect("save"), Saved::Current);
        assert_eq!(
            snapshots.load().expect("load").as_deref(),
            Some(&b"state"[..])
        );
        let path = directory.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).expect("write");
        let error = snapshots.load().expect_err("corrupt");
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
    }

    // Goal: an older snapshot finishing last never replaces a newer one.
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let directory = tempfile::tempdir().expect("temp dir");
        let snapshots = SnapshotFile::open(directory.path()).expect("open");
        snapshots.save(20, b"newer").expect("save");
        assert_eq!(
            snapshots.save(10, b"older").expect("save"),
            Saved::KeptNewer { current_index: 20 }
        );
        assert_eq!(
            snapshots.load().expect("load").as_deref(),
            Some(&b"newer"[..])
        );
        assert_eq!(snapshots.save(20, b"again").expect("save"), Saved::Current);
    }

    // Goal: concurrent saves never interleave into one corrupt file.
    #[test]
    fn concurrent_saves_leave_one_whole_snapshot() {
        let directory = tempfile::tempdir().expect("temp dir");
        let snapshots = SnapshotFile::open(directory.path()).expect("open");
        let writers: Vec<_> = (0..8u64)
            .map(|writer| {
                let snapshots = snapshots.clone();
                std::thread::spawn(move || {
                    let body = vec![writer as u8; 256 * 1024];
                    snapshots.save(writer, &body).expect("save");
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer");
        }
        let body = snapshots.load().expect("a whole, verified snapshot");
        assert_eq!(body, Some(vec![7u8; 256 * 1024]));
        let leftovers = fs::read_dir(directory.path()).expect("list").count();
        assert_eq!(leftovers, 1, "only current.snap remains");
    }

    // Goal: a file of the first format (no index) is still read.
    #[test]
    fn the_first_format_is_still_read() {
        let directory = tempfile::tempdir().expect("temp dir");
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&Sha256::digest(b"old"));
        bytes.extend_from_slice(b"old");
        fs::write(directory.path().join(FILE_NAME), bytes).expect("write");
        let snapshots = SnapshotFile::open(directory.path()).expect("open");
        assert_eq!(
            snapshots.load().expect("load").as_deref(),
            Some(&b"old"[..])
        );
        assert_eq!(snapshots.save(1, b"new").expect("save"), Saved::Current);
    }
}
