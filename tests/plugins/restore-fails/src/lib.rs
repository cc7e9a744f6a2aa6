//! TEST-ONLY plugin for hot-swap tests: counts like `plugins/counter`
//! (`{"add":N}` → `{"value":total}`, query `"get"` → `{"value":total}`,
//! snapshot `{"version":1,"value":total}`), but `restore` always returns
//! `Err("restore fails on purpose")`, so swapping it in must leave the host
//! running the previous version.
//!
//! Written against [`RawStateMachine`] (bytes in, bytes out) on purpose, so the
//! raw path of the SDK is exercised by a real component too.

use clusterhost_sdk::{Entry, RawStateMachine};
use serde::Deserialize;
use serde_json::json;

/// The error every restore returns.
pub const RESTORE_ERROR: &str = "restore fails on purpose";

/// A counter whose snapshots cannot be restored.
#[derive(Debug, Default)]
pub struct RestoreFails {
    total: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Add(i64),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Query {
    Get,
}

fn total(value: i64) -> Vec<u8> {
    json!({ "value": value }).to_string().into_bytes()
}

impl RawStateMachine for RestoreFails {
    fn apply(&mut self, _entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String> {
        let Command::Add(amount) = serde_json::from_slice(command)
            .map_err(|error| format!("malformed command: {error}"))?;
        self.total = self.total.checked_add(amount).ok_or("counter overflow")?;
        Ok(total(self.total))
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        let Query::Get =
            serde_json::from_slice(request).map_err(|error| format!("malformed query: {error}"))?;
        Ok(total(self.total))
    }

    fn snapshot(&self) -> Vec<u8> {
        // Byte-for-byte the counter plugin's snapshot format.
        format!(r#"{{"version":1,"value":{}}}"#, self.total).into_bytes()
    }

    fn restore(_snapshot: &[u8]) -> Result<Self, String> {
        Err(RESTORE_ERROR.into())
    }
}

clusterhost_sdk::export_state_machine!(RestoreFails);

#[cfg(test)]
mod tests {
    //! Goal: applies like the counter, and every restore fails cleanly.
    use super::*;
    use clusterhost_sdk::testing::Harness;

    #[test]
    fn counts_like_every_restore_test_plugin() {
        Harness::<RestoreFails>::new().assert_transcript(include_str!("../../counter.transcript"));
    }

    #[test]
    fn applies_but_never_restores() {
        let mut plugin = Harness::<RestoreFails>::new();
        assert_eq!(plugin.apply(&json!({"add": 2})), Ok(json!({"value": 2})));
        assert_eq!(plugin.query(&"get"), Ok(json!({"value": 2})));
        assert!(
            plugin
                .apply_raw(b"{")
                .unwrap_err()
                .starts_with("malformed command")
        );
        let snapshot = plugin.snapshot();
        assert_eq!(snapshot, br#"{"version":1,"value":2}"#);
        assert_eq!(plugin.restore(&snapshot), Err(RESTORE_ERROR.to_string()));
        assert_eq!(plugin.query(&"get"), Ok(json!({"value": 2})), "state kept");
    }
}
