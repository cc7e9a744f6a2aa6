//! The plugin's ordered key-value store (the `store` interface of
//! `wit/fsm.wit`), backed by a redb state file in the node's data
//! directory.
//!
//! # Design
//!
//! **Layers.** Each plugin instance reads the store through a
//! [`StoreView`]: a consistent redb read snapshot (the base), the writes its
//! own calls made since that base (the layer), and the writes of the call in
//! progress (pending). A call that completes (`ok`, `err`, or an oversized
//! output) keeps its pending writes in the layer; a call that traps, runs
//! out of fuel or memory drops them, so a failed entry leaves no trace.
//!
//! **The applier writes through.** After each entry the applier's layer is
//! committed to the state file in one transaction and its base moved to the
//! new commit, so the file always holds the store after the last applied
//! entry. The entry's writes are hashed ([`writes_digest`]) into the applied
//! digest, so replicas whose stores differ have different digests.
//!
//! **Replays see the past.** The runtime's replay journal (see
//! [`super::runtime`]) keeps, with its base snapshot of the plugin, a redb
//! read snapshot of the store at the same position. The reader and every
//! rebuild replay from there with their own layer, so each replayed entry
//! sees the store exactly as the applier saw it; a replay never writes the
//! file. Queries run on the reader, caught up: base plus layer is the store
//! after the last applied entry, read-only.
//!
//! **Snapshots and restart.** The store is part of the plugin's state: for a
//! plugin that imports the store, the state in a Raft snapshot is an
//! [`envelope`] holding the plugin's own `snapshot` (its in-memory part) and
//! every key and value of the store at the same position, read from one
//! redb read transaction. Installing a snapshot (at start, from the leader,
//! or the handover of a deploy) creates a fresh state file from the
//! envelope; the old one stays in use until the new runtime has restored,
//! and is deleted when dropped. The state file is never reopened: on start
//! a node deletes any left behind and rebuilds the store from its newest
//! snapshot, then replays the log after it, so no entry's writes can be
//! applied twice or lost whatever point a crash hit. The store's content is
//! thus strictly a function of the snapshot and the log, like the plugin's
//! memory.
//!
//! That makes this first version sound but not yet cheap: a snapshot carries
//! the whole store in memory, and a restart re-reads it. Making the file
//! itself the durable copy (the applied index and digest committed with each
//! batch's writes, so a restart resumes at the stored index) and streaming
//! the store in snapshot chunks are the next steps.
//!
//! **Failures.** An I/O error of the state file under a plugin call is not a
//! result of the entry, so it never becomes a (replicated) trap: the worker
//! stops, and the node with it.

pub mod durable;
pub mod envelope;
pub mod file;
pub mod link;
pub mod view;

use sha2::{Digest as _, Sha256};

pub use file::{StateFile, StoreSnapshot};
pub use view::{Access, StoreView, Writes};

/// One key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The state file could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// redb or the file system failed.
    #[error("plugin store I/O: {0}")]
    Io(String),
    /// A snapshot's store part does not decode.
    #[error("malformed store snapshot: {0}")]
    Malformed(String),
}

impl StoreError {
    fn from_redb(error: impl Into<redb::Error>) -> Self {
        StoreError::Io(error.into().to_string())
    }
}

/// The key and value bytes of `writes`, as they are held in memory.
pub fn writes_bytes(writes: &Writes) -> usize {
    writes
        .iter()
        .map(|(key, value)| key.len() + value.as_ref().map_or(0, Vec::len))
        .fold(0, usize::saturating_add)
}

/// The sha256 of an entry's writes in key order (`None` for none), folded
/// into the applied digest.
pub fn writes_digest(writes: &Writes) -> Option<[u8; 32]> {
    if writes.is_empty() {
        return None;
    }
    let mut hasher = Sha256::new();
    for (key, value) in writes {
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key);
        match value {
            Some(value) => {
                hasher.update(b"P");
                hasher.update((value.len() as u64).to_le_bytes());
                hasher.update(value);
            }
            None => hasher.update(b"D"),
        }
    }
    Some(hasher.finalize().into())
}
