//! The state file: one redb database holding the store of the running
//! plugin, created fresh for each runtime (see the module docs of
//! [`super`] for why it is never reopened) and deleted when dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::backends::InMemoryBackend;
use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTableMetadata,
    TableDefinition,
};

use super::envelope::Entries;
use super::view::Writes;
use super::{KeyValue, StoreError};
use crate::limits::STORE_DURABLE_COMMIT_EVERY_WRITES;

/// The store's keys and values.
const STORE_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("store");

/// The store's table in one consistent read transaction.
pub type StoreTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// File names of state files start with this.
const FILE_PREFIX: &str = "plugin-store-";

/// Tells the state files of one process apart.
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

/// The redb database behind a runtime's store.
pub struct StateFile {
    database: Database,
    /// The file, deleted on drop; `None` for an in-memory store.
    path: Option<PathBuf>,
    /// Commits since the last durable one (redb reuses freed pages only
    /// after a durable commit).
    lazy_commits: u64,
}

impl StateFile {
    /// A fresh, empty store in a new file in `dir` (`None`: in memory).
    pub fn create(dir: Option<&Path>) -> Result<Self, StoreError> {
        let (database, path) = match dir {
            Some(dir) => {
                let number = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
                let name = format!("{FILE_PREFIX}{}-{number}.redb", std::process::id());
                let path = dir.join(name);
                // A leftover of the same name is from a dead process.
                let _ = std::fs::remove_file(&path);
                let database = Database::create(&path).map_err(StoreError::from_redb)?;
                (database, Some(path))
            }
            None => {
                let database = Database::builder()
                    .create_with_backend(InMemoryBackend::new())
                    .map_err(StoreError::from_redb)?;
                (database, None)
            }
        };
        let file = Self {
            database,
            path,
            lazy_commits: 0,
        };
        // Create the table, so every snapshot can open it.
        let transaction = file.database.begin_write().map_err(StoreError::from_redb)?;
        transaction
            .open_table(STORE_TABLE)
            .map_err(StoreError::from_redb)?;
        transaction.commit().map_err(StoreError::from_redb)?;
        Ok(file)
    }

    /// Remove the state files a previous process left in `dir`: a store is
    /// always rebuilt from the snapshot and the log, never reopened.
    pub fn remove_stale(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(FILE_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The store as of the last commit.
    pub fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let transaction = self.database.begin_read().map_err(StoreError::from_redb)?;
        Ok(StoreSnapshot {
            transaction: Arc::new(transaction),
        })
    }

    /// Apply `writes` (a value, or `None` for a removal) in one transaction.
    pub fn commit(&mut self, writes: &Writes) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let transaction = self.begin_write(writes.len() as u64)?;
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
        }
        transaction.commit().map_err(StoreError::from_redb)
    }

    /// Put every one of `entries` (a fresh store's contents) in one
    /// transaction, without holding them in memory again.
    pub fn fill(&mut self, entries: &Entries<'_>) -> Result<(), StoreError> {
        let transaction = self.begin_write(entries.len() as u64)?;
        {
            let mut table = transaction
                .open_table(STORE_TABLE)
                .map_err(StoreError::from_redb)?;
            for (key, value) in entries.iter() {
                table.insert(key, value).map_err(StoreError::from_redb)?;
            }
        }
        transaction.commit().map_err(StoreError::from_redb)
    }

    /// A write transaction for `writes` more writes.
    fn begin_write(&mut self, writes: u64) -> Result<redb::WriteTransaction, StoreError> {
        let mut transaction = self.database.begin_write().map_err(StoreError::from_redb)?;
        self.lazy_commits += writes;
        // Nothing needs this on disk (the file is never reopened); a durable
        // commit now and then lets redb reuse the pages later ones free.
        let durability = if self.lazy_commits >= STORE_DURABLE_COMMIT_EVERY_WRITES {
            self.lazy_commits = 0;
            Durability::Immediate
        } else {
            Durability::None
        };
        transaction
            .set_durability(durability)
            .map_err(|error| StoreError::Io(error.to_string()))?;
        Ok(transaction)
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

impl Drop for StateFile {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
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
        file.fill(&decoded).expect("filled");
        let stored = StateFile::entries(&file.snapshot().expect("snapshot")).expect("entries");
        assert_eq!(stored, entries);
    }
}
