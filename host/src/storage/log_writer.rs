//! The one thread that writes the log: group commit.
//!
//! Callers hand records over and go on — on a Raft leader, replicating them
//! to followers while they are being made durable here. The writer takes
//! every job queued while its previous transaction was being fsynced and
//! commits them together, so one fsync covers many appends, then reports
//! each job done, in order. Until then appended records are served from the
//! unflushed tail ([`Unflushed`]).
//!
//! Every change goes through the same queue, so changes reach disk in the
//! order they were made. A "lazy" value (the commit marker) rides along with
//! the next durable transaction instead of costing one of its own.
//!
//! After one failed transaction every later job fails too: writing a later
//! group past a failed one would leave a gap on disk.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use redb::Database;

use super::log_tables::{LOG_TABLE, LogRecord, META_TABLE, io_error};
use crate::limits::LOG_GROUP_COMMIT_JOBS_MAX;
use crate::metrics::Metrics;

/// Where a waiting caller learns that its change is on disk.
pub(super) type Done = tokio::sync::oneshot::Sender<io::Result<()>>;

/// Told once appended records are durable (or could not be made so).
pub type AppendDone = Box<dyn FnOnce(io::Result<()>) + Send>;

/// One change to the log, in the order the owner asked for it.
pub(super) enum Job<R: LogRecord> {
    /// Records already visible in the unflushed tail.
    Append { records: Vec<R>, done: AppendDone },
    /// A value written with the next durable transaction.
    MetaLazy { key: &'static str, value: Vec<u8> },
    /// A value written now.
    Meta {
        key: &'static str,
        value: Vec<u8>,
        done: Done,
    },
    /// Remove every record after `after` (everything when `None`).
    Truncate { after: Option<u64>, done: Done },
    /// Remove every record up to and including `up_to`, and record where
    /// the log now starts under `key`.
    Purge {
        up_to: u64,
        key: &'static str,
        value: Vec<u8>,
        done: Done,
    },
}

/// Records handed to the writer but not yet on disk, by index. Readers look
/// here first: a record leaves the tail only after the transaction holding
/// it has committed, so a reader always finds it in one place or the other.
pub(super) struct Unflushed<R: LogRecord>(Arc<Mutex<BTreeMap<u64, R>>>);

impl<R: LogRecord> Clone for Unflushed<R> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<R: LogRecord> Default for Unflushed<R> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<R: LogRecord> Unflushed<R> {
    pub(super) fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, R>> {
        // A panic while holding this lock cannot leave the map half-changed
        // (every change is one insert or remove), so a poisoned lock is safe.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drop records after `after` (a truncation: newer appends replace them).
    pub(super) fn truncate_after(&self, after: Option<u64>) {
        let mut records = self.lock();
        match after {
            Some(index) => drop(records.split_off(&(index + 1))),
            None => records.clear(),
        }
    }

    /// Forget records that are now on disk — unless a later append has
    /// already replaced them after a truncation.
    fn release(&self, written: &[R]) {
        let mut records = self.lock();
        for record in written {
            if records
                .get(&record.index())
                .is_some_and(|held| held.id() == record.id())
            {
                records.remove(&record.index());
            }
        }
    }
}

/// Run the writer until every sender is gone, then persist the last lazy
/// values so a graceful stop loses none of them.
pub(super) fn run<R: LogRecord>(
    database: Arc<Database>,
    unflushed: Unflushed<R>,
    jobs: Receiver<Job<R>>,
    fault: Fault,
    metrics: Metrics,
) {
    let mut writer = Writer {
        database,
        unflushed,
        lazy: BTreeMap::new(),
        failed: None,
        fault,
        metrics,
    };
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < LOG_GROUP_COMMIT_JOBS_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        writer.commit_group(group);
    }
    if !writer.lazy.is_empty()
        && writer.failed.is_none()
        && let Err(error) = writer.write(&[])
    {
        tracing::warn!("could not save the commit marker at shutdown: {error}");
    }
}

struct Writer<R: LogRecord> {
    database: Arc<Database>,
    unflushed: Unflushed<R>,
    /// Lazy values waiting for the next durable transaction.
    lazy: BTreeMap<&'static str, Vec<u8>>,
    /// The first failure; every later job fails with it.
    failed: Option<String>,
    fault: Fault,
    metrics: Metrics,
}

/// An injected failure of the next transaction, for tests of what a full
/// disk does; never set outside tests.
#[derive(Debug, Clone, Default)]
pub(super) struct Fault(Arc<std::sync::atomic::AtomicBool>);

impl Fault {
    /// Make the next transaction fail (once).
    #[cfg(test)]
    pub(super) fn fail_next(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn take(&self) -> bool {
        self.0.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

impl<R: LogRecord> Writer<R> {
    fn commit_group(&mut self, group: Vec<Job<R>>) {
        let mut durable = Vec::with_capacity(group.len());
        for job in group {
            match job {
                Job::MetaLazy { key, value } => {
                    self.lazy.insert(key, value);
                }
                other => durable.push(other),
            }
        }
        if durable.is_empty() {
            return;
        }
        let result = match &self.failed {
            Some(first) => Err(format!("an earlier log write failed: {first}")),
            None => {
                let started = Instant::now();
                let written = self.write(&durable).map_err(|error| error.to_string());
                self.metrics.log_commit(durable.len(), started.elapsed());
                written
            }
        };
        if let Err(error) = &result
            && self.failed.is_none()
        {
            tracing::error!("the log could not be written; failing every later write: {error}");
            self.failed = Some(error.clone());
        }
        for job in durable {
            let outcome = result.clone().map_err(io::Error::other);
            match job {
                Job::Append { records, done } => {
                    if outcome.is_ok() {
                        self.unflushed.release(&records);
                    }
                    done(outcome);
                }
                Job::Meta { done, .. } | Job::Truncate { done, .. } | Job::Purge { done, .. } => {
                    // The caller may have given up waiting; the change stands.
                    let _ = done.send(outcome);
                }
                Job::MetaLazy { .. } => {}
            }
        }
    }

    /// One transaction for the whole group (and the lazy values), fsynced
    /// on commit.
    fn write(&mut self, jobs: &[Job<R>]) -> io::Result<()> {
        if self.fault.take() {
            return Err(io::Error::other(
                "injected failure: no space left on device",
            ));
        }
        let transaction = self.database.begin_write().map_err(io_error)?;
        {
            let mut log = transaction.open_table(LOG_TABLE).map_err(io_error)?;
            let mut meta = transaction.open_table(META_TABLE).map_err(io_error)?;
            for job in jobs {
                match job {
                    Job::Append { records, .. } => {
                        for record in records {
                            log.insert(record.index(), record.encode()?.as_slice())
                                .map_err(io_error)?;
                        }
                    }
                    Job::Meta { key, value, .. } => {
                        meta.insert(*key, value.as_slice()).map_err(io_error)?;
                    }
                    Job::Truncate { after, .. } => {
                        let start = match after {
                            Some(index) => Bound::Excluded(*index),
                            None => Bound::Unbounded,
                        };
                        log.retain_in::<u64, _>((start, Bound::Unbounded), |_, _| false)
                            .map_err(io_error)?;
                    }
                    Job::Purge {
                        up_to, key, value, ..
                    } => {
                        log.retain_in::<u64, _>(..=*up_to, |_, _| false)
                            .map_err(io_error)?;
                        meta.insert(*key, value.as_slice()).map_err(io_error)?;
                    }
                    Job::MetaLazy { .. } => {}
                }
            }
            for (key, value) in &self.lazy {
                meta.insert(*key, value.as_slice()).map_err(io_error)?;
            }
        }
        // Durability::Immediate (the default): fsync before returning.
        transaction.commit().map_err(io_error)?;
        self.lazy.clear();
        Ok(())
    }
}
