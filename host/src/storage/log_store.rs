//! The Raft log, vote and commit marker in redb.
//!
//! Appends return as soon as the entries are readable; the log writer
//! thread ([`super::log_writer`]) makes them durable, many appends to one
//! fsync, and only then tells openraft. A leader therefore replicates an
//! entry while its own fsync is still running.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use openraft::EntryPayload;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use redb::{Database, ReadableDatabase, ReadableTable};

use super::log_writer::{
    self, COMMITTED_KEY, Job, LAST_PURGED_KEY, LOG_TABLE, META_TABLE, Unflushed, VOTE_KEY,
};
use crate::consensus::types::{Entry, LogId, Request, TypeConfig, Vote};

/// The redb-backed Raft log. Cloning shares the database and the writer.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    precompile: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
}

/// What every clone shares; dropping the last one stops the writer after it
/// has written everything queued.
struct Shared {
    database: Arc<Database>,
    unflushed: Unflushed,
    jobs: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the log writer thread panicked");
        }
    }
}

impl LogStore {
    /// Open (or create) the log at `path` and start its writer thread.
    pub fn open(path: &Path) -> Result<Self, redb::Error> {
        let database = Arc::new(Database::create(path)?);
        let transaction = database.begin_write()?;
        transaction.open_table(LOG_TABLE)?;
        transaction.open_table(META_TABLE)?;
        transaction.commit()?;
        let unflushed = Unflushed::default();
        let (jobs, receiver) = std::sync::mpsc::channel();
        let writer = {
            let database = database.clone();
            let unflushed = unflushed.clone();
            std::thread::Builder::new()
                .name("log-writer".to_string())
                .spawn(move || log_writer::run(database, unflushed, receiver))
                .map_err(redb::Error::Io)?
        };
        Ok(Self {
            shared: Arc::new(Shared {
                database,
                unflushed,
                jobs: Some(jobs),
                writer: Some(writer),
            }),
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

    fn submit(&self, job: Job) -> io::Result<()> {
        let stopped = || io::Error::other("the log writer has stopped");
        let jobs = self.shared.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job).map_err(|_| stopped())
    }

    /// Queue a change and wait until it is on disk.
    async fn submit_and_wait(&self, job: impl FnOnce(log_writer::Done) -> Job) -> io::Result<()> {
        let (done, written) = tokio::sync::oneshot::channel();
        self.submit(job(done))?;
        written
            .await
            .map_err(|_| io::Error::other("the log writer stopped before writing"))?
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let transaction = self
            .shared
            .database
            .begin_read()
            .map_err(io::Error::other)?;
        let table = transaction
            .open_table(META_TABLE)
            .map_err(io::Error::other)?;
        match table.get(key).map_err(io::Error::other)? {
            None => Ok(None),
            Some(value) => decode(value.value()).map(Some),
        }
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogId>> {
        if let Some((_, entry)) = self.shared.unflushed.lock().last_key_value() {
            return Ok(Some(entry.log_id));
        }
        let transaction = self
            .shared
            .database
            .begin_read()
            .map_err(io::Error::other)?;
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

    /// Entries in `start..end`: the unflushed tail first, then disk for
    /// whatever lies below it. The tail is read first because an entry
    /// leaves it only once it is on disk.
    fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> io::Result<Vec<Entry>> {
        let (tail, tail_first): (Vec<Entry>, Option<u64>) = {
            let unflushed = self.shared.unflushed.lock();
            let tail = unflushed
                .range((start, end))
                .map(|(_, entry)| entry.clone())
                .collect();
            (tail, unflushed.first_key_value().map(|(index, _)| *index))
        };
        let disk_end = match tail_first {
            Some(first) => match end {
                Bound::Included(last) if last < first => end,
                Bound::Excluded(last) if last <= first => end,
                _ => Bound::Excluded(first),
            },
            None => end,
        };
        let mut entries = Vec::new();
        if range_is_empty(start, disk_end) {
            entries.extend(tail);
            return Ok(entries);
        }
        let transaction = self
            .shared
            .database
            .begin_read()
            .map_err(io::Error::other)?;
        let table = transaction
            .open_table(LOG_TABLE)
            .map_err(io::Error::other)?;
        for item in table
            .range::<u64>((start, disk_end))
            .map_err(io::Error::other)?
        {
            let (_, value) = item.map_err(io::Error::other)?;
            entries.push(decode(value.value())?);
        }
        entries.extend(tail);
        Ok(entries)
    }
}

fn range_is_empty(start: Bound<u64>, end: Bound<u64>) -> bool {
    let first = match start {
        Bound::Included(index) => index,
        Bound::Excluded(index) => index.saturating_add(1),
        Bound::Unbounded => 0,
    };
    match end {
        Bound::Included(last) => last < first,
        Bound::Excluded(last) => last <= first,
        Bound::Unbounded => false,
    }
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(io::Error::other)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

// Reads below run inline: they touch the page cache for a bounded range
// (at most one AppendEntries batch), cheaper than moving off the worker.
impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_range(range.start_bound().cloned(), range.end_bound().cloned())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(VOTE_KEY)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED_KEY)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        self.submit_and_wait(|done| Job::Vote { vote, done }).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.submit(Job::Committed(committed))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut unflushed = self.shared.unflushed.lock();
            for entry in &entries {
                unflushed.insert(entry.log_id.index, entry.clone());
            }
        }
        if let Some(precompile) = &self.precompile {
            for entry in &entries {
                if let EntryPayload::Normal(Request::Deploy { plugin, .. }) = &entry.payload {
                    // Best effort: a full queue only means compiling at apply time.
                    let _ = precompile.try_send(plugin.clone());
                }
            }
        }
        self.submit(Job::Append { entries, callback })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let after = last_log_id.map(|log_id| log_id.index);
        self.shared.unflushed.truncate_after(after);
        self.submit_and_wait(|done| Job::Truncate { after, done })
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.submit_and_wait(|done| Job::Purge {
            up_to: log_id,
            done,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::RaftLogReader as _;
    use openraft::entry::RaftEntry as _;
    use openraft::testing::log_id;
    use openraft::type_config::TypeConfigExt as _;

    use super::*;

    const NODE: u64 = 1;

    fn command(term: u64, index: u64, text: &str) -> Entry {
        Entry::new_normal(
            log_id::<TypeConfig>(term, NODE, index),
            Request::Command {
                time_ms: index,
                bytes: text.as_bytes().to_vec(),
            },
        )
    }

    async fn append_durably(store: &mut LogStore, entries: Vec<Entry>) {
        let (flushed, durable) = TypeConfig::oneshot();
        store
            .append(entries, IOFlushed::signal(flushed))
            .await
            .expect("append is queued");
        durable
            .await
            .expect("the writer reports")
            .expect("the append is durable");
    }

    fn texts(entries: &[Entry]) -> Vec<(u64, u64, String)> {
        entries
            .iter()
            .map(|entry| {
                let text = match &entry.payload {
                    EntryPayload::Normal(Request::Command { bytes, .. }) => {
                        String::from_utf8_lossy(bytes).into_owned()
                    }
                    _ => String::new(),
                };
                (entry.log_id.leader_id.term, entry.log_id.index, text)
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_entries_are_readable_at_once_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("raft.redb");
        {
            let mut store = LogStore::open(&path).expect("open");
            // Not waiting for durability: readers must see the entries as
            // soon as append returns (openraft replicates them right away).
            store
                .append(
                    (1..=3)
                        .map(|index| command(1, index, "a"))
                        .collect::<Vec<_>>(),
                    IOFlushed::noop(),
                )
                .await
                .expect("append is queued");
            let read = store.try_get_log_entries(1..4).await.expect("read");
            assert_eq!(texts(&read).len(), 3);
            append_durably(&mut store, vec![command(1, 4, "b")]).await;
            store
                .save_committed(Some(log_id::<TypeConfig>(1, NODE, 4)))
                .await
                .expect("marker");
            let vote = Vote::new(2, NODE);
            store.save_vote(&vote).await.expect("vote");
        }
        // Dropping the store stopped the writer after it wrote everything.
        let mut store = LogStore::open(&path).expect("reopen");
        let read = store.try_get_log_entries(..).await.expect("read");
        assert_eq!(
            texts(&read),
            vec![
                (1, 1, "a".to_string()),
                (1, 2, "a".to_string()),
                (1, 3, "a".to_string()),
                (1, 4, "b".to_string())
            ]
        );
        assert_eq!(
            store.read_vote().await.expect("vote"),
            Some(Vote::new(2, NODE))
        );
        assert_eq!(
            store.read_committed().await.expect("marker"),
            Some(log_id::<TypeConfig>(1, NODE, 4))
        );
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id, Some(log_id::<TypeConfig>(1, NODE, 4)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_truncated_suffix_is_replaced_even_before_it_reaches_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = LogStore::open(&dir.path().join("raft.redb")).expect("open");
        append_durably(
            &mut store,
            (1..=2).map(|index| command(1, index, "old")).collect(),
        )
        .await;
        // Entries 3 and 4 of term 1 are queued but need not be on disk yet
        // when a new leader's entries replace everything after 2.
        store
            .append(
                (3..=4)
                    .map(|index| command(1, index, "old"))
                    .collect::<Vec<_>>(),
                IOFlushed::noop(),
            )
            .await
            .expect("append is queued");
        store
            .truncate_after(Some(log_id::<TypeConfig>(1, NODE, 2)))
            .await
            .expect("truncate");
        append_durably(&mut store, vec![command(2, 3, "new")]).await;
        let expected = vec![
            (1, 1, "old".to_string()),
            (1, 2, "old".to_string()),
            (2, 3, "new".to_string()),
        ];
        assert_eq!(
            texts(&store.try_get_log_entries(..).await.expect("read")),
            expected
        );
        let path = dir.path().join("raft.redb");
        drop(store);
        let mut reopened = LogStore::open(&path).expect("reopen");
        assert_eq!(
            texts(&reopened.try_get_log_entries(..).await.expect("read")),
            expected
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_removes_the_prefix_and_remembers_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = LogStore::open(&dir.path().join("raft.redb")).expect("open");
        append_durably(
            &mut store,
            (1..=5).map(|index| command(1, index, "x")).collect(),
        )
        .await;
        store
            .purge(log_id::<TypeConfig>(1, NODE, 3))
            .await
            .expect("purge");
        let read = store.try_get_log_entries(..).await.expect("read");
        assert_eq!(
            read.iter()
                .map(|entry| entry.log_id.index)
                .collect::<Vec<_>>(),
            vec![4, 5]
        );
        let state = store.get_log_state().await.expect("state");
        assert_eq!(
            state.last_purged_log_id,
            Some(log_id::<TypeConfig>(1, NODE, 3))
        );
        assert_eq!(state.last_log_id, Some(log_id::<TypeConfig>(1, NODE, 5)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_all_durable_and_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("raft.redb");
        let mut store = LogStore::open(&path).expect("open");
        let mut flushed = Vec::new();
        for index in 1..=200 {
            let (sender, receiver) = TypeConfig::oneshot();
            store
                .append(vec![command(1, index, "g")], IOFlushed::signal(sender))
                .await
                .expect("append is queued");
            flushed.push(receiver);
        }
        for receiver in flushed {
            receiver.await.expect("reported").expect("durable");
        }
        drop(store);
        let mut reopened = LogStore::open(&path).expect("reopen");
        let indexes: Vec<u64> = reopened
            .try_get_log_entries(..)
            .await
            .expect("read")
            .iter()
            .map(|entry| entry.log_id.index)
            .collect();
        assert_eq!(indexes, (1..=200).collect::<Vec<_>>());
    }
}
