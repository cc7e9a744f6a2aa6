//! TEST-ONLY plugin for hot-swap tests: counts like `plugins/counter`
//! (`{"add":N}` → `{"value":total}`, query `"get"` → `{"value":total}`,
//! snapshot `{"version":1,"value":total}`), but `restore` always panics, which
//! traps the instance, so swapping it in must leave the host running the
//! previous version.

use clusterhost_sdk::{Entry, StateMachine};
use serde::{Deserialize, Serialize};

/// A counter whose restore traps.
#[derive(Debug, Default)]
pub struct RestoreTraps {
    total: i64,
}

/// `{"add":N}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Add(i64),
}

/// `"get"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    Get,
}

/// `{"value":total}`.
#[derive(Debug, Serialize)]
pub struct Total {
    value: i64,
}

#[derive(Serialize)]
struct Snapshot {
    version: u32,
    value: i64,
}

impl StateMachine for RestoreTraps {
    type Command = Command;
    type Response = Total;
    type Query = Query;
    type QueryResponse = Total;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Total, String> {
        let Command::Add(amount) = command;
        self.total = self.total.checked_add(amount).ok_or("counter overflow")?;
        Ok(Total { value: self.total })
    }

    fn query(&self, Query::Get: Query) -> Result<Total, String> {
        Ok(Total { value: self.total })
    }

    fn snapshot(&self) -> Vec<u8> {
        let snapshot = Snapshot {
            version: 1,
            value: self.total,
        };
        serde_json::to_vec(&snapshot).expect("snapshot serializes")
    }

    fn restore(_snapshot: &[u8]) -> Result<Self, String> {
        panic!("restore traps on purpose")
    }
}

clusterhost_sdk::export_state_machine!(RestoreTraps);

#[cfg(test)]
mod tests {
    //! Goal: applies like the counter, and restore panics (a trap in wasm).
    use super::*;
    use clusterhost_sdk::testing::Harness;
    use serde_json::json;

    #[test]
    fn counts_like_every_restore_test_plugin() {
        Harness::<RestoreTraps>::new().assert_transcript(include_str!("../../counter.transcript"));
    }

    #[test]
    fn applies_like_a_counter() {
        let mut plugin = Harness::<RestoreTraps>::new();
        assert_eq!(plugin.apply(&json!({"add": 3})), Ok(json!({"value": 3})));
        assert_eq!(plugin.query(&"get"), Ok(json!({"value": 3})));
        assert_eq!(plugin.snapshot(), br#"{"version":1,"value":3}"#);
    }

    #[test]
    #[should_panic(expected = "restore traps on purpose")]
    fn restore_panics() {
        let mut plugin = Harness::<RestoreTraps>::new();
        let _ = plugin.restore(br#"{"version":1,"value":3}"#);
    }
}
