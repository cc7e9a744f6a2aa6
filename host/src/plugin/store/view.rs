//! What one plugin instance sees of the store: a consistent base (a redb
//! read snapshot), the writes its own replay made since that base, and the
//! writes of the call in progress, read in that order of precedence.
//!
//! Every answer depends only on the logical contents, never on how they are
//! split between base and layers, so an instance replaying from an old base
//! sees exactly what the applier saw on the live store.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::ReadableTableMetadata;

use super::file::{StoreSnapshot, StoreTable};
use super::{KeyValue, StoreError, envelope};
use crate::limits::{STORE_SCAN_BYTES_MAX, STORE_SCAN_ENTRIES_MAX};

/// Writes not in the base: a value, or `None` for a removed key.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// What the call in progress may do with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No call, or `snapshot`/`restore`: every store call traps.
    Closed,
    /// `query`: reads only; a write traps.
    ReadOnly,
    /// `apply`: reads and writes.
    ReadWrite,
}

/// One page of a scan: entries in key order, and where to continue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<KeyValue>,
    pub next: Option<Vec<u8>>,
}

/// An instance's view of the store.
pub struct StoreView {
    base: Option<StoreTable>,
    base_count: u64,
    /// Writes of completed calls since the base.
    layer: Writes,
    /// Writes of the call in progress.
    pending: Writes,
    /// Key and value bytes the call in progress wrote, overwrites included.
    pending_bytes: usize,
    /// How `layer` and `pending` together changed the base.
    delta: Delta,
    /// `delta` before the call in progress.
    layer_delta: Delta,
    pub access: Access,
}

/// How writes changed a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Delta {
    /// Keys added minus keys removed.
    count: i64,
    /// Bytes the store's part of an envelope grew by (see
    /// [`envelope::entry_bytes`]).
    size: i64,
}

/// The writes a completed call kept.
pub struct KeptCall {
    pub writes: Writes,
    /// How many bytes they grew the store's part of an envelope by
    /// (negative: shrank it).
    pub size_delta: i64,
}

impl StoreView {
    /// An empty store.
    pub fn empty() -> Self {
        Self {
            base: None,
            base_count: 0,
            layer: Writes::new(),
            pending: Writes::new(),
            pending_bytes: 0,
            delta: Delta::default(),
            layer_delta: Delta::default(),
            access: Access::Closed,
        }
    }

    /// The store as of `snapshot`.
    pub fn at(snapshot: &StoreSnapshot) -> Result<Self, StoreError> {
        let table = snapshot.table()?;
        let base_count = table.len().map_err(StoreError::from_redb)?;
        Ok(Self {
            base: Some(table),
            base_count,
            ..Self::empty()
        })
    }

    /// A store in memory holding `entries` (in key order, keys unique).
    pub fn from_entries(entries: Vec<KeyValue>) -> Self {
        let delta = Delta {
            count: entries.len() as i64,
            size: entries
                .iter()
                .map(|(key, value)| envelope::entry_bytes(key.len(), value.len()) as i64)
                .sum(),
        };
        let layer: Writes = entries
            .into_iter()
            .map(|(key, value)| (key, Some(value)))
            .collect();
        Self {
            layer,
            delta,
            layer_delta: delta,
            ..Self::empty()
        }
    }

    /// Every key and value, in key order.
    pub fn all_entries(&self) -> Result<Vec<KeyValue>, StoreError> {
        let mut entries = Vec::new();
        let mut start = Vec::new();
        // Every page but the last holds at least one entry.
        loop {
            let page = self.scan(&start, None, STORE_SCAN_ENTRIES_MAX)?;
            entries.extend(page.entries);
            match page.next {
                Some(next) => start = next,
                None => return Ok(entries),
            }
        }
    }

    /// Move the base to `snapshot`, which must already hold the layer's
    /// writes (they were committed to the file): the layer is dropped.
    pub fn rebase(&mut self, snapshot: &StoreSnapshot) -> Result<(), StoreError> {
        let access = self.access;
        *self = Self::at(snapshot)?;
        self.access = access;
        Ok(())
    }

    /// The writes of completed calls since the base.
    pub fn layer(&self) -> &Writes {
        &self.layer
    }

    /// The call in progress ended without a trap: its writes stay. Returns
    /// them, to be digested, and how they changed the store's size.
    pub fn keep_call(&mut self) -> KeptCall {
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        for (key, value) in &pending {
            self.layer.insert(key.clone(), value.clone());
        }
        let size_delta = self.delta.size - self.layer_delta.size;
        self.layer_delta = self.delta;
        KeptCall {
            writes: pending,
            size_delta,
        }
    }

    /// The call in progress trapped: its writes vanish.
    pub fn drop_call(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.delta = self.layer_delta;
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.pending.get(key).or_else(|| self.layer.get(key)) {
            return Ok(value.clone());
        }
        let Some(base) = &self.base else {
            return Ok(None);
        };
        let value = base.get(key).map_err(StoreError::from_redb)?;
        Ok(value.map(|guard| guard.value().to_vec()))
    }

    /// Key and value bytes the call in progress has written so far.
    pub fn pending_write_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Write `value` (`None`: remove) under `key`; whether the key existed.
    pub fn write(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<bool, StoreError> {
        let old = self.get(key)?;
        let existed = old.is_some();
        let size = |value: Option<usize>| {
            value.map_or(0, |value| envelope::entry_bytes(key.len(), value) as i64)
        };
        self.delta.size += size(value.map(<[u8]>::len)) - size(old.as_ref().map(Vec::len));
        self.pending_bytes = self
            .pending_bytes
            .saturating_add(key.len() + value.map_or(0, <[u8]>::len));
        self.delta.count += i64::from(value.is_some()) - i64::from(existed);
        self.pending.insert(key.to_vec(), value.map(<[u8]>::to_vec));
        Ok(existed)
    }

    pub fn count(&self) -> u64 {
        self.base_count.saturating_add_signed(self.delta.count)
    }

    /// Keys in `[start, end)` in order, paged as the contract says.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Result<Page, StoreError> {
        if end.is_some_and(|end| end <= start) {
            return Ok(Page::default());
        }
        let range = (
            Bound::Included(start.to_vec()),
            end.map_or(Bound::Unbounded, |end| Bound::Excluded(end.to_vec())),
        );
        let limit = limit.min(STORE_SCAN_ENTRIES_MAX) as usize;
        let mut merged = Merge {
            pending: self.pending.range(range.clone()).peekable(),
            layer: self.layer.range(range).peekable(),
            base: match &self.base {
                Some(base) => Some(
                    base.range::<&[u8]>((
                        Bound::Included(start),
                        end.map_or(Bound::Unbounded, Bound::Excluded),
                    ))
                    .map_err(StoreError::from_redb)?
                    .peekable(),
                ),
                None => None,
            },
        };
        let mut page = Page::default();
        let mut bytes = 0usize;
        while let Some((key, value)) = merged.next_entry()? {
            let size = key.len() + value.len();
            if page.entries.len() >= limit
                || (!page.entries.is_empty() && bytes + size > STORE_SCAN_BYTES_MAX)
            {
                page.next = Some(key);
                break;
            }
            bytes += size;
            page.entries.push((key, value));
        }
        Ok(page)
    }
}

type BaseRange = std::iter::Peekable<redb::Range<'static, &'static [u8], &'static [u8]>>;
type LayerRange<'a> =
    std::iter::Peekable<std::collections::btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>>>;

/// The three sources of a scan merged in key order, the newest write of a
/// key winning and removed keys skipped.
struct Merge<'a> {
    pending: LayerRange<'a>,
    layer: LayerRange<'a>,
    base: Option<BaseRange>,
}

impl Merge<'_> {
    fn next_entry(&mut self) -> Result<Option<KeyValue>, StoreError> {
        loop {
            let base_key = match self.base.as_mut().and_then(|base| base.peek()) {
                Some(Ok((key, _))) => Some(key.value().to_vec()),
                Some(Err(_)) => {
                    let error = self.base.as_mut().and_then(Iterator::next);
                    return Err(match error {
                        Some(Err(error)) => StoreError::from_redb(error),
                        _ => StoreError::Io("store scan failed".to_string()),
                    });
                }
                None => None,
            };
            let candidates = [
                self.pending.peek().map(|(key, _)| (*key).clone()),
                self.layer.peek().map(|(key, _)| (*key).clone()),
                base_key,
            ];
            let Some(key) = candidates.iter().flatten().min().cloned() else {
                return Ok(None);
            };
            // Take `key` from every source holding it; the newest wins.
            let mut value: Option<Option<Vec<u8>>> = None;
            if self.pending.peek().is_some_and(|(next, _)| **next == key) {
                value = self.pending.next().map(|(_, value)| value.clone());
            }
            if self.layer.peek().is_some_and(|(next, _)| **next == key) {
                let layered = self.layer.next().map(|(_, value)| value.clone());
                value = value.or(layered);
            }
            if candidates[2].as_ref() == Some(&key)
                && let Some(Ok((_, stored))) = self.base.as_mut().and_then(Iterator::next)
            {
                value = value.or(Some(Some(stored.value().to_vec())));
            }
            if let Some(Some(value)) = value {
                return Ok(Some((key, value)));
            }
        }
    }
}
