//! Version 2 of the replicated key-value store: `kv` plus per-key versions,
//! and the worked example of a plugin upgrade (see the SDK's README, "Upgrading
//! a plugin").
//!
//! Every key carries a version: 1 when a `put` or `cas` creates it, one more on
//! each later successful write, gone with the key on `delete` (a key created
//! again starts at 1). Everything `kv` answered is answered identically; v2
//! only adds fields, so v1 clients keep working across the hot swap.
//!
//! Commands (JSON, externally tagged):
//! - `{"put":{"key":K,"value":V}}` → `{"prev":V|null,"version":N}`, the
//!   version after the write
//! - `{"delete":{"key":K}}` → `{"prev":V|null}`
//! - `{"cas":{"key":K,"expected":V|null,"value":V}}` →
//!   `{"ok":bool,"current":V|null,"version":N|null}`: sets `value` only if the
//!   current value equals `expected` (`null` or a missing field: the key must
//!   be absent); `current` and `version` describe the key after the operation.
//!
//! Queries:
//! - `{"get":{"key":K}}` → `{"value":V|null,"version":N|null}`
//! - `{"version":{"key":K}}` → `{"version":N|null}`
//! - `{"scan":{"prefix":P,"limit":N}}` → `{"items":[[K,V],...]}` in key order,
//!   as in v1 (no versions); `prefix` defaults to `""`, `limit` to
//!   [`SCAN_LIMIT_DEFAULT`] and may not exceed [`SCAN_LIMIT_MAX`].
//! - `"plugin_version"` → `"kv/2"`
//!
//! Snapshot: `{"version":2,"entries":[[K,V,N],...]}` with keys strictly
//! ascending. `restore` also reads kv's `{"version":1,"entries":[[K,V],...]}`,
//! giving every key version 1, and refuses any other version.

use clusterhost_sdk::scan::{self, ScanLimits};
use clusterhost_sdk::snapshot::VersionedJson;
use clusterhost_sdk::{Entry, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Items a scan returns when the query gives no limit.
pub const SCAN_LIMIT_DEFAULT: usize = 100;
/// Most items one scan may return: bounds the response size and the fuel a
/// single query burns. Larger limits are rejected, not silently clamped.
pub const SCAN_LIMIT_MAX: usize = 1_000;
/// Both scan limits; building it checks at compile time that the default
/// does not exceed the maximum.
const SCAN_LIMITS: ScanLimits = ScanLimits::new(SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX);
/// Version a key gets when it is created (or restored from a v1 snapshot).
pub const KEY_VERSION_FIRST: u64 = 1;
/// Answer to the `plugin_version` query.
pub const PLUGIN_VERSION: &str = "kv/2";

/// Snapshot format of `kv` (v1): `[key, value]` pairs.
const SNAPSHOT_VERSION_V1: u32 = 1;
/// Snapshot format written by this version: `[key, value, version]` triples.
/// Never reuse a number: every format ever written keeps its own.
const SNAPSHOT_VERSION: u32 = 2;
/// kv's snapshot formats, as kv v1 names them in errors, up to this version's.
const SNAPSHOT: VersionedJson = VersionedJson::new("kv", SNAPSHOT_VERSION);

const _: () = assert!(SNAPSHOT_VERSION_V1 < SNAPSHOT_VERSION);

/// The replicated state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Kv {
    entries: BTreeMap<String, Item>,
}

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    value: String,
    version: u64,
}

/// Commands that change the store: the same as v1.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Set `key` to `value`.
    Put { key: String, value: String },
    /// Remove `key` and its version.
    Delete { key: String },
    /// Set `key` to `value` if its current value is `expected`.
    Cas {
        key: String,
        #[serde(default)]
        expected: Option<String>,
        value: String,
    },
}

/// Read-only requests: v1's plus `version`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Query {
    /// Read one key and its version.
    Get { key: String },
    /// Read only the version of one key.
    Version { key: String },
    /// Read keys starting with `prefix`, in key order.
    Scan {
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Which plugin build answers: [`PLUGIN_VERSION`].
    PluginVersion,
}

/// Responses to commands. v1's fields come first and mean the same.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// `put`: the value before, and the key's version after the write.
    Put { prev: Option<String>, version: u64 },
    /// `delete`: the value before.
    Delete { prev: Option<String> },
    /// `cas`: whether it swapped, and the value and version after.
    Swapped {
        ok: bool,
        current: Option<String>,
        version: Option<u64>,
    },
}

/// Responses to queries.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum QueryResponse {
    /// `get`.
    Value {
        value: Option<String>,
        version: Option<u64>,
    },
    /// `version`.
    Version { version: Option<u64> },
    /// `scan`: `[key, value]` pairs in key order.
    Items { items: Vec<(String, String)> },
    /// `plugin_version`: a bare string.
    PluginVersion(&'static str),
}

/// The v1 (`kv`) snapshot, still read for upgrades.
#[derive(Deserialize)]
struct SnapshotV1 {
    entries: Vec<(String, String)>,
}

/// The snapshot's canonical form written by this version.
#[derive(Serialize, Deserialize)]
struct SnapshotV2 {
    version: u32,
    entries: Vec<(String, String, u64)>,
}

impl Kv {
    /// Write `value` to `key`, creating it at [`KEY_VERSION_FIRST`] or bumping
    /// its version. Checks before mutating, so an `Err` changes nothing.
    fn write(&mut self, key: String, value: String) -> Result<(Option<String>, u64), String> {
        let version = match self.entries.get(&key) {
            None => KEY_VERSION_FIRST,
            Some(item) => item
                .version
                .checked_add(1)
                .ok_or_else(|| format!("version of key {key:?} would overflow"))?,
        };
        let previous = self.entries.insert(key, Item { value, version });
        Ok((previous.map(|item| item.value), version))
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<String>,
        value: String,
    ) -> Result<Response, String> {
        let current = self.entries.get(&key).map(|item| &item.value);
        if current == expected.as_ref() {
            let (_, version) = self.write(key, value.clone())?;
            return Ok(Response::Swapped {
                ok: true,
                current: Some(value),
                version: Some(version),
            });
        }
        let item = self.entries.get(&key);
        Ok(Response::Swapped {
            ok: false,
            current: item.map(|item| item.value.clone()),
            version: item.map(|item| item.version),
        })
    }

    fn scan(&self, prefix: String, limit: Option<usize>) -> Result<QueryResponse, String> {
        // Refuses a limit above the maximum rather than clamping it.
        let limit = SCAN_LIMITS.resolve(limit)?;
        let items = scan::prefix(&self.entries, &prefix, limit)
            .map(|(key, item)| (key.clone(), item.value.clone()))
            .collect();
        Ok(QueryResponse::Items { items })
    }
}

impl StateMachine for Kv {
    type Command = Command;
    type Response = Response;
    type Query = Query;
    type QueryResponse = QueryResponse;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Response, String> {
        match command {
            Command::Put { key, value } => {
                let (prev, version) = self.write(key, value)?;
                Ok(Response::Put { prev, version })
            }
            Command::Delete { key } => Ok(Response::Delete {
                prev: self.entries.remove(&key).map(|item| item.value),
            }),
            Command::Cas {
                key,
                expected,
                value,
            } => self.compare_and_swap(key, expected, value),
        }
    }

    fn query(&self, query: Query) -> Result<QueryResponse, String> {
        match query {
            Query::Get { key } => {
                let item = self.entries.get(&key);
                Ok(QueryResponse::Value {
                    value: item.map(|item| item.value.clone()),
                    version: item.map(|item| item.version),
                })
            }
            Query::Version { key } => Ok(QueryResponse::Version {
                version: self.entries.get(&key).map(|item| item.version),
            }),
            Query::Scan { prefix, limit } => self.scan(prefix, limit),
            Query::PluginVersion => Ok(QueryResponse::PluginVersion(PLUGIN_VERSION)),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let entries = self
            .entries
            .iter()
            .map(|(key, item)| (key.clone(), item.value.clone(), item.version))
            .collect();
        let snapshot = SnapshotV2 {
            version: SNAPSHOT_VERSION,
            entries,
        };
        // Strings and integers always serialize.
        serde_json::to_vec(&snapshot).expect("kv_v2 snapshot serializes")
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        // The version first (`read_version` refuses newer ones): each version
        // lays out `entries` its own way.
        let entries: Vec<(String, String, u64)> = match SNAPSHOT.read_version(snapshot)? {
            SNAPSHOT_VERSION_V1 => {
                // Migrate: v1 had no versions, so every key starts at the first.
                let v1: SnapshotV1 = SNAPSHOT.decode(snapshot)?;
                v1.entries
                    .into_iter()
                    .map(|(key, value)| (key, value, KEY_VERSION_FIRST))
                    .collect()
            }
            SNAPSHOT_VERSION => {
                let v2: SnapshotV2 = SNAPSHOT.decode(snapshot)?;
                v2.entries
            }
            unknown => return Err(SNAPSHOT.unsupported(unknown)),
        };
        Self::from_canonical_entries(entries)
    }
}

impl Kv {
    /// Build a store from snapshot entries, rejecting non-canonical input
    /// instead of normalizing it: out-of-order or duplicate keys, or a version
    /// below the first, mean the bytes did not come from a kv plugin.
    fn from_canonical_entries(entries: Vec<(String, String, u64)>) -> Result<Self, String> {
        let items = entries
            .into_iter()
            .map(|(key, value, version)| (key, Item { value, version }))
            .collect();
        let entries = SNAPSHOT.map_from_ascending(items)?;
        // In key order, so the first offender is the first in the snapshot.
        if let Some((key, item)) = entries
            .iter()
            .find(|(_, item)| item.version < KEY_VERSION_FIRST)
        {
            return Err(format!(
                "kv snapshot key {key:?} has version {}",
                item.version
            ));
        }
        Ok(Kv { entries })
    }
}

clusterhost_sdk::export_state_machine!(Kv);

#[cfg(test)]
mod tests;
