//! `kv_disk`: the `kv` plugin's commands and responses, with every entry in
//! the host's store (`clusterhost_sdk::store::Store`) instead of the
//! plugin's memory, so the data can outgrow the memory cap and a snapshot
//! of the plugin itself is a few bytes.
//!
//! Commands: `{"put":{"key":K,"value":V}}` → `{"prev":…}`,
//! `{"delete":{"key":K}}` → `{"prev":…}`,
//! `{"cas":{"key":K,"expected":E,"value":V}}` → `{"ok":…,"current":…}`,
//! `"migrate"` → `{"pending":N}` (one migration step and nothing else).
//! Queries: `{"get":{"key":K}}` → `{"value":…}`,
//! `{"scan":{"prefix":P,"limit":N}}` → `{"items":[[K,V],…]}`,
//! `"migration"` → `{"pending":N,"stored":M}`,
//! `"plugin_version"` → `"kv_disk/2"`.
//!
//! **Deploy `kv → kv_disk`.** `restore` receives kv's snapshot and keeps its
//! pairs in memory as pending ([`pending`]); every command first moves the
//! next few of them into the store, so the migration spreads over many
//! small entries. Reads see the store, then the pending pairs; a command
//! that writes or deletes a key takes it out of the pending pairs, so it
//! wins over the old value. The snapshot carries what is still pending
//! ([`snapshot`]), so a node that restarts or joins mid-migration goes on
//! exactly as the others. An idle cluster finishes with `"migrate"`
//! commands until one answers `{"pending":0}`.

pub mod pending;
pub mod snapshot;

use clusterhost_sdk::scan::ScanLimits;
use clusterhost_sdk::store::Store;
use clusterhost_sdk::{Entry, StateMachine};
use pending::Pending;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Items a scan returns when the request names no limit (as `kv`).
pub const SCAN_LIMIT_DEFAULT: usize = 100;
/// Most items one scan may ask for (as `kv`).
pub const SCAN_LIMIT_MAX: usize = 1_000;
const SCAN_LIMITS: ScanLimits = ScanLimits::new(SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX);

/// What `plugin_version` answers.
pub const PLUGIN_VERSION: &str = "kv_disk/2";

/// The in-memory part: only the pairs of a migration still in progress;
/// everything else is in the store.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KvDisk {
    pending: Pending,
}

/// A command, as `kv`'s, plus `migrate`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    Cas {
        key: String,
        #[serde(default)]
        expected: Option<String>,
        value: String,
    },
    /// Only the migration step every command makes.
    Migrate,
}

/// A query, as `kv`'s, plus `migration`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Query {
    Get {
        key: String,
    },
    Scan {
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// How far a migration is.
    Migration,
    PluginVersion,
}

/// What a command answers, as `kv`'s, plus `migrate`'s.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Previous { prev: Option<String> },
    Swapped { ok: bool, current: Option<String> },
    Migrated { pending: usize },
}

/// What a query answers, as `kv`'s, plus `migration`'s.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum QueryResponse {
    Value { value: Option<String> },
    Items { items: Vec<(String, String)> },
    Migration { pending: usize, stored: u64 },
    PluginVersion(&'static str),
}

fn text(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| "the store holds a value that is not UTF-8".to_string())
}

/// Write `value` under `key`; refused (with nothing written) when the store
/// refuses its size.
fn put(key: &str, value: &str) -> Result<(), String> {
    Store
        .put(key.as_bytes(), value.as_bytes())
        .map_err(|error| format!("cannot store {key:?}: {error}"))
}

impl KvDisk {
    /// The value under `key`: the store's, else a pending one. Only this
    /// plugin writes the store, always UTF-8.
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        match Store.get(key.as_bytes()) {
            Some(bytes) => text(bytes).map(Some),
            None => Ok(self.pending.get(key).cloned()),
        }
    }

    /// Set `key`, which then no longer migrates. The pending value is
    /// dropped only once the store took the new one.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        put(key, value)?;
        self.pending.forget(key);
        Ok(())
    }

    /// Up to `limit` entries whose key starts with `prefix`, in key order:
    /// the store's and the pending ones merged, the store's winning.
    fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<(String, String)>, String> {
        let stored = scan_store(prefix, limit)?;
        if self.pending.is_empty() {
            return Ok(stored);
        }
        let pending = self.pending.prefixed(prefix, limit);
        Ok(merge(stored, pending, limit))
    }
}

impl StateMachine for KvDisk {
    type Command = Command;
    type Response = Response;
    type Query = Query;
    type QueryResponse = QueryResponse;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Response, String> {
        // Every command moves the migration on, so a busy cluster finishes
        // it without anyone asking.
        self.pending.step()?;
        Ok(match command {
            Command::Put { key, value } => {
                let prev = self.get(&key)?;
                self.set(&key, &value)?;
                Response::Previous { prev }
            }
            Command::Delete { key } => {
                let prev = self.get(&key)?;
                Store.delete(key.as_bytes());
                self.pending.forget(&key);
                Response::Previous { prev }
            }
            Command::Cas {
                key,
                expected,
                value,
            } => {
                let current = self.get(&key)?;
                let ok = current == expected;
                if ok {
                    self.set(&key, &value)?;
                }
                Response::Swapped {
                    ok,
                    current: if ok { Some(value) } else { current },
                }
            }
            Command::Migrate => Response::Migrated {
                pending: self.pending.len(),
            },
        })
    }

    fn query(&self, query: Query) -> Result<QueryResponse, String> {
        match query {
            Query::Get { key } => Ok(QueryResponse::Value {
                value: self.get(&key)?,
            }),
            Query::Scan { prefix, limit } => {
                let limit = SCAN_LIMITS.resolve(limit)?;
                Ok(QueryResponse::Items {
                    items: self.scan(&prefix, limit)?,
                })
            }
            Query::Migration => Ok(QueryResponse::Migration {
                pending: self.pending.len(),
                stored: Store.count(),
            }),
            Query::PluginVersion => Ok(QueryResponse::PluginVersion(PLUGIN_VERSION)),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(self.pending.pairs())
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        let pending = Pending::new(snapshot::decode(snapshot)?)?;
        Ok(KvDisk { pending })
    }
}

/// Up to `limit` store entries whose key starts with `prefix`, in key
/// order, gathered over as many store pages as that takes.
fn scan_store(prefix: &str, limit: usize) -> Result<Vec<(String, String)>, String> {
    let mut items = Vec::new();
    let mut start = prefix.as_bytes().to_vec();
    // Every page holds at least one entry, so `limit` pages always suffice.
    for _ in 0..=limit {
        let wanted = u32::try_from(limit - items.len()).unwrap_or(u32::MAX);
        if wanted == 0 {
            break;
        }
        let page = Store.scan_prefix(prefix.as_bytes(), &start, wanted);
        for (key, value) in page.entries {
            items.push((text(key)?, text(value)?));
        }
        match page.next {
            Some(next) => start = next,
            None => break,
        }
    }
    Ok(items)
}

/// The first `limit` of two key-ordered lists merged; on an equal key the
/// `first`'s entry wins and the `second`'s is dropped.
fn merge(
    first: Vec<(String, String)>,
    second: Vec<(String, String)>,
    limit: usize,
) -> Vec<(String, String)> {
    let mut merged = Vec::with_capacity(limit.min(first.len() + second.len()));
    let mut first = first.into_iter().peekable();
    let mut second = second.into_iter().peekable();
    while merged.len() < limit {
        let order = match (first.peek(), second.peek()) {
            (Some(a), Some(b)) => a.0.cmp(&b.0),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        if order == Ordering::Equal {
            second.next();
        }
        let next = if order == Ordering::Greater {
            second.next()
        } else {
            first.next()
        };
        merged.extend(next);
    }
    merged
}

clusterhost_sdk::export_state_machine!(KvDisk);

#[cfg(test)]
mod migration_tests;

#[cfg(test)]
mod tests {
    //! Goal: kv_disk answers exactly as kv does, keeps nothing but the store,
    //! and a refused write leaves the store as it was.
    use super::*;
    use clusterhost_sdk::testing::Harness;
    use serde_json::json;

    fn put(kv: &mut Harness<KvDisk>, key: &str, value: &str) -> serde_json::Value {
        kv.apply(&json!({"put": {"key": key, "value": value}}))
            .unwrap()
    }

    #[test]
    fn put_get_delete_and_cas_answer_as_kv() {
        let mut kv = Harness::<KvDisk>::new();
        assert_eq!(put(&mut kv, "a", "1"), json!({"prev": null}));
        assert_eq!(put(&mut kv, "a", "2"), json!({"prev": "1"}));
        assert_eq!(
            kv.query(&json!({"get": {"key": "a"}})),
            Ok(json!({"value": "2"}))
        );
        assert_eq!(
            kv.apply(&json!({"delete": {"key": "a"}})),
            Ok(json!({"prev": "2"}))
        );
        assert_eq!(
            kv.query(&json!({"get": {"key": "a"}})),
            Ok(json!({"value": null}))
        );
        let create = json!({"cas": {"key": "k", "expected": null, "value": "v1"}});
        assert_eq!(kv.apply(&create), Ok(json!({"ok": true, "current": "v1"})));
        assert_eq!(kv.apply(&create), Ok(json!({"ok": false, "current": "v1"})));
        let right = json!({"cas": {"key": "k", "expected": "v1", "value": "v2"}});
        assert_eq!(kv.apply(&right), Ok(json!({"ok": true, "current": "v2"})));
    }

    #[test]
    fn scans_are_ordered_prefixed_and_limited_as_kv() {
        let mut kv = Harness::<KvDisk>::new();
        for key in ["b/2", "a", "b/1", "b", "c", "b/3"] {
            put(&mut kv, key, &key.to_uppercase());
        }
        assert_eq!(
            kv.query(&json!({"scan": {"prefix": "b/"}})),
            Ok(json!({"items": [["b/1", "B/1"], ["b/2", "B/2"], ["b/3", "B/3"]]}))
        );
        assert_eq!(
            kv.query(&json!({"scan": {"prefix": "b", "limit": 2}})),
            Ok(json!({"items": [["b", "B"], ["b/1", "B/1"]]}))
        );
        let error = kv
            .query(&json!({"scan": {"limit": SCAN_LIMIT_MAX + 1}}))
            .unwrap_err();
        assert!(error.contains("exceeds the maximum"), "{error}");
        for number in 0..SCAN_LIMIT_DEFAULT + 5 {
            put(&mut kv, &format!("n{number:05}"), "x");
        }
        let page = kv.query(&json!({"scan": {"prefix": "n"}})).unwrap();
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(SCAN_LIMIT_DEFAULT)
        );
    }

    #[test]
    fn the_state_is_all_in_the_store() {
        let mut kv = Harness::<KvDisk>::new();
        put(&mut kv, "a", "1");
        assert_eq!(kv.store_contents().len(), 1);
        kv.assert_snapshot_roundtrip_with_queries(&[json!({"get": {"key": "a"}})]);
    }

    #[test]
    fn an_oversized_value_is_refused_and_writes_nothing() {
        let mut kv = Harness::<KvDisk>::new();
        put(&mut kv, "a", "1");
        let huge = "x".repeat(clusterhost_sdk::store::VALUE_BYTES_MAX + 1);
        let error = kv
            .apply(&json!({"put": {"key": "a", "value": huge}}))
            .unwrap_err();
        assert!(error.contains("value longer"), "{error}");
        assert_eq!(
            kv.query(&json!({"get": {"key": "a"}})),
            Ok(json!({"value": "1"}))
        );
    }
}
