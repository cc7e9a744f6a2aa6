//! TEST-ONLY plugin, broken on purpose for `plugin check --against`: "kv
//! version 2", a key-value store that answers `put` (`{"prev":V|null}`),
//! `get` (`{"value":V|null}`) and `scan` (`{"items":[[K,V],...]}`) as the kv
//! plugin does, writes `{"version":2,"entries":[[K,V],...]}` and restores its
//! own snapshots faithfully. The bug is in the migration: restoring kv's
//! version 1 snapshot skips its first entry, as if it were a header. Every
//! check on its own command history passes; only the upgrade from kv
//! loses data, which is what `--against` must catch.

use clusterhost_sdk::scan::{self, ScanLimits};
use clusterhost_sdk::snapshot::VersionedJson;
use clusterhost_sdk::{Entry, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// kv's scan limits, so the answers that survive match kv's.
const SCAN_LIMITS: ScanLimits = ScanLimits::new(100, 1_000);
/// The format kv writes.
const SNAPSHOT_VERSION_V1: u32 = 1;
/// The format this plugin writes (the same layout, a new tag).
const SNAPSHOT_VERSION: u32 = 2;
const SNAPSHOT: VersionedJson = VersionedJson::new("kv", SNAPSHOT_VERSION);

/// The store.
#[derive(Debug, Default)]
pub struct UpgradeLosesKey {
    entries: BTreeMap<String, String>,
}

/// Commands.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Set `key` to `value`.
    Put { key: String, value: String },
}

/// Queries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// Read one key.
    Get { key: String },
    /// Read keys starting with `prefix`, in key order.
    Scan {
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        limit: Option<usize>,
    },
}

/// Answer to `put`.
#[derive(Debug, Serialize)]
pub struct Previous {
    prev: Option<String>,
}

/// Answers to queries.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// `get`.
    Value { value: Option<String> },
    /// `scan`.
    Items { items: Vec<(String, String)> },
}

/// Both versions' layout.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    entries: Vec<(String, String)>,
}

impl StateMachine for UpgradeLosesKey {
    type Command = Command;
    type Response = Previous;
    type Query = Query;
    type QueryResponse = Answer;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Previous, String> {
        let Command::Put { key, value } = command;
        Ok(Previous {
            prev: self.entries.insert(key, value),
        })
    }

    fn query(&self, query: Query) -> Result<Answer, String> {
        Ok(match query {
            Query::Get { key } => Answer::Value {
                value: self.entries.get(&key).cloned(),
            },
            Query::Scan { prefix, limit } => {
                let limit = SCAN_LIMITS.resolve(limit)?;
                let items = scan::prefix(&self.entries, &prefix, limit)
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                Answer::Items { items }
            }
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        let entries = self
            .entries
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            entries,
        };
        serde_json::to_vec(&snapshot).unwrap_or_default()
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        let version = SNAPSHOT.read_version(snapshot)?;
        let decoded: Snapshot = SNAPSHOT.decode(snapshot)?;
        let entries = match version {
            // The bug: the migration skips kv's first entry.
            SNAPSHOT_VERSION_V1 => decoded.entries.into_iter().skip(1).collect(),
            SNAPSHOT_VERSION => decoded.entries,
            unknown => return Err(SNAPSHOT.unsupported(unknown)),
        };
        Ok(Self {
            entries: SNAPSHOT.map_from_ascending(entries)?,
        })
    }
}

clusterhost_sdk::export_state_machine!(UpgradeLosesKey);
