//! TEST-ONLY plugin for hot-swap tests: counts like `plugins/counter`
//! (`{"add":N}` → `{"value":total}`, query `"get"` → `{"value":total}`,
//! snapshot `{"version":1,"value":total}`), but `restore` always returns
//! `Err("restore fails on purpose")`, so swapping it in must leave the host
//! running the previous version. The counter is the one all hot-swap test
//! plugins share (`../common`).
//!
//! Written against [`RawStateMachine`] (bytes in, bytes out) on purpose, so the
//! raw path of the SDK is exercised by a real component too: this file decodes
//! and encodes the JSON itself.

use clusterhost_sdk::{Entry, RawStateMachine};
use test_plugins_common::{Tally, Total};

/// The error every restore returns.
pub const RESTORE_ERROR: &str = "restore fails on purpose";

/// A counter whose snapshots cannot be restored.
#[derive(Debug, Default)]
pub struct RestoreFails {
    tally: Tally,
}

fn encode(total: Total) -> Vec<u8> {
    // A struct of one integer always serializes.
    serde_json::to_vec(&total).expect("total serializes")
}

impl RawStateMachine for RestoreFails {
    fn apply(&mut self, _entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String> {
        let command = serde_json::from_slice(command)
            .map_err(|error| format!("malformed command: {error}"))?;
        self.tally.apply(command).map(encode)
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        let query =
            serde_json::from_slice(request).map_err(|error| format!("malformed query: {error}"))?;
        Ok(encode(self.tally.query(query)))
    }

    fn snapshot(&self) -> Vec<u8> {
        self.tally.snapshot()
    }

    fn restore(_snapshot: &[u8]) -> Result<Self, String> {
        Err(RESTORE_ERROR.into())
    }
}

clusterhost_sdk::export_state_machine!(RestoreFails);

#[cfg(test)]
mod tests {
    //! Goal: counts like every hot-swap test plugin, and every restore fails
    //! cleanly.
    use super::*;
    use clusterhost_sdk::testing::Harness;
    use serde_json::json;

    #[test]
    fn counts_like_every_restore_test_plugin() {
        Harness::<RestoreFails>::new()
            .assert_transcript(include_str!("../../common/counter.transcript"));
    }

    #[test]
    fn never_restores_and_keeps_its_state() {
        let mut plugin = Harness::<RestoreFails>::new();
        plugin.apply(&json!({"add": 2})).unwrap();
        let snapshot = plugin.snapshot();
        assert_eq!(plugin.restore(&snapshot), Err(RESTORE_ERROR.to_string()));
        assert_eq!(plugin.query(&"get"), Ok(json!({"value": 2})), "state kept");
    }
}
