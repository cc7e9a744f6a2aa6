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
//! **The applier writes through, a batch at a time.** The applier's layer
//! gathers the writes of the entries the worker applies in one batch; at
//! the end of the batch, before their results are answered, the layer is
//! committed to the state file in one transaction and the applier's base
//! moved to the new commit, so between batches the file holds the store
//! after the last applied entry. Anything that reads the file or replaces
//! the applier commits first. An entry sees the same store whichever batch
//! it came in: base and layer answer alike. Each entry's own writes are
//! hashed ([`writes_digest`]) into the applied digest, so replicas whose
//! stores differ have different digests.
//!
//! **Replays see the past.** The runtime's replay journal (see
//! [`super::runtime`]) keeps, with its base snapshot of the plugin, a redb
//! read snapshot of the store at the same position. The reader and every
//! rebuild replay from there with their own layer, so each replayed entry
//! sees the store exactly as the applier saw it; a replay never writes the
//! file. Queries run on the reader, caught up: base plus layer is the store
//! after the last applied entry, read-only.
//!
//! **Snapshots.** The store is part of the plugin's state: for a plugin
//! that imports the store, the state in a Raft snapshot is an [`envelope`]
//! holding the plugin's own `snapshot` (its in-memory part) and every key
//! and value of the store at the same position, read from one redb read
//! transaction. Installing a snapshot (from the leader, the handover of a
//! deploy, or at start) fills a fresh file under a temporary name; once the
//! new runtime has restored, the file is renamed over the node's state file
//! in one step ([`StateFile::promote`]), so a crash leaves one or the other.
//!
//! **The file is the durable copy.** Entries commit to the file without
//! fsync. At a checkpoint (see `consensus::state_machine::durable`: every
//! so many entries, bytes or milliseconds, at each Raft snapshot, after an
//! install and at a clean stop) one durable commit also writes a
//! [`durable::Checkpoint`]: the applied index, the host's state and the
//! plugin's in-memory part. After `kill -9` redb reverts to the last durable
//! commit, so store and checkpoint agree at one index; a clean close makes
//! later commits durable too, which the applied index written with every
//! commit exposes. On start the node resumes from the file when its
//! checkpoint matches its store, no snapshot is newer and the log holds
//! every entry after it; openraft then replays only those. Otherwise the
//! file is deleted and the store rebuilt from the newest snapshot, then the
//! log replayed, as before: no entry's writes are applied twice or lost
//! whatever point a crash hit.
//!
//! What remains: a snapshot carries the whole store in memory; streaming it
//! from a read transaction in chunks is the next step.
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

pub use file::{STATE_FILE_NAME, SideRecord, StateFile, StoreSnapshot};
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
    /// The node's state file cannot be resumed from.
    #[error("{0}")]
    NotResumable(String),
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
