//! TEST-ONLY plugin for hot-swap tests: counts like `plugins/counter`
//! (`{"add":N}` → `{"value":total}`, query `"get"` → `{"value":total}`,
//! snapshot `{"version":1,"value":total}`), but `restore` always panics, which
//! traps the instance, so swapping it in must leave the host running the
//! previous version. The counter is the one all hot-swap test plugins share
//! (`../common`); this file holds only the way it misbehaves.

use test_plugins_common::{Counter, RefuseRestore};

/// Restore panics.
#[derive(Debug)]
pub enum Traps {}

impl RefuseRestore for Traps {
    fn refuse(_snapshot: &[u8]) -> String {
        panic!("restore traps on purpose")
    }
}

/// A counter whose restore traps.
pub type RestoreTraps = Counter<Traps>;

clusterhost_sdk::export_state_machine!(RestoreTraps);

#[cfg(test)]
mod tests {
    //! Goal: counts like every hot-swap test plugin, and restore panics (a
    //! trap in wasm).
    use super::*;
    use clusterhost_sdk::testing::Harness;

    #[test]
    fn counts_like_every_restore_test_plugin() {
        Harness::<RestoreTraps>::new()
            .assert_transcript(include_str!("../../common/counter.transcript"));
    }

    #[test]
    #[should_panic(expected = "restore traps on purpose")]
    fn restore_panics() {
        let mut plugin = Harness::<RestoreTraps>::new();
        let _ = plugin.restore(br#"{"version":1,"value":3}"#);
    }
}
