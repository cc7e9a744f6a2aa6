//! TEST-ONLY plugin, broken on purpose for `plugin check`: a key-value store
//! (`{"put":{"key":K,"value":V}}` → `{"prev":V|null}`, query
//! `{"get":{"key":K}}` → `{"value":V|null}`) whose snapshot leaves out the
//! greatest key. Every answer is deterministic; only a restored replica would
//! lose data, which is what the round-trip check must catch.

use clusterhost_sdk::{Entry, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The store.
#[derive(Debug, Default)]
pub struct SnapshotDrops {
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
}

/// Answer to `put`.
#[derive(Debug, Serialize)]
pub struct Previous {
    prev: Option<String>,
}

/// Answer to `get`.
#[derive(Debug, Serialize)]
pub struct Value {
    value: Option<String>,
}

impl StateMachine for SnapshotDrops {
    type Command = Command;
    type Response = Previous;
    type Query = Query;
    type QueryResponse = Value;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Previous, String> {
        let Command::Put { key, value } = command;
        Ok(Previous {
            prev: self.entries.insert(key, value),
        })
    }

    fn query(&self, query: Query) -> Result<Value, String> {
        let Query::Get { key } = query;
        Ok(Value {
            value: self.entries.get(&key).cloned(),
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        // The bug: the last key is left out.
        let kept = self.entries.len().saturating_sub(1);
        let entries: Vec<(&String, &String)> = self.entries.iter().take(kept).collect();
        serde_json::to_vec(&entries).unwrap_or_default()
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        let entries: Vec<(String, String)> =
            serde_json::from_slice(snapshot).map_err(|error| error.to_string())?;
        Ok(Self {
            entries: entries.into_iter().collect(),
        })
    }
}

clusterhost_sdk::export_state_machine!(SnapshotDrops);
