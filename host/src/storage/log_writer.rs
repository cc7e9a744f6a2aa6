//! The one thread that writes the Raft log: group commit.
//!
//! openraft hands entries over and goes on — on a leader, replicating them
//! to followers while they are being made durable here. The writer takes
//! every job queued while its previous transaction was being fsynced and
//! commits them together, so one fsync covers many appends, then reports
//! each append durable through its callback, in order. Until then the
//! entries are served from the unflushed tail ([`Unflushed`]).
//!
//! Votes, truncations and purges go through the same queue, so every change
//! reaches disk in the order openraft made it; their callers wait for the
//! fsync. The commit marker rides along with the next durable transaction
//! instead of costing one of its own: losing it only means re-learning the
//! commit index from the leader after a crash.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::IOFlushed;
use redb::{Database, TableDefinition};

use super::log_store::encode;
use crate::consensus::types::{Entry, LogId, TypeConfig, Vote};
use crate::limits::LOG_GROUP_COMMIT_JOBS_MAX;

/// Entries by index, postcard-encoded.
pub(super) const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Small named values: vote, commit marker, last purged log id.
pub(super) const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(super) const VOTE_KEY: &str = "vote";
pub(super) const COMMITTED_KEY: &str = "committed";
pub(super) const LAST_PURGED_KEY: &str = "last_purged";

/// Where a waiting caller learns that its change is on disk.
pub(super) type Done = tokio::sync::oneshot::Sender<io::Result<()>>;

/// One change to the log, in the order openraft asked for it.
pub(super) enum Job {
    /// Entries already visible in the unflushed tail.
    Append {
        entries: Vec<Entry>,
        callback: IOFlushed<TypeConfig>,
    },
    /// A new commit marker (written with the next durable transaction).
    Committed(Option<LogId>),
    Vote {
        vote: Vote,
        done: Done,
    },
    /// Remove every entry after `after` (everything when `None`).
    Truncate {
        after: Option<u64>,
        done: Done,
    },
    /// Remove every entry up to and including `up_to`, remembering it.
    Purge {
        up_to: LogId,
        done: Done,
    },
}

/// Entries handed to the writer but not yet on disk, by index. Readers look
/// here first: an entry leaves the tail only after the transaction holding
/// it has committed, so a reader always finds it in one place or the other.
#[derive(Clone, Default)]
pub(super) struct Unflushed(Arc<Mutex<BTreeMap<u64, Entry>>>);

impl Unflushed {
    pub(super) fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic while holding this lock cannot leave the map half-changed
        // (every change is one insert or remove), so a poisoned lock is safe.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drop entries after `after` (a truncation: newer appends replace them).
    pub(super) fn truncate_after(&self, after: Option<u64>) {
        let mut entries = self.lock();
        match after {
            Some(index) => drop(entries.split_off(&(index + 1))),
            None => entries.clear(),
        }
    }

    /// Forget entries that are now on disk — unless a later append has
    /// already replaced them after a truncation.
    fn release(&self, written: &[Entry]) {
        let mut entries = self.lock();
        for entry in written {
            if entries
                .get(&entry.log_id.index)
                .is_some_and(|held| held.log_id == entry.log_id)
            {
                entries.remove(&entry.log_id.index);
            }
        }
    }
}

/// Run the writer until every sender is gone, then persist the last commit
/// marker so a graceful stop re-applies everything on restart.
pub(super) fn run(database: Arc<Database>, unflushed: Unflushed, jobs: Receiver<Job>) {
    let mut committed: Option<Option<LogId>> = None;
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < LOG_GROUP_COMMIT_JOBS_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        commit_group(&database, &unflushed, group, &mut committed);
    }
    if let Some(marker) = committed
        && let Err(error) = write(&database, &[], Some(marker))
    {
        tracing::warn!("could not save the commit marker at shutdown: {error}");
    }
}

fn commit_group(
    database: &Database,
    unflushed: &Unflushed,
    group: Vec<Job>,
    committed: &mut Option<Option<LogId>>,
) {
    let mut durable = Vec::with_capacity(group.len());
    for job in group {
        match job {
            Job::Committed(marker) => *committed = Some(marker),
            other => durable.push(other),
        }
    }
    if durable.is_empty() {
        return;
    }
    let result = write(database, &durable, committed.take());
    for job in durable {
        let outcome = match &result {
            Ok(()) => Ok(()),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        };
        match job {
            Job::Append { entries, callback } => {
                if outcome.is_ok() {
                    unflushed.release(&entries);
                }
                callback.io_completed(outcome);
            }
            Job::Vote { done, .. } | Job::Truncate { done, .. } | Job::Purge { done, .. } => {
                // The caller may have given up waiting; the change stands.
                let _ = done.send(outcome);
            }
            Job::Committed(_) => {}
        }
    }
}

/// One transaction for the whole group, fsynced on commit.
fn write(database: &Database, jobs: &[Job], committed: Option<Option<LogId>>) -> io::Result<()> {
    let transaction = database.begin_write().map_err(io::Error::other)?;
    {
        let mut log = transaction
            .open_table(LOG_TABLE)
            .map_err(io::Error::other)?;
        let mut meta = transaction
            .open_table(META_TABLE)
            .map_err(io::Error::other)?;
        for job in jobs {
            match job {
                Job::Append { entries, .. } => {
                    for entry in entries {
                        log.insert(entry.log_id.index, encode(entry)?.as_slice())
                            .map_err(io::Error::other)?;
                    }
                }
                Job::Vote { vote, .. } => {
                    meta.insert(VOTE_KEY, encode(vote)?.as_slice())
                        .map_err(io::Error::other)?;
                }
                Job::Truncate { after, .. } => {
                    let start = match after {
                        Some(index) => Bound::Excluded(*index),
                        None => Bound::Unbounded,
                    };
                    log.retain_in::<u64, _>((start, Bound::Unbounded), |_, _| false)
                        .map_err(io::Error::other)?;
                }
                Job::Purge { up_to, .. } => {
                    log.retain_in::<u64, _>(..=up_to.index, |_, _| false)
                        .map_err(io::Error::other)?;
                    meta.insert(LAST_PURGED_KEY, encode(up_to)?.as_slice())
                        .map_err(io::Error::other)?;
                }
                Job::Committed(_) => {}
            }
        }
        if let Some(marker) = committed {
            meta.insert(COMMITTED_KEY, encode(&marker)?.as_slice())
                .map_err(io::Error::other)?;
        }
    }
    // Durability::Immediate (the default): fsync before returning.
    transaction.commit().map_err(io::Error::other)
}
