//! The smallest clusterhost plugin, meant as a template: a replicated counter.
//!
//! Wire format (JSON):
//! - command `{"add":N}` (N a signed 64-bit integer) → `{"value":total}`;
//!   an addition that would overflow is rejected and changes nothing.
//! - query `"get"` → `{"value":total}`.
//! - snapshot `{"version":1,"value":total}`.

use clusterhost_sdk::{Entry, StateMachine};
use serde::{Deserialize, Serialize};

/// Snapshot format written by this version; `restore` accepts it and older.
const SNAPSHOT_VERSION: u32 = 1;

/// The replicated state.
#[derive(Debug, Default)]
pub struct Counter {
    total: i64,
}

/// Commands, externally tagged: `{"add":5}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Add a (possibly negative) amount.
    Add(i64),
}

/// Queries: `"get"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// Read the total.
    Get,
}

/// The answer to every command and query: `{"value":total}`.
#[derive(Debug, Serialize)]
pub struct Total {
    value: i64,
}

/// Versioned from the first release, so a later version can migrate it.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    value: i64,
}

impl StateMachine for Counter {
    type Command = Command;
    type Response = Total;
    type Query = Query;
    type QueryResponse = Total;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Total, String> {
        let Command::Add(amount) = command;
        self.total = self
            .total
            .checked_add(amount)
            .ok_or_else(|| format!("adding {amount} to {} overflows", self.total))?;
        Ok(Total { value: self.total })
    }

    fn query(&self, query: Query) -> Result<Total, String> {
        match query {
            Query::Get => Ok(Total { value: self.total }),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            value: self.total,
        };
        // A struct of two integers always serializes.
        serde_json::to_vec(&snapshot).expect("counter snapshot serializes")
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        let snapshot: Snapshot = serde_json::from_slice(snapshot)
            .map_err(|error| format!("malformed counter snapshot: {error}"))?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(format!(
                "unsupported counter snapshot version {}",
                snapshot.version
            ));
        }
        Ok(Counter {
            total: snapshot.value,
        })
    }
}

clusterhost_sdk::export_state_machine!(Counter);

#[cfg(test)]
mod tests {
    //! Goal: the counter's wire format, overflow rejection and snapshots,
    //! driven through the SDK harness as the host would.
    use super::*;
    use clusterhost_sdk::testing::Harness;
    use serde_json::json;

    #[test]
    fn adds_and_reads() {
        let mut counter = Harness::<Counter>::new();
        assert_eq!(counter.query(&"get"), Ok(json!({"value": 0})));
        assert_eq!(counter.apply(&json!({"add": 5})), Ok(json!({"value": 5})));
        assert_eq!(counter.apply(&json!({"add": -7})), Ok(json!({"value": -2})));
        assert_eq!(counter.query(&"get"), Ok(json!({"value": -2})));
    }

    #[test]
    fn overflow_is_rejected_without_change() {
        let mut counter = Harness::<Counter>::new();
        counter.apply(&json!({"add": i64::MAX})).unwrap();
        let error = counter.apply(&json!({"add": 1})).unwrap_err();
        assert!(error.contains("overflows"), "{error}");
        assert_eq!(counter.query(&"get"), Ok(json!({"value": i64::MAX})));
    }

    #[test]
    fn malformed_commands_are_rejected() {
        let mut counter = Harness::<Counter>::new();
        for command in [
            &b"{\"add\":"[..],
            b"{\"add\":\"x\"}",
            b"{\"sub\":1}",
            b"\xff",
            b"",
        ] {
            let error = counter.apply_raw(command).unwrap_err();
            assert!(error.starts_with("malformed command"), "{error}");
        }
        assert!(counter.query(&"put").is_err());
        assert_eq!(counter.query(&"get"), Ok(json!({"value": 0})));
    }

    #[test]
    fn snapshot_roundtrip_and_format() {
        let mut counter = Harness::<Counter>::new();
        counter.apply(&json!({"add": 42})).unwrap();
        assert_eq!(counter.snapshot(), br#"{"version":1,"value":42}"#);
        counter.assert_snapshot_roundtrip_with_queries(&["get"]);

        let mut fresh = Harness::<Counter>::new();
        assert!(
            fresh
                .restore(br#"{"version":9,"value":1}"#)
                .unwrap_err()
                .contains("version 9")
        );
        assert!(fresh.restore(b"not json").is_err());
        fresh.restore(&counter.snapshot()).unwrap();
        assert_eq!(fresh.query(&"get"), Ok(json!({"value": 42})));
    }
}
