//! The on-disk cache of compiled plugins, authenticated. wasmtime loads a
//! cached artifact as native code without checking it, so a file changed
//! in the data dir would run as this node. Each artifact is stored after
//! an HMAC-SHA256 tag under a key kept beside the cache directory (not in
//! it); a file whose tag does not verify is never loaded and the plugin is
//! compiled again. Files are written 0600 under a 0700 directory, through
//! a unique temporary name, fsynced, then renamed.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of the tag in front of every artifact.
const TAG_BYTES: usize = 32;
/// Bytes of the cache key.
const KEY_BYTES: usize = 32;

/// Why the cache could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file or directory could not be used.
    #[error("compiled-plugin cache {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file holds no key of the right size.
    #[error("compiled-plugin cache key {0} is damaged; delete it (and the cache) to start over")]
    BadKey(PathBuf),
    /// The system random generator failed.
    #[error("cannot make a compiled-plugin cache key")]
    Random,
}

/// A directory of authenticated compiled artifacts.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: hmac::Key,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "ArtifactCache({})", self.dir.display())
    }
}

/// Tells temporary files of concurrent writes apart.
static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ArtifactCache {
    /// Open (creating) `dir`, with its key in `<dir>.key` (made on first use).
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let key_path = dir.with_extension("key");
        let key = match std::fs::read(&key_path) {
            Ok(bytes) if bytes.len() == KEY_BYTES => bytes,
            Ok(_) => return Err(CacheError::BadKey(key_path)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; KEY_BYTES];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| CacheError::Random)?;
                write_private(&key_path, &key).map_err(io(&key_path))?;
                key
            }
            Err(error) => return Err(io(&key_path)(error)),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    /// The artifact stored as `name`, if there is one and its tag verifies.
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        let mut file = std::fs::read(&path).ok()?;
        if verify(&self.key, &file).is_none() {
            tracing::warn!(path = %path.display(), "compiled plugin fails its integrity check; recompiling");
            return None;
        }
        Some(file.split_off(TAG_BYTES))
    }

    /// Store `artifact` as `name`.
    pub fn write(&self, name: &str, artifact: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(
            "{name}.{}.{}.tmp",
            std::process::id(),
            TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_private(&temporary, &tagged(&self.key, artifact))
            .and_then(|()| std::fs::rename(&temporary, &path))
            .and_then(|()| std::fs::File::open(&self.dir)?.sync_all());
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }
}

/// `artifact` with its tag in front.
fn tagged(key: &hmac::Key, artifact: &[u8]) -> Vec<u8> {
    let tag = hmac::sign(key, artifact);
    let mut file = Vec::with_capacity(TAG_BYTES + artifact.len());
    file.extend_from_slice(tag.as_ref());
    file.extend_from_slice(artifact);
    file
}

/// The artifact of a tagged file, if its tag verifies.
fn verify<'a>(key: &hmac::Key, file: &'a [u8]) -> Option<&'a [u8]> {
    if file.len() < TAG_BYTES {
        return None;
    }
    let (tag, artifact) = file.split_at(TAG_BYTES);
    hmac::verify(key, artifact, tag).ok()?;
    Some(artifact)
}

/// Write a new file readable by this user only, and fsync it.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_anywhere_fails_the_check() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; KEY_BYTES]);
        let file = tagged(&key, b"native code");
        assert_eq!(verify(&key, &file), Some(&b"native code"[..]));
        for index in 0..file.len() {
            let mut flipped = file.clone();
            flipped[index] ^= 0x80;
            assert_eq!(verify(&key, &flipped), None, "byte {index}");
        }
        let other = hmac::Key::new(hmac::HMAC_SHA256, &[8; KEY_BYTES]);
        assert_eq!(verify(&other, &file), None, "another key verified it");
        assert_eq!(verify(&key, &file[..TAG_BYTES - 1]), None);
    }

    #[test]
    fn artifacts_round_trip_privately_and_tampering_is_caught() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("compiled");
        let cache = ArtifactCache::open(&dir).expect("open");
        cache.write("a.cwasm", b"artifact").expect("write");
        assert_eq!(cache.read("a.cwasm").as_deref(), Some(&b"artifact"[..]));
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("a.cwasm")), 0o600);
        assert_eq!(mode(&root.path().join("compiled.key")), 0o600);

        // The key survives a reopen; a changed byte does not.
        let reopened = ArtifactCache::open(&dir).expect("reopen");
        assert_eq!(reopened.read("a.cwasm").as_deref(), Some(&b"artifact"[..]));
        let path = dir.join("a.cwasm");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("tamper");
        assert_eq!(reopened.read("a.cwasm"), None);
        assert_eq!(reopened.read("missing.cwasm"), None);
    }
}
