//! The state file: one redb database holding the store of the running
//! plugin. A fresh one is created under a temporary name for each runtime
//! built from a snapshot (or empty), and takes the stable name
//! [`STATE_FILE_NAME`] once that runtime runs ([`StateFile::promote`]); a
//! node restarting reopens the stable one (see [`super::durable`]).
//!
//! Beside the store, a `meta` table holds the applied index of the last
//! commit (written with every commit), the plugin's code (written once),
//! and the last checkpoint (written by durable commits only). redb reverts
//! to the last durable commit after a crash, but makes pending ones durable
//! on a clean close, so a reopened file is usable only where the applied
//! index and the checkpoint's agree.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::backends::InMemoryBackend;
use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTableMetadata,
    TableDefinition,
};

use super::envelope::{self, Entries};
use super::view::Writes;
use super::{KeyValue, StoreError};
use crate::limits::STORE_DURABLE_COMMIT_EVERY_WRITES;

/// The store's keys and values.
const STORE_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("store");

/// What the host keeps beside the store.
const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The index of the last entry whose writes the store holds, or of the last
/// checkpoint if later (u64 LE).
const APPLIED_KEY: &str = "applied";

/// The last checkpoint ([`super::durable::Checkpoint`]).
const CHECKPOINT_KEY: &str = "checkpoint";

/// The running plugin's code.
const CODE_KEY: &str = "code";

/// The checkpoint's side record: its digest, then its bytes.
const SIDE_KEY: &str = "side";

/// The store's table in one consistent read transaction.
pub type StoreTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// File names of state files start with this; a binary from before the
/// file was reopened deletes every one at start.
const FILE_PREFIX: &str = "plugin-store-";

/// The state file of the running plugin, reopened at start.
pub const STATE_FILE_NAME: &str = "plugin-store-state.redb";

/// Tells the fresh state files of one process apart.
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// A consistent, immutable view of the store at one point: redb's MVCC
/// keeps it readable while later writes commit.
#[derive(Clone)]
pub struct StoreSnapshot {
    transaction: Arc<ReadTransaction>,
}

impl std::fmt::Debug for StoreSnapshot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("StoreSnapshot")
    }
}

impl StoreSnapshot {
    /// The store's table as of this snapshot.
    pub fn table(&self) -> Result<StoreTable, StoreError> {
        self.transaction
            .open_table(STORE_TABLE)
            .map_err(StoreError::from_redb)
    }
}

/// Where a state file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// In memory: nothing survives the process.
    Memory,
    /// A fresh file not yet in use, deleted on drop.
    Fresh(PathBuf),
    /// The node's state file, [`STATE_FILE_NAME`] in its directory.
    Stable(PathBuf),
}

/// The redb database behind a runtime's store.
pub struct StateFile {
    database: Database,
    location: Location,
    /// Writes since the last durable commit, for a store in memory (redb
    /// reuses freed pages only after a durable commit).
    lazy_commits: u64,
    /// The digest of the side record the file holds, if known.
    side_digest: Option<[u8; 32]>,
}

/// A part of a checkpoint that rarely changes (the plugins kept for
/// rollback, which can be large), written only when its digest differs
/// from the one the file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideRecord {
    pub digest: [u8; 32],
    pub bytes: Arc<Vec<u8>>,
}

impl SideRecord {
    /// The record of `bytes`.
    pub fn of(bytes: Vec<u8>) -> Self {
        Self {
            digest: Self::digest_of(&bytes),
            bytes: Arc::new(bytes),
        }
    }

    /// The digest a record of `bytes` has.
    pub fn digest_of(bytes: &[u8]) -> [u8; 32] {
        use sha2::{Digest as _, Sha256};
        Sha256::digest(bytes).into()
    }
}

impl StateFile {
    /// A fresh, empty store in a new file in `dir` (`None`: in memory).
    pub fn create(dir: Option<&Path>) -> Result<Self, StoreError> {
        let (database, location) = match dir {
            Some(dir) => {
                let number = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
                let name = format!("{FILE_PREFIX}new-{}-{number}.redb", std::process::id());
                let path = dir.join(name);
                // A leftover of the same name is from a dead process.
                let _ = std::fs::remove_file(&path);
                let database = Database::create(&path).map_err(StoreError::from_redb)?;
                (database, Location::Fresh(path))
            }
            None => {
                let database = Database::builder()
                    .create_with_backend(InMemoryBackend::new())
                    .map_err(StoreError::from_redb)?;
                (database, Location::Memory)
            }
        };
        let file = Self {
            database,
            location,
            lazy_commits: 0,
            side_digest: None,
        };
        // Create the tables, so every snapshot can open them.
        let transaction = file.begin(Durability::None)?;
        transaction
            .open_table(STORE_TABLE)
            .map_err(StoreError::from_redb)?;
        transaction
            .open_table(META_TABLE)
            .map_err(StoreError::from_redb)?;
        transaction.commit().map_err(StoreError::from_redb)?;
        Ok(file)
    }

    /// The node's state file in `dir`, if there is one, opened as it was
    /// last made durable (redb repairs a file a crash left behind).
    pub fn open_stable(dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = dir.join(STATE_FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        // Every page's checksum is verified: a plain open trusts a file
        // closed cleanly, however it was changed since.
        let database = Database::builder()
            .set_check_integrity_on_open(true)
            .open(&path)
            .map_err(StoreError::from_redb)?;
        let mut file = Self {
            database,
            location: Location::Stable(path),
            lazy_commits: 0,
            side_digest: None,
        };
        file.side_digest = file.stored_meta()?.side.map(|(digest, _)| digest);
        Ok(Some(file))
    }

    /// Make this fresh file the node's state file: renamed over the old one
    /// in one step, so a crash leaves either whole.
    pub fn promote(&mut self) -> Result<(), StoreError> {
        let Location::Fresh(path) = &self.location else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let stable = dir.join(STATE_FILE_NAME);
        std::fs::rename(path, &stable).map_err(|error| StoreError::Io(error.to_string()))?;
        // The rename itself must survive a crash.
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| StoreError::Io(error.to_string()))?;
        self.location = Location::Stable(stable);
        Ok(())
    }

    /// Whether the store is in a file (not in memory).
    pub fn is_on_disk(&self) -> bool {
        self.location != Location::Memory
    }

    /// Remove the fresh state files a previous process left in `dir`; the
    /// node's state file stays, for [`super::durable`] to judge.
    pub fn remove_stale(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(FILE_PREFIX) && name != STATE_FILE_NAME {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Remove the node's state file in `dir`: it cannot be resumed from.
    pub fn discard(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(STATE_FILE_NAME));
    }

    /// The store as of the last commit.
    pub fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let transaction = self.database.begin_read().map_err(StoreError::from_redb)?;
        Ok(StoreSnapshot {
            transaction: Arc::new(transaction),
        })
    }

    /// Apply `writes` (a value, or `None` for a removal), the writes of
    /// the entry at `index`, in one transaction.
    pub fn commit(&mut self, index: u64, writes: &Writes) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let transaction = self.begin_lazy(writes.len() as u64)?;
        {
            let mut table = transaction
                .open_table(STORE_TABLE)
                .map_err(StoreError::from_redb)?;
            for (key, value) in writes {
                match value {
                    Some(value) => table.insert(key.as_slice(), value.as_slice()),
                    None => table.remove(key.as_slice()).map(|_| None),
                }
                .map_err(StoreError::from_redb)?;
            }
            put_meta(&transaction, APPLIED_KEY, &index.to_le_bytes())?;
        }
        transaction.commit().map_err(StoreError::from_redb)
    }

    /// Put every one of `entries` (a fresh store's contents) in one
    /// transaction, without holding them in memory again, with the code of
    /// the plugin that runs on them.
    pub fn fill(&mut self, entries: &Entries<'_>, code: &[u8]) -> Result<(), StoreError> {
        let transaction = self.begin_lazy(entries.len() as u64)?;
        {
            let mut table = transaction
                .open_table(STORE_TABLE)
                .map_err(StoreError::from_redb)?;
            for (key, value) in entries.iter() {
                table.insert(key, value).map_err(StoreError::from_redb)?;
            }
            put_meta(&transaction, CODE_KEY, code)?;
        }
        transaction.commit().map_err(StoreError::from_redb)
    }

    /// Make everything committed so far durable, with `checkpoint` (the
    /// state besides the store after the entry at `index`) and its side
    /// record; `None` removes the last checkpoint (it no longer matches).
    pub fn checkpoint(
        &mut self,
        index: u64,
        checkpoint: Option<(&[u8], &SideRecord)>,
    ) -> Result<(), StoreError> {
        let mut transaction = self.begin(Durability::Immediate)?;
        // Records the allocator state, so a reopen after a crash need not
        // walk the whole file.
        transaction.set_quick_repair(true);
        let mut side_written = None;
        {
            put_meta(&transaction, APPLIED_KEY, &index.to_le_bytes())?;
            let mut table = transaction
                .open_table(META_TABLE)
                .map_err(StoreError::from_redb)?;
            match checkpoint {
                Some((bytes, side)) => {
                    table
                        .insert(CHECKPOINT_KEY, bytes)
                        .map_err(StoreError::from_redb)?;
                    if self.side_digest != Some(side.digest) {
                        let record = [&side.digest[..], &side.bytes[..]].concat();
                        table
                            .insert(SIDE_KEY, record.as_slice())
                            .map_err(StoreError::from_redb)?;
                        side_written = Some(side.digest);
                    }
                }
                None => {
                    table
                        .remove(CHECKPOINT_KEY)
                        .map_err(StoreError::from_redb)?;
                }
            }
        }
        self.lazy_commits = 0;
        transaction.commit().map_err(StoreError::from_redb)?;
        if side_written.is_some() {
            self.side_digest = side_written;
        }
        Ok(())
    }

    /// The applied index, the last checkpoint and the code, as stored
    /// (each `None` if missing).
    pub fn stored_meta(&self) -> Result<StoredMeta, StoreError> {
        let transaction = self.database.begin_read().map_err(StoreError::from_redb)?;
        let table = transaction
            .open_table(META_TABLE)
            .map_err(StoreError::from_redb)?;
        let read = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
            let value = table.get(key).map_err(StoreError::from_redb)?;
            Ok(value.map(|guard| guard.value().to_vec()))
        };
        let applied = read(APPLIED_KEY)?
            .map(|bytes| {
                <[u8; 8]>::try_from(bytes.as_slice())
                    .map(u64::from_le_bytes)
                    .map_err(|_| StoreError::Malformed("applied index".to_string()))
            })
            .transpose()?;
        let side = match read(SIDE_KEY)? {
            Some(record) => {
                let (digest, bytes) = record
                    .split_first_chunk::<32>()
                    .ok_or_else(|| StoreError::NotResumable("a truncated side record".into()))?;
                Some((*digest, bytes.to_vec()))
            }
            None => None,
        };
        Ok(StoredMeta {
            applied,
            checkpoint: read(CHECKPOINT_KEY)?,
            code: read(CODE_KEY)?,
            side,
        })
    }

    /// A write transaction with `durability`.
    fn begin(&self, durability: Durability) -> Result<redb::WriteTransaction, StoreError> {
        let mut transaction = self.database.begin_write().map_err(StoreError::from_redb)?;
        transaction
            .set_durability(durability)
            .map_err(|error| StoreError::Io(error.to_string()))?;
        Ok(transaction)
    }

    /// A write transaction for `writes` more writes, durable only at a
    /// checkpoint (a file) or now and then (in memory, for page reuse).
    fn begin_lazy(&mut self, writes: u64) -> Result<redb::WriteTransaction, StoreError> {
        self.lazy_commits += writes;
        let durability = if self.location == Location::Memory
            && self.lazy_commits >= STORE_DURABLE_COMMIT_EVERY_WRITES
        {
            self.lazy_commits = 0;
            Durability::Immediate
        } else {
            Durability::None
        };
        self.begin(durability)
    }

    /// The envelope of `plugin` and every key and value as of `snapshot`,
    /// written straight from the table (the store is held once, as the
    /// envelope), with room for `size_hint` bytes.
    pub fn envelope(
        snapshot: &StoreSnapshot,
        plugin: &[u8],
        size_hint: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let table = snapshot.table()?;
        let mut writer = envelope::Writer::new(plugin, size_hint);
        for item in table.range::<&[u8]>(..).map_err(StoreError::from_redb)? {
            let (key, value) = item.map_err(StoreError::from_redb)?;
            writer.push(key.value(), value.value());
        }
        Ok(writer.finish())
    }

    /// The bytes the store as of `snapshot` takes in an envelope (the
    /// envelope's header included), counted without holding it.
    pub fn envelope_store_bytes(snapshot: &StoreSnapshot) -> Result<usize, StoreError> {
        let table = snapshot.table()?;
        let mut bytes = envelope::HEADER_BYTES;
        for item in table.range::<&[u8]>(..).map_err(StoreError::from_redb)? {
            let (key, value) = item.map_err(StoreError::from_redb)?;
            bytes = bytes.saturating_add(envelope::entry_bytes(
                key.value().len(),
                value.value().len(),
            ));
        }
        Ok(bytes)
    }

    /// Every key and value, in key order, as of `snapshot`.
    pub fn entries(snapshot: &StoreSnapshot) -> Result<Vec<KeyValue>, StoreError> {
        let table = snapshot.table()?;
        let mut entries = Vec::with_capacity(table.len().unwrap_or(0) as usize);
        for item in table.range::<&[u8]>(..).map_err(StoreError::from_redb)? {
            let (key, value) = item.map_err(StoreError::from_redb)?;
            entries.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok(entries)
    }
}

/// The host's records in a state file, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredMeta {
    /// The index of the last entry whose writes the store holds.
    pub applied: Option<u64>,
    /// The last checkpoint, encoded.
    pub checkpoint: Option<Vec<u8>>,
    /// The plugin's code.
    pub code: Option<Vec<u8>>,
    /// The side record's digest and bytes.
    pub side: Option<([u8; 32], Vec<u8>)>,
}

/// Write `value` under `key` in the meta table of `transaction`.
fn put_meta(
    transaction: &redb::WriteTransaction,
    key: &str,
    value: &[u8],
) -> Result<(), StoreError> {
    let mut table = transaction
        .open_table(META_TABLE)
        .map_err(StoreError::from_redb)?;
    table.insert(key, value).map_err(StoreError::from_redb)?;
    Ok(())
}

impl Drop for StateFile {
    fn drop(&mut self) {
        if let Location::Fresh(path) = &self.location {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Goal: a store filled from an envelope holds exactly its entries.
    use super::super::envelope;
    use super::*;

    #[test]
    fn a_store_filled_from_an_envelope_holds_its_entries() {
        let entries: Vec<KeyValue> = (0..500u32)
            .map(|n| (format!("key-{n:04}").into_bytes(), n.to_le_bytes().to_vec()))
            .collect();
        let bytes = envelope::encode(b"plugin part", &entries);
        let (_, decoded) = envelope::decode(&bytes).expect("an envelope");
        let mut file = StateFile::create(None).expect("a store");
        file.fill(&decoded, b"code").expect("filled");
        let stored = StateFile::entries(&file.snapshot().expect("snapshot")).expect("entries");
        assert_eq!(stored, entries);
    }
}
