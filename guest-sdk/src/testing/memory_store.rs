//! The in-memory store behind [`Store`](crate::store::Store) in native
//! tests, with the host's semantics: writes in `apply` only, kept when the
//! call returns and rolled back when it panics (the native trap); reads see
//! the call's own writes; the same limits and scan paging.
//!
//! During a harness call the store is moved into a thread-local, so the
//! plugin's `Store` calls find it without a handle, and moved back after.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::store::{SCAN_BYTES_MAX, SCAN_ENTRIES_MAX, ScanPage, StoreError, check_write};

/// The committed contents of a harness's store.
pub type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

/// What a call may do with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `apply`: reads and writes.
    ReadWrite,
    /// `query`: reads; a write panics.
    ReadOnly,
}

/// The store during one call, with what it needs to undo the call.
pub(crate) struct Call {
    contents: Contents,
    access: Access,
    /// Before-images of every key the call wrote, oldest first.
    undo: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

thread_local! {
    static CURRENT: RefCell<Option<Call>> = const { RefCell::new(None) };
}

/// Run `f` on the store of the call in progress; panics outside one.
pub(crate) fn with_call<R>(f: impl FnOnce(&mut Call) -> R) -> R {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let call = current.as_mut().expect(
            "the store is only available inside apply or query \
             (natively: a call made by testing::Harness)",
        );
        f(call)
    })
}

/// Run `body` with `contents` as the store; returns the result and the
/// contents after it. If `body` panics, the call's writes are undone and the
/// contents are put back into `*slot` before the panic goes on.
pub(crate) fn run_call<R>(slot: &mut Contents, access: Access, body: impl FnOnce() -> R) -> R {
    let contents = std::mem::take(slot);
    CURRENT.with(|current| {
        let previous = current.borrow_mut().replace(Call {
            contents,
            access,
            undo: Vec::new(),
        });
        assert!(previous.is_none(), "harness calls do not nest");
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    let call = CURRENT
        .with(|current| current.borrow_mut().take())
        .expect("the call's store is still in place");
    match result {
        Ok(value) => {
            *slot = call.contents;
            value
        }
        Err(panic) => {
            *slot = call.rolled_back();
            std::panic::resume_unwind(panic)
        }
    }
}

impl Call {
    pub(crate) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.contents.get(key).cloned()
    }

    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.check_writable("put");
        check_write(key, value)?;
        let before = self.contents.insert(key.to_vec(), value.to_vec());
        self.undo.push((key.to_vec(), before));
        Ok(())
    }

    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        self.check_writable("delete");
        let before = self.contents.remove(key);
        let existed = before.is_some();
        self.undo.push((key.to_vec(), before));
        existed
    }

    pub(crate) fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> ScanPage {
        let end = end.map_or(Bound::Unbounded, Bound::Excluded);
        let range = (Bound::Included(start), end);
        if matches!(range.1, Bound::Excluded(end) if end <= start) {
            return ScanPage::default();
        }
        page(
            self.contents
                .range::<[u8], _>(range)
                .map(|(key, value)| (key.as_slice(), value.as_slice())),
            limit,
        )
    }

    pub(crate) fn count(&self) -> u64 {
        self.contents.len() as u64
    }

    fn check_writable(&self, operation: &str) {
        assert!(
            self.access == Access::ReadWrite,
            "store {operation} from query: the store is read-only outside apply"
        );
    }

    /// The contents as they were before the call.
    fn rolled_back(mut self) -> Contents {
        while let Some((key, before)) = self.undo.pop() {
            match before {
                Some(value) => self.contents.insert(key, value),
                None => self.contents.remove(&key),
            };
        }
        self.contents
    }
}

/// One scan page from entries in key order: at most `limit` (capped at
/// [`SCAN_ENTRIES_MAX`]) entries and [`SCAN_BYTES_MAX`] bytes, at least one;
/// `next` names the first entry left out. The host pages the same way.
pub fn page<'a>(entries: impl Iterator<Item = (&'a [u8], &'a [u8])>, limit: u32) -> ScanPage {
    let limit = limit.min(SCAN_ENTRIES_MAX) as usize;
    let mut page = ScanPage::default();
    let mut bytes = 0usize;
    for (key, value) in entries {
        let size = key.len() + value.len();
        let full = page.entries.len() >= limit
            || (!page.entries.is_empty() && bytes + size > SCAN_BYTES_MAX);
        if full {
            page.next = Some(key.to_vec());
            break;
        }
        bytes += size;
        page.entries.push((key.to_vec(), value.to_vec()));
    }
    page
}

#[cfg(test)]
mod tests {
    //! Goal: the native store keeps a call's writes, rolls them back when
    //! the call panics, refuses writes in a query, and pages scans.
    use super::*;

    fn contents(pairs: &[(&str, &str)]) -> Contents {
        pairs
            .iter()
            .map(|(key, value)| (key.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn writes_stay_when_the_call_returns() {
        let mut store = contents(&[("a", "1")]);
        run_call(&mut store, Access::ReadWrite, || {
            with_call(|call| {
                call.put(b"b", b"2").unwrap();
                assert!(call.delete(b"a"));
                assert_eq!(call.get(b"b"), Some(b"2".to_vec()));
            })
        });
        assert_eq!(store, contents(&[("b", "2")]));
    }

    #[test]
    fn a_panicking_call_leaves_no_trace() {
        let mut store = contents(&[("a", "1")]);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_call(&mut store, Access::ReadWrite, || {
                with_call(|call| {
                    call.put(b"a", b"changed").unwrap();
                    call.put(b"new", b"x").unwrap();
                    call.delete(b"a");
                });
                panic!("plugin bug");
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(store, contents(&[("a", "1")]));
    }

    #[test]
    fn a_write_in_a_query_panics_and_changes_nothing() {
        let mut store = contents(&[("a", "1")]);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_call(&mut store, Access::ReadOnly, || {
                with_call(|call| call.put(b"a", b"2"))
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(store, contents(&[("a", "1")]));
    }

    #[test]
    fn oversized_keys_and_values_are_refused() {
        let mut store = Contents::new();
        let key = vec![0u8; crate::store::KEY_BYTES_MAX + 1];
        let value = vec![0u8; crate::store::VALUE_BYTES_MAX + 1];
        run_call(&mut store, Access::ReadWrite, || {
            with_call(|call| {
                assert_eq!(call.put(&key, b""), Err(StoreError::KeyTooLarge));
                assert_eq!(call.put(b"k", &value), Err(StoreError::ValueTooLarge));
            })
        });
        assert!(store.is_empty());
    }

    #[test]
    fn scans_page_by_limit_and_by_bytes() {
        let mut store = contents(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
        let page = run_call(&mut store, Access::ReadOnly, || {
            with_call(|call| call.scan(b"b", Some(b"d"), 1))
        });
        assert_eq!(page.entries, [(b"b".to_vec(), b"2".to_vec())]);
        assert_eq!(page.next, Some(b"c".to_vec()));
        let page = run_call(&mut store, Access::ReadOnly, || {
            with_call(|call| call.scan(b"b", Some(b"d"), 10))
        });
        assert_eq!(page.entries.len(), 2);
        assert_eq!(page.next, None);

        let big = vec![7u8; SCAN_BYTES_MAX / 2];
        let large: Vec<(&[u8], &[u8])> = vec![(b"x", &big), (b"y", &big), (b"z", &big)];
        let page = page_of(&large, 10);
        assert_eq!(
            page.entries.len(),
            1,
            "two halves plus keys exceed the bound"
        );
        assert_eq!(page.next, Some(b"y".to_vec()));
    }

    fn page_of(entries: &[(&[u8], &[u8])], limit: u32) -> ScanPage {
        page(entries.iter().copied(), limit)
    }
}
