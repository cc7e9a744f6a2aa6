//! A durable, ordered log of records in redb, with named values beside it.
//!
//! Appends return as soon as the records are readable; the writer thread
//! (`super::log_writer`) makes them durable, many appends to one fsync,
//! and only then reports them done. What a record is, and what the named
//! values mean, is the owner's business (the Raft log in
//! `consensus::log_store`).

use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::log_tables::{LOG_TABLE, LogRecord, META_TABLE, io_error};
use super::log_writer::{self, AppendDone, Done, Fault, Job, Unflushed};
use crate::metrics::Metrics;

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogOpenError {
    /// Another process holds the database.
    #[error("another clusterhost process is using this data dir")]
    InUse,
    /// Anything else (I/O, a corrupt file).
    #[error("{0}")]
    Other(String),
}

/// The log. Cloning shares the database and the writer.
pub struct LogDb<R: LogRecord> {
    shared: Arc<Shared<R>>,
}

impl<R: LogRecord> Clone for LogDb<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// What every clone shares; dropping the last one stops the writer after it
/// has written everything queued.
struct Shared<R: LogRecord> {
    database: Arc<Database>,
    unflushed: Unflushed<R>,
    jobs: Option<Sender<Job<R>>>,
    writer: Option<JoinHandle<()>>,
    // Read only by tests, which inject failures through it.
    #[cfg_attr(not(test), allow(dead_code))]
    fault: Fault,
    /// Declared after `database`: fields drop in order, so this tells the
    /// file is closed only once the database's own drop (a final write and
    /// sync) has finished.
    closed: ClosedSignal,
}

/// Set when dropped.
struct ClosedSignal(Arc<std::sync::atomic::AtomicBool>);

impl Drop for ClosedSignal {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<R: LogRecord> Drop for Shared<R> {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the log writer thread panicked");
        }
    }
}

/// Tells when a log's database file has been closed: every clone dropped
/// and the writer thread gone, so the data dir may be opened again (by a
/// node restarted in the same process).
#[derive(Debug, Clone)]
pub struct LogRelease(Arc<std::sync::atomic::AtomicBool>);

impl LogRelease {
    /// Whether the file is closed.
    pub fn is_released(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<R: LogRecord> LogDb<R> {
    /// A way to learn when this log's file has been closed.
    pub fn release_watch(&self) -> LogRelease {
        LogRelease(self.shared.closed.0.clone())
    }

    /// Open (or create) the log at `path` and start its writer thread.
    pub fn open(path: &Path) -> Result<Self, LogOpenError> {
        Self::open_recording(path, Metrics::default())
    }

    /// [`LogDb::open`], with the writer's fsyncs recorded in `metrics`.
    pub fn open_recording(path: &Path, metrics: Metrics) -> Result<Self, LogOpenError> {
        let other = |error: redb::Error| match error {
            redb::Error::DatabaseAlreadyOpen => LogOpenError::InUse,
            error => LogOpenError::Other(error.to_string()),
        };
        let database = Arc::new(Database::create(path).map_err(|error| other(error.into()))?);
        let transaction = database
            .begin_write()
            .map_err(|error| other(error.into()))?;
        transaction
            .open_table(LOG_TABLE)
            .map_err(|error| other(error.into()))?;
        transaction
            .open_table(META_TABLE)
            .map_err(|error| other(error.into()))?;
        transaction.commit().map_err(|error| other(error.into()))?;
        let unflushed = Unflushed::default();
        let fault = Fault::default();
        let (jobs, receiver) = std::sync::mpsc::channel();
        let writer = {
            let database = database.clone();
            let unflushed = unflushed.clone();
            let fault = fault.clone();
            std::thread::Builder::new()
                .name("log-writer".to_string())
                .spawn(move || log_writer::run(database, unflushed, receiver, fault, metrics))
                .map_err(|error| LogOpenError::Other(error.to_string()))?
        };
        Ok(Self {
            shared: Arc::new(Shared {
                database,
                unflushed,
                jobs: Some(jobs),
                writer: Some(writer),
                fault,
                closed: ClosedSignal(Arc::default()),
            }),
        })
    }

    /// Make `records` readable now and durable soon; `done` hears which.
    pub fn append(&self, records: Vec<R>, done: AppendDone) -> io::Result<()> {
        {
            let mut unflushed = self.shared.unflushed.lock();
            for record in &records {
                unflushed.insert(record.index(), record.clone());
            }
        }
        self.submit(Job::Append { records, done })
    }

    /// Set `key` with the next durable transaction (a crash before then
    /// loses it).
    pub fn set_lazily(&self, key: &'static str, value: Vec<u8>) -> io::Result<()> {
        self.submit(Job::MetaLazy { key, value })
    }

    /// Set `key` and wait until it is on disk.
    pub async fn set(&self, key: &'static str, value: Vec<u8>) -> io::Result<()> {
        self.submit_and_wait(|done| Job::Meta { key, value, done })
            .await
    }

    /// Remove every record after `after` (all when `None`), durably.
    pub async fn truncate_after(&self, after: Option<u64>) -> io::Result<()> {
        self.shared.unflushed.truncate_after(after);
        self.submit_and_wait(|done| Job::Truncate { after, done })
            .await
    }

    /// Remove every record up to `up_to`, durably, setting `key` to `value`
    /// in the same transaction (where the log now starts).
    pub async fn purge(&self, up_to: u64, key: &'static str, value: Vec<u8>) -> io::Result<()> {
        self.submit_and_wait(|done| Job::Purge {
            up_to,
            key,
            value,
            done,
        })
        .await
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let transaction = self.shared.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(META_TABLE).map_err(io_error)?;
        Ok(table
            .get(key)
            .map_err(io_error)?
            .map(|value| value.value().to_vec()))
    }

    /// The last record, durable or not.
    pub fn last(&self) -> io::Result<Option<R>> {
        if let Some((_, record)) = self.shared.unflushed.lock().last_key_value() {
            return Ok(Some(record.clone()));
        }
        let transaction = self.shared.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(LOG_TABLE).map_err(io_error)?;
        match table.last().map_err(io_error)? {
            None => Ok(None),
            Some((_, value)) => R::decode(value.value()).map(Some),
        }
    }

    /// Records in `start..end`: the unflushed tail first, then disk for
    /// whatever lies below it. The tail is read first because a record
    /// leaves it only once it is on disk.
    pub fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> io::Result<Vec<R>> {
        let (tail, tail_first): (Vec<R>, Option<u64>) = {
            let unflushed = self.shared.unflushed.lock();
            let tail = unflushed
                .range((start, end))
                .map(|(_, record)| record.clone())
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
        let mut records = Vec::new();
        if range_is_empty(start, disk_end) {
            records.extend(tail);
            return Ok(records);
        }
        let transaction = self.shared.database.begin_read().map_err(io_error)?;
        let table = transaction.open_table(LOG_TABLE).map_err(io_error)?;
        for item in table.range::<u64>((start, disk_end)).map_err(io_error)? {
            let (_, value) = item.map_err(io_error)?;
            records.push(R::decode(value.value())?);
        }
        records.extend(tail);
        Ok(records)
    }

    /// Make the writer's next transaction fail, as a full disk would.
    #[cfg(test)]
    pub(crate) fn fail_next_write(&self) {
        self.shared.fault.fail_next();
    }

    fn submit(&self, job: Job<R>) -> io::Result<()> {
        let stopped = || io::Error::other("the log writer has stopped");
        let jobs = self.shared.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job).map_err(|_| stopped())
    }

    /// Queue a change and wait until it is on disk.
    async fn submit_and_wait(&self, job: impl FnOnce(Done) -> Job<R>) -> io::Result<()> {
        let (done, written) = tokio::sync::oneshot::channel();
        self.submit(job(done))?;
        written
            .await
            .map_err(|_| io::Error::other("the log writer stopped before writing"))?
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
