//! The pairs a deploy `kv → kv_disk` handed over that are not yet in the
//! store, and the bounded steps that move them there.
//!
//! `restore` cannot write the store (the WIT makes it trap), and one entry
//! that wrote every key would be as large as the whole state. So `kv_disk`
//! keeps kv's pairs in memory as they came and moves them lazily: every
//! `apply` first moves at most [`STEP_PAIRS_MAX`] pairs (and about
//! [`STEP_BYTES_MAX`] bytes) in key order, the same on every replica. A
//! command that changes a key takes it out of here, so a key written or
//! deleted after the swap never comes back with its old value.

use clusterhost_sdk::store::{KEY_BYTES_MAX, Store, VALUE_BYTES_MAX};
use std::collections::BTreeMap;

/// Most pairs one entry moves into the store: small enough that an entry's
/// writes stay far below the host's per-call write bound, large enough that
/// a busy cluster finishes a migration of a million keys in some thousands
/// of entries.
pub const STEP_PAIRS_MAX: usize = 128;
/// Key and value bytes one entry moves at most (one pair always moves, and a
/// pair is at most one store key plus one store value).
pub const STEP_BYTES_MAX: usize = 1024 * 1024;

/// The not-yet-migrated pairs, in key order (the order they move in).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    pairs: BTreeMap<String, String>,
}

impl Pending {
    /// Take over `pairs` (kv's whole state). Refused when a pair could never
    /// go into the store: the swap then fails and kv keeps running, instead
    /// of a key that can never migrate.
    pub fn new(pairs: BTreeMap<String, String>) -> Result<Self, String> {
        if let Some((key, value)) = pairs
            .iter()
            .find(|(key, value)| key.len() > KEY_BYTES_MAX || value.len() > VALUE_BYTES_MAX)
        {
            let shown: String = key.chars().take(64).collect();
            return Err(format!(
                "kv_disk cannot take over key {shown:?} ({} key bytes, {} value bytes): the store \
                 holds keys of at most {KEY_BYTES_MAX} and values of at most {VALUE_BYTES_MAX} bytes",
                key.len(),
                value.len()
            ));
        }
        Ok(Pending { pairs })
    }

    /// How many pairs are not yet in the store.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the migration is done (or there never was one).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, in key order (what a snapshot carries).
    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.pairs
    }

    /// The old value of `key`, if it has not moved yet.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.pairs.get(key)
    }

    /// Forget `key`: a command just wrote or deleted it in the store.
    pub fn forget(&mut self, key: &str) {
        self.pairs.remove(key);
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order.
    pub fn prefixed(&self, prefix: &str, limit: usize) -> Vec<(String, String)> {
        clusterhost_sdk::scan::prefix(&self.pairs, prefix, limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Move the next pairs into the store (call only from `apply`): at most
    /// [`STEP_PAIRS_MAX`] of them and, beyond the first, no more than
    /// [`STEP_BYTES_MAX`] bytes. A key the store already holds keeps the
    /// store's value, as reads see it. How many pairs moved.
    pub fn step(&mut self) -> Result<usize, String> {
        let mut moved = 0;
        let mut bytes = 0;
        while moved < STEP_PAIRS_MAX {
            let Some((key, value)) = self.pairs.first_key_value() else {
                break;
            };
            let size = key.len() + value.len();
            if moved > 0 && bytes + size > STEP_BYTES_MAX {
                break;
            }
            if Store.get(key.as_bytes()).is_none() {
                // `new` checked the sizes, so the store takes it.
                Store
                    .put(key.as_bytes(), value.as_bytes())
                    .map_err(|error| format!("cannot migrate {key:?}: {error}"))?;
            }
            self.pairs.pop_first();
            moved += 1;
            bytes += size;
        }
        Ok(moved)
    }
}
