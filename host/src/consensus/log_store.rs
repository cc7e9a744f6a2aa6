//! The Raft log as openraft sees it: entries, vote and commit marker kept in
//! the node's log database ([`crate::storage::LogDb`]).
//!
//! Appends return as soon as the entries are readable and are reported to
//! openraft once the log writer has made them durable, so a leader
//! replicates an entry while its own fsync is still running. Plugins in
//! deploy entries are handed to a compiler as they arrive, so the switch at
//! apply time does not wait for compiling.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;

use openraft::EntryPayload;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};

use super::types::{Entry, LogId, Request, TypeConfig, Vote};
use crate::metrics::Metrics;
use crate::storage::{LogDb, LogOpenError, LogRecord};

/// Named values kept beside the entries.
const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const LAST_PURGED_KEY: &str = "last_purged";

impl LogRecord for Entry {
    type Id = LogId;

    fn index(&self) -> u64 {
        self.log_id.index
    }

    fn id(&self) -> LogId {
        self.log_id
    }

    fn encode(&self) -> io::Result<Vec<u8>> {
        encode(self)
    }

    fn decode(bytes: &[u8]) -> io::Result<Self> {
        decode(bytes).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "cannot read a log entry ({error}): a newer clusterhost may have written it; \
                     this one ({}) supports protocol level {}",
                    env!("CARGO_PKG_VERSION"),
                    super::settings::PROTOCOL_LEVEL_SUPPORTED
                ),
            )
        })
    }
}

/// The Raft log. Cloning shares the database and its writer.
#[derive(Clone)]
pub struct LogStore {
    log: LogDb<Entry>,
    precompile: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
}

impl LogStore {
    /// Open (or create) the log at `path`.
    pub fn open(path: &Path) -> Result<Self, LogOpenError> {
        Self::open_recording(path, Metrics::default())
    }

    /// [`LogStore::open`], with its fsyncs recorded in `metrics`.
    pub fn open_recording(path: &Path, metrics: Metrics) -> Result<Self, LogOpenError> {
        Ok(Self {
            log: LogDb::open_recording(path, metrics)?,
            precompile: None,
        })
    }

    /// A way to learn when the log's file has been closed.
    pub fn release_watch(&self) -> crate::storage::LogRelease {
        self.log.release_watch()
    }

    /// Hand every plugin that arrives in a deploy entry to `precompile` as
    /// it is appended, so compiling happens before the entry commits.
    pub fn with_precompile(mut self, precompile: tokio::sync::mpsc::Sender<Vec<u8>>) -> Self {
        self.precompile = Some(precompile);
        self
    }

    fn read<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        self.log.get(key)?.map(|bytes| decode(&bytes)).transpose()
    }
}

fn encode<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(io::Error::other)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

// Reads run inline: they touch the page cache for a bounded range (at most
// one AppendEntries batch), cheaper than moving off the worker.
impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.log
            .read_range(range.start_bound().cloned(), range.end_bound().cloned())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read(VOTE_KEY)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.read(LAST_PURGED_KEY)?;
        let last_log_id = self
            .log
            .last()?
            .map(|entry| entry.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.log.set(VOTE_KEY, encode(vote)?).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Lazily: losing it in a crash only means re-learning the commit
        // index from the leader.
        self.log.set_lazily(COMMITTED_KEY, encode(&committed)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.read::<Option<LogId>>(COMMITTED_KEY)?.flatten())
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
        if let Some(precompile) = &self.precompile {
            for entry in &entries {
                if let EntryPayload::Normal(Request::Deploy { plugin, .. }) = &entry.payload {
                    // Best effort: a full queue only means compiling at apply time.
                    let _ = precompile.try_send(plugin.clone());
                }
            }
        }
        self.log.append(
            entries,
            Box::new(move |outcome| callback.io_completed(outcome)),
        )
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.log
            .truncate_after(last_log_id.map(|log_id| log_id.index))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.log
            .purge(log_id.index, LAST_PURGED_KEY, encode(&log_id)?)
            .await
    }
}

/// Test support, not for operators: replace the command of the entry at
/// `index` in the (closed) log at `path` with `command`, as silent disk or
/// memory corruption would. The divergence check must notice.
#[doc(hidden)]
pub async fn rewrite_command_offline(path: &Path, index: u64, command: Vec<u8>) -> io::Result<()> {
    let mut store = LogStore::open(path).map_err(io::Error::other)?;
    let mut entries = store.try_get_log_entries(index..).await?;
    let Some(first) = entries.first_mut() else {
        return Err(io::Error::other(format!("no entry {index} in the log")));
    };
    let EntryPayload::Normal(Request::Command { bytes, .. }) = &mut first.payload else {
        return Err(io::Error::other(format!("entry {index} is not a command")));
    };
    *bytes = command;
    store.log.truncate_after(index.checked_sub(1)).await?;
    let (flushed, durable) = tokio::sync::oneshot::channel();
    store.log.append(
        entries,
        Box::new(move |outcome| drop(flushed.send(outcome))),
    )?;
    durable
        .await
        .map_err(|_| io::Error::other("the log writer stopped"))?
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

    // Goal: entries are readable as soon as append returns, and everything
    // (entries, vote, commit marker) survives a reopen.
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

    // Goal: a truncation replaces queued entries even before they reach disk.
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

    // Goal: purge removes the prefix and the log state remembers it.
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

    // Goal: after one failed log write (a full disk), every later write
    // fails too, so nothing lands on disk past the gap it left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_failed_write_every_later_write_fails_and_nothing_lands_past_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("raft.redb");
        let mut store = LogStore::open(&path).expect("open");
        append_durably(&mut store, vec![command(1, 1, "a"), command(1, 2, "b")]).await;
        store.log.fail_next_write();
        for index in 3..=4 {
            let (flushed, durable) = TypeConfig::oneshot();
            store
                .append(vec![command(1, index, "c")], IOFlushed::signal(flushed))
                .await
                .expect("append is queued");
            let outcome = durable.await.expect("the writer reports");
            assert!(
                outcome.is_err(),
                "entry {index} must fail, not land past a gap"
            );
        }
        let vote = store.save_vote(&Vote::new(3, NODE)).await;
        assert!(vote.is_err(), "a vote after the failure fails too");
        drop(store);
        let mut reopened = LogStore::open(&path).expect("reopen");
        assert_eq!(
            texts(&reopened.try_get_log_entries(..).await.expect("read")),
            vec![(1, 1, "a".to_string()), (1, 2, "b".to_string())]
        );
        assert_eq!(reopened.read_vote().await.expect("vote"), None);
    }

    // Goal: many appends queued at once all become durable, in order.
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
