//! The Raft log, vote and commit marker in redb.
//!
//! Appends are fsynced before openraft is told they are durable; openraft
//! batches concurrent client writes into one append, so many writes share
//! one fsync. The commit marker is written without fsync: losing it only
//! means re-learning the commit index from the leader after a crash.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use openraft::EntryPayload;

use crate::consensus::types::{Entry, LogId, Request, TypeConfig, Vote};

/// Entries by index, postcard-encoded.
const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Small named values: vote, commit marker, last purged log id.
const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const LAST_PURGED_KEY: &str = "last_purged";

/// The redb-backed Raft log. Cloning shares the database.
#[derive(Clone)]
pub struct LogStore {
    database: Arc<Database>,
    precompile: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
}

impl LogStore {
    /// Open (or create) the log at `path`.
    pub fn open(path: &Path) -> Result<Self, redb::Error> {
        let database = Database::create(path)?;
        let transaction = database.begin_write()?;
        transaction.open_table(LOG_TABLE)?;
        transaction.open_table(META_TABLE)?;
        transaction.commit()?;
        Ok(Self {
            database: Arc::new(database),
            precompile: None,
        })
    }

    /// Hand every plugin that arrives in a deploy entry to `precompile` as
    /// it is appended, so compiling happens before the entry commits and
    /// the switch at apply time is only snapshot and restore.
    pub fn with_precompile(mut self, precompile: tokio::sync::mpsc::Sender<Vec<u8>>) -> Self {
        self.precompile = Some(precompile);
        self
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let transaction = self.database.begin_read().map_err(io::Error::other)?;
        let table = transaction
            .open_table(META_TABLE)
            .map_err(io::Error::other)?;
        match table.get(key).map_err(io::Error::other)? {
            None => Ok(None),
            Some(value) => decode(value.value()).map(Some),
        }
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> io::Result<()> {
        let encoded = encode(value)?;
        let mut transaction = self.database.begin_write().map_err(io::Error::other)?;
        transaction
            .set_durability(durability)
            .map_err(io::Error::other)?;
        {
            let mut table = transaction
                .open_table(META_TABLE)
                .map_err(io::Error::other)?;
            table
                .insert(key, encoded.as_slice())
                .map_err(io::Error::other)?;
        }
        transaction.commit().map_err(io::Error::other)
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogId>> {
        let transaction = self.database.begin_read().map_err(io::Error::other)?;
        let table = transaction
            .open_table(LOG_TABLE)
            .map_err(io::Error::other)?;
        match table.last().map_err(io::Error::other)? {
            None => Ok(None),
            Some((_, value)) => {
                let entry: Entry = decode(value.value())?;
                Ok(Some(entry.log_id))
            }
        }
    }

    fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> io::Result<Vec<Entry>> {
        let transaction = self.database.begin_read().map_err(io::Error::other)?;
        let table = transaction
            .open_table(LOG_TABLE)
            .map_err(io::Error::other)?;
        let mut entries = Vec::new();
        for item in table.range::<u64>((start, end)).map_err(io::Error::other)? {
            let (_, value) = item.map_err(io::Error::other)?;
            entries.push(decode(value.value())?);
        }
        Ok(entries)
    }

    fn remove_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        extra: Option<(&str, Vec<u8>)>,
    ) -> io::Result<()> {
        let transaction = self.database.begin_write().map_err(io::Error::other)?;
        {
            let mut table = transaction
                .open_table(LOG_TABLE)
                .map_err(io::Error::other)?;
            table
                .retain_in::<u64, _>((start, end), |_, _| false)
                .map_err(io::Error::other)?;
            if let Some((key, value)) = &extra {
                let mut meta = transaction
                    .open_table(META_TABLE)
                    .map_err(io::Error::other)?;
                meta.insert(*key, value.as_slice())
                    .map_err(io::Error::other)?;
            }
        }
        transaction.commit().map_err(io::Error::other)
    }
}

fn encode<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(io::Error::other)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Run blocking disk work without stalling the async workers' other tasks.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        blocking(|| self.read_range(start, end))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        blocking(|| self.read_meta(VOTE_KEY))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        blocking(|| {
            let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED_KEY)?;
            let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        blocking(|| self.write_meta(VOTE_KEY, vote, Durability::Immediate))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        blocking(|| self.write_meta(COMMITTED_KEY, &committed, Durability::None))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        blocking(|| Ok(self.read_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten()))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let result = blocking(|| {
            let transaction = self.database.begin_write().map_err(io::Error::other)?;
            {
                let mut table = transaction
                    .open_table(LOG_TABLE)
                    .map_err(io::Error::other)?;
                for entry in entries {
                    if let (
                        Some(precompile),
                        EntryPayload::Normal(Request::Deploy { plugin, .. }),
                    ) = (&self.precompile, &entry.payload)
                    {
                        // Best effort: a full queue only means compiling at apply time.
                        let _ = precompile.try_send(plugin.clone());
                    }
                    let encoded = encode(&entry)?;
                    table
                        .insert(entry.log_id.index, encoded.as_slice())
                        .map_err(io::Error::other)?;
                }
            }
            // Durability::Immediate (the default): fsync before returning.
            transaction.commit().map_err(io::Error::other)
        });
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let start = match &last_log_id {
            Some(log_id) => Bound::Excluded(log_id.index),
            None => Bound::Unbounded,
        };
        blocking(|| self.remove_range(start, Bound::Unbounded, None))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let marker = encode(&log_id)?;
        blocking(|| {
            self.remove_range(
                Bound::Unbounded,
                Bound::Included(log_id.index),
                Some((LAST_PURGED_KEY, marker)),
            )
        })
    }
}
