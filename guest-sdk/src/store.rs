//! The host's ordered key-value store, as a plugin sees it: [`Store`].
//!
//! The store is replicated with the log and kept on disk by the host, so a
//! plugin's state can outgrow its memory. Keys and values are bytes; keys
//! sort in byte order. The contract is the `store` interface of
//! `wit/fsm.wit`; in short:
//!
//! - In `apply` the store is read-write. The entry's writes are kept when the
//!   call returns, `Ok` or `Err` alike (as with in-memory state, changes made
//!   before `Err` stay: validate first), and discarded entirely when the call
//!   traps (a panic, out of fuel, out of memory).
//! - In `query` it is read-only: a `put` or `delete` traps.
//! - In `snapshot` and `restore` it is not available: the host snapshots the
//!   store itself, and the plugin's snapshot carries only its in-memory part.
//! - Every call costs fuel by operation and by bytes, deterministically.
//!
//! ```
//! use clusterhost_sdk::store::Store;
//! use clusterhost_sdk::testing::Harness;
//! use clusterhost_sdk::{Entry, RawStateMachine};
//!
//! /// Stores each command under its entry index.
//! #[derive(Default)]
//! struct Journal;
//!
//! impl RawStateMachine for Journal {
//!     fn apply(&mut self, entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String> {
//!         Store.put(&entry.index.to_be_bytes(), command).map_err(|error| error.to_string())?;
//!         Ok(Store.count().to_string().into_bytes())
//!     }
//!     fn query(&self, key: &[u8]) -> Result<Vec<u8>, String> {
//!         Store.get(key).ok_or_else(|| "no such entry".to_string())
//!     }
//!     fn snapshot(&self) -> Vec<u8> { Vec::new() }
//!     fn restore(_: &[u8]) -> Result<Self, String> { Ok(Journal) }
//! }
//!
//! let mut harness = Harness::<Journal>::new();
//! assert_eq!(harness.apply_raw(b"first"), Ok(b"1".to_vec()));
//! assert_eq!(harness.query_raw(&1u64.to_be_bytes()), Ok(b"first".to_vec()));
//! ```
//!
//! Natively (`cargo test`) the calls go to the in-memory store of
//! [`testing::Harness`](crate::testing::Harness), with the same semantics
//! (fuel is not counted); outside a harness call they panic.

use std::fmt;

/// Longest key, in bytes. The host's limit, part of the contract.
pub const KEY_BYTES_MAX: usize = 4096;
/// Longest value, in bytes. The host's limit, part of the contract.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Most entries one [`Store::scan`] returns; a larger limit counts as this.
pub const SCAN_ENTRIES_MAX: u32 = 1024;
/// Key and value bytes one scan returns at most (it always returns at least
/// one entry when the range holds one).
pub const SCAN_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Why a write was refused. Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The key is longer than [`KEY_BYTES_MAX`].
    KeyTooLarge,
    /// The value is longer than [`VALUE_BYTES_MAX`].
    ValueTooLarge,
}

impl fmt::Display for StoreError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::KeyTooLarge => write!(formatter, "key longer than {KEY_BYTES_MAX} bytes"),
            StoreError::ValueTooLarge => {
                write!(formatter, "value longer than {VALUE_BYTES_MAX} bytes")
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// One page of a [`Store::scan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Keys and values in key order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where to continue (the next `start`), when the page stopped at the
    /// entry or byte limit before the end of the range.
    pub next: Option<Vec<u8>>,
}

/// The handle to the host's store. It carries nothing: every plugin
/// instance has exactly one store, so `Store` can be used anywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Store;

impl Store {
    /// The value under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        backend::get(key)
    }

    /// Set `key` to `value`. Panics (traps) in `query`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        backend::put(key, value)
    }

    /// Remove `key`; whether it was there. Panics (traps) in `query`.
    pub fn delete(&self, key: &[u8]) -> bool {
        backend::delete(key)
    }

    /// Entries with `start <= key < end` (`None`: to the last key) in key
    /// order: at most `limit` (and [`SCAN_ENTRIES_MAX`]) of them, and about
    /// [`SCAN_BYTES_MAX`] bytes.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> ScanPage {
        backend::scan(start, end, limit)
    }

    /// Entries whose key starts with `prefix`, one page from `start` (pass
    /// the prefix itself for the first page).
    pub fn scan_prefix(&self, prefix: &[u8], start: &[u8], limit: u32) -> ScanPage {
        let start = if start < prefix { prefix } else { start };
        let end = prefix_end(prefix);
        backend::scan(start, end.as_deref(), limit)
    }

    /// How many keys the store holds.
    pub fn count(&self) -> u64 {
        backend::count()
    }
}

/// The first key after every key that starts with `prefix`; `None` when no
/// such key exists (the prefix is empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The write checks the host makes, so the native store refuses the same.
pub(crate) fn check_write(key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    if key.len() > KEY_BYTES_MAX {
        return Err(StoreError::KeyTooLarge);
    }
    if value.len() > VALUE_BYTES_MAX {
        return Err(StoreError::ValueTooLarge);
    }
    Ok(())
}

#[cfg(target_arch = "wasm32")]
mod backend {
    //! The component import.
    use super::{ScanPage, StoreError};
    use crate::bindings::clusterhost::fsm::store as host;

    pub fn get(key: &[u8]) -> Option<Vec<u8>> {
        host::get(key)
    }

    pub fn put(key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        host::put(key, value).map_err(|error| match error {
            host::StoreError::KeyTooLarge => StoreError::KeyTooLarge,
            host::StoreError::ValueTooLarge => StoreError::ValueTooLarge,
        })
    }

    pub fn delete(key: &[u8]) -> bool {
        host::delete(key)
    }

    pub fn scan(start: &[u8], end: Option<&[u8]>, limit: u32) -> ScanPage {
        let page = host::scan(start, end, limit);
        ScanPage {
            entries: page
                .entries
                .into_iter()
                .map(|entry| (entry.key, entry.value))
                .collect(),
            next: page.next,
        }
    }

    pub fn count() -> u64 {
        host::count()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod backend {
    //! The harness's in-memory store, for native tests.
    use super::{ScanPage, StoreError};
    use crate::testing::memory_store::with_call;

    pub fn get(key: &[u8]) -> Option<Vec<u8>> {
        with_call(|call| call.get(key))
    }

    pub fn put(key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        with_call(|call| call.put(key, value))
    }

    pub fn delete(key: &[u8]) -> bool {
        with_call(|call| call.delete(key))
    }

    pub fn scan(start: &[u8], end: Option<&[u8]>, limit: u32) -> ScanPage {
        with_call(|call| call.scan(start, end, limit))
    }

    pub fn count() -> u64 {
        with_call(|call| call.count())
    }
}

#[cfg(test)]
mod tests {
    //! Goal: a plugin using `Store` under the harness keeps an entry's
    //! writes on `Ok` and `Err`, loses all of them on a panic, cannot write
    //! from a query, and pages prefix scans; the prefix bound is right.
    use super::{Store, prefix_end};
    use crate::testing::Harness;
    use crate::{Entry, RawStateMachine};

    /// Commands: `put k v`, `fail k v` (writes, then returns `Err`),
    /// `panic k v` (writes, then panics). Query `k` reads; query `!k` writes.
    #[derive(Default)]
    struct Plugin;

    impl RawStateMachine for Plugin {
        fn apply(&mut self, _entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String> {
            let text = std::str::from_utf8(command).map_err(|error| error.to_string())?;
            let mut words = text.split(' ');
            let (verb, key, value) = (words.next(), words.next(), words.next());
            let (Some(verb), Some(key), Some(value)) = (verb, key, value) else {
                return Err("usage: verb key value".into());
            };
            Store
                .put(key.as_bytes(), value.as_bytes())
                .map_err(|error| error.to_string())?;
            match verb {
                "put" => Ok(Store.count().to_string().into_bytes()),
                "fail" => Err("failed after writing".into()),
                _ => panic!("trap after writing"),
            }
        }
        fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
            if let Some(key) = request.strip_prefix(b"!") {
                Store
                    .put(key, b"from query")
                    .map_err(|error| error.to_string())?;
            }
            Ok(Store.get(request).unwrap_or_default())
        }
        fn snapshot(&self) -> Vec<u8> {
            Vec::new()
        }
        fn restore(_snapshot: &[u8]) -> Result<Self, String> {
            Ok(Plugin)
        }
    }

    #[test]
    fn entry_writes_stay_on_ok_and_err_and_vanish_on_a_trap() {
        let mut harness = Harness::<Plugin>::new();
        assert_eq!(harness.apply_raw(b"put a 1"), Ok(b"1".to_vec()));
        assert!(harness.apply_raw(b"fail b 2").is_err());
        assert_eq!(harness.query_raw(b"b"), Ok(b"2".to_vec()));
        let before = harness.store_contents();
        let trapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            harness.apply_raw(b"panic a changed")
        }));
        assert!(trapped.is_err());
        assert_eq!(harness.store_contents(), before);
        assert_eq!(harness.query_raw(b"a"), Ok(b"1".to_vec()));
    }

    #[test]
    #[should_panic(expected = "read-only")]
    fn a_write_from_a_query_traps() {
        let harness = Harness::<Plugin>::new();
        let _ = harness.query_raw(b"!a");
    }

    #[test]
    fn prefix_scans_page_through_one_prefix() {
        let mut harness = Harness::<Plugin>::new();
        for key in ["p/1", "p/2", "p/3", "q/1"] {
            harness
                .apply_raw(format!("put {key} v").as_bytes())
                .unwrap();
        }
        let contents = harness.store_contents();
        let mut store = contents.clone();
        let (first, second) = crate::testing::memory_store::run_call(
            &mut store,
            crate::testing::memory_store::Access::ReadOnly,
            || {
                let first = Store.scan_prefix(b"p/", b"", 2);
                let next = first.next.clone().expect("a third key remains");
                (first, Store.scan_prefix(b"p/", &next, 2))
            },
        );
        let keys = |page: &super::ScanPage| -> Vec<Vec<u8>> {
            page.entries.iter().map(|(key, _)| key.clone()).collect()
        };
        assert_eq!(keys(&first), [b"p/1".to_vec(), b"p/2".to_vec()]);
        assert_eq!(keys(&second), [b"p/3".to_vec()]);
        assert_eq!(second.next, None);
        assert_eq!(store, contents);
    }

    #[test]
    fn prefix_end_is_the_next_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
