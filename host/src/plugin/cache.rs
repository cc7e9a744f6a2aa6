//! The on-disk cache of compiled plugins, authenticated. wasmtime loads a
//! cached artifact as native code without checking it, so a file changed
//! in the data dir would run as this node. Each artifact is stored after
//! an HMAC-SHA256 tag; a file whose tag does not verify is never loaded and
//! the plugin is compiled again. Files are written 0600 under a 0700
//! directory, through a unique temporary name, fsynced, then renamed.
//!
//! The key is never stored in the data dir: whoever can plant a file there
//! could read it there too and tag their own. A node with TLS derives it
//! from its TLS private key, which lives elsewhere and is as secret as it
//! needs to be; a node without TLS uses a random key held in memory only,
//! so its artifacts are compiled again after a restart (kv compiles in
//! about 160 ms). [`ArtifactCache::prune`] removes what no retained plugin
//! version uses.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of the tag in front of every artifact.
const TAG_BYTES: usize = 32;
/// Bytes of a random cache key.
const KEY_BYTES: usize = 32;
/// What a key derived from a secret is for, so the same secret used for
/// anything else never yields this key.
const DERIVATION_DOMAIN: &[u8] = b"clusterhost compiled-plugin cache key v2";
/// The file name ending of a write in progress.
const TEMPORARY_SUFFIX: &str = ".tmp";

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
    /// The system random generator failed.
    #[error("cannot make a compiled-plugin cache key")]
    Random,
}

/// The key artifacts are tagged under.
pub struct CacheKey(hmac::Key);

impl CacheKey {
    /// Derived from `secret` (the node's TLS private key file): the same
    /// across restarts, so the cache outlives the process. A new TLS key
    /// means artifacts compiled again, nothing worse.
    pub fn derived_from(secret: &[u8]) -> Self {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            DERIVATION_DOMAIN,
        );
        Self(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// Random and never written anywhere: the cache lasts as long as the
    /// process.
    pub fn random() -> Result<Self, CacheError> {
        let mut key = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| CacheError::Random)?;
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &key)))
    }
}

/// A directory of authenticated compiled artifacts.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: hmac::Key,
    /// In this cache's temporary file names, so [`Self::prune`] tells its
    /// own writes in progress from leftovers of earlier processes (a pid
    /// would not: in a container the node is pid 1 every time).
    writer: u64,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "ArtifactCache({})", self.dir.display())
    }
}

/// Tells temporary files of concurrent writes apart.
static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ArtifactCache {
    /// Open (creating) `dir`, made private to this user whatever its mode
    /// was, with artifacts tagged under `key`. The key file earlier
    /// versions kept beside the directory (`<dir>.key`) is deleted.
    pub fn open(dir: &Path, key: CacheKey) -> Result<Self, CacheError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let old_key = dir.with_extension("key");
        match std::fs::remove_file(&old_key) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(&old_key)(error));
            }
            _ => {}
        }
        let mut writer = [0u8; 8];
        SystemRandom::new()
            .fill(&mut writer)
            .map_err(|_| CacheError::Random)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            key: key.0,
            writer: u64::from_le_bytes(writer),
        })
    }

    /// The artifact stored as `name`, if there is one and its tag verifies.
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        let mut file = std::fs::read(&path).ok()?;
        if verify(&self.key, name, &file).is_none() {
            tracing::warn!(path = %path.display(), "compiled plugin fails its integrity check; recompiling");
            return None;
        }
        Some(file.split_off(TAG_BYTES))
    }

    /// Store `artifact` as `name`.
    pub fn write(&self, name: &str, artifact: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(
            "{name}.{}.{}{TEMPORARY_SUFFIX}",
            self.writer_tag(),
            TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_private(&temporary, &tagged(&self.key, name, artifact))
            .and_then(|()| std::fs::rename(&temporary, &path))
            .and_then(|()| std::fs::File::open(&self.dir)?.sync_all());
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }

    /// Remove every file but the artifacts named in `keep`: artifacts of
    /// plugins no longer retained, of other engine versions, and temporary
    /// files earlier processes left. This cache's own writes in progress
    /// are left to finish. Returns how many files were removed; a file
    /// that cannot be removed is logged and left (it is never loaded
    /// unless its tag verifies anyway).
    pub fn prune(&self, keep: &[String]) -> usize {
        let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
        let own_writes = format!(".{}.", self.writer_tag());
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), "cannot list the compiled-plugin cache: {error}");
                return 0;
            }
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let writing = name.ends_with(TEMPORARY_SUFFIX) && name.contains(&own_writes);
            if keep.contains(name.as_str()) || writing {
                continue;
            }
            let path = entry.path();
            // The entry's own type: a symlink is removed, never followed.
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            let outcome = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match outcome {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(path = %path.display(), "cannot prune the compiled-plugin cache: {error}")
                }
            }
        }
        removed
    }

    fn writer_tag(&self) -> String {
        format!("{:016x}", self.writer)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError::Io { path, source }
}

/// The key that tags the artifact stored as `name`: the tag then vouches
/// for the name too, so a valid artifact copied or renamed onto another
/// plugin's name (an older version's onto the running one's) fails its
/// check instead of running as the wrong plugin.
fn name_key(key: &hmac::Key, name: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(key, name.as_bytes()).as_ref())
}

/// `artifact`, stored as `name`, with its tag in front.
fn tagged(key: &hmac::Key, name: &str, artifact: &[u8]) -> Vec<u8> {
    let tag = hmac::sign(&name_key(key, name), artifact);
    let mut file = Vec::with_capacity(TAG_BYTES + artifact.len());
    file.extend_from_slice(tag.as_ref());
    file.extend_from_slice(artifact);
    file
}

/// The artifact of a tagged file stored as `name`, if its tag verifies.
fn verify<'a>(key: &hmac::Key, name: &str, file: &'a [u8]) -> Option<&'a [u8]> {
    if file.len() < TAG_BYTES {
        return None;
    }
    let (tag, artifact) = file.split_at(TAG_BYTES);
    hmac::verify(&name_key(key, name), artifact, tag).ok()?;
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
        let file = tagged(&key, "a.cwasm", b"native code");
        assert_eq!(verify(&key, "a.cwasm", &file), Some(&b"native code"[..]));
        for index in 0..file.len() {
            let mut flipped = file.clone();
            flipped[index] ^= 0x80;
            assert_eq!(verify(&key, "a.cwasm", &flipped), None, "byte {index}");
        }
        let other = hmac::Key::new(hmac::HMAC_SHA256, &[8; KEY_BYTES]);
        assert_eq!(
            verify(&other, "a.cwasm", &file),
            None,
            "another key verified it"
        );
        assert_eq!(verify(&key, "a.cwasm", &file[..TAG_BYTES - 1]), None);
    }

    #[test]
    fn an_artifact_copied_onto_another_plugins_name_fails_the_check() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = ArtifactCache::open(
            &dir.path().join("compiled"),
            CacheKey::derived_from(b"tls key"),
        )
        .expect("cache");
        cache.write("a.cwasm", b"old plugin").expect("write");
        let compiled = dir.path().join("compiled");
        std::fs::copy(compiled.join("a.cwasm"), compiled.join("b.cwasm")).expect("copy");
        assert_eq!(cache.read("b.cwasm"), None, "the copy ran as b");
        assert_eq!(cache.read("a.cwasm").as_deref(), Some(&b"old plugin"[..]));
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("cache dir")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn artifacts_round_trip_privately_and_tampering_is_caught() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("compiled");
        let cache = ArtifactCache::open(&dir, CacheKey::derived_from(b"tls key")).expect("open");
        cache.write("a.cwasm", b"artifact").expect("write");
        assert_eq!(cache.read("a.cwasm").as_deref(), Some(&b"artifact"[..]));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("a.cwasm")), 0o600);

        // The same secret gives the same key after a restart; a changed
        // byte does not verify.
        let reopened =
            ArtifactCache::open(&dir, CacheKey::derived_from(b"tls key")).expect("reopen");
        assert_eq!(reopened.read("a.cwasm").as_deref(), Some(&b"artifact"[..]));
        let path = dir.join("a.cwasm");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("tamper");
        assert_eq!(reopened.read("a.cwasm"), None);
        assert_eq!(reopened.read("missing.cwasm"), None);
    }

    #[test]
    fn a_file_tagged_under_another_key_is_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("compiled");
        let planted = ArtifactCache::open(&dir, CacheKey::derived_from(b"attacker")).expect("open");
        planted.write("a.cwasm", b"evil").expect("write");
        let node = ArtifactCache::open(&dir, CacheKey::derived_from(b"tls key")).expect("open");
        assert_eq!(node.read("a.cwasm"), None);
        // Without TLS, each process has a key of its own: what the last
        // one wrote is compiled again.
        let before = ArtifactCache::open(&dir, CacheKey::random().expect("key")).expect("open");
        before.write("b.cwasm", b"artifact").expect("write");
        assert_eq!(before.read("b.cwasm").as_deref(), Some(&b"artifact"[..]));
        let after = ArtifactCache::open(&dir, CacheKey::random().expect("key")).expect("open");
        assert_eq!(after.read("b.cwasm"), None);
    }

    #[test]
    fn opening_makes_the_directory_private_and_drops_the_old_key_file() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("compiled");
        std::fs::create_dir(&dir).expect("dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let old_key = root.path().join("compiled.key");
        std::fs::write(&old_key, [7u8; KEY_BYTES]).expect("old key");
        ArtifactCache::open(&dir, CacheKey::random().expect("key")).expect("open");
        assert_eq!(mode(&dir), 0o700);
        assert!(!old_key.exists(), "the key stayed beside the artifacts");
    }

    #[test]
    fn prune_keeps_only_the_named_artifacts_and_removes_leftovers() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("compiled");
        let cache = ArtifactCache::open(&dir, CacheKey::random().expect("key")).expect("open");
        for name in ["kept.cwasm", "old.cwasm", "other-engine.cwasm"] {
            cache.write(name, name.as_bytes()).expect("write");
        }
        // A crashed write of an earlier process, and one of this cache's
        // own under way.
        std::fs::write(dir.join("old.cwasm.00000000000000aa.3.tmp"), b"half").expect("leftover");
        let writing = format!("new.cwasm.{}.9.tmp", cache.writer_tag());
        std::fs::write(dir.join(&writing), b"half").expect("in progress");
        let removed = cache.prune(&["kept.cwasm".to_string(), "never-written.cwasm".to_string()]);
        assert_eq!(removed, 3);
        assert_eq!(files(&dir), vec!["kept.cwasm".to_string(), writing]);
        assert_eq!(
            cache.read("kept.cwasm").as_deref(),
            Some(&b"kept.cwasm"[..])
        );
    }
}
