//! TEST-ONLY plugin for hot-swap tests: counts like `plugins/counter`
//! (`{"add":N}` → `{"value":total}`, query `"get"` → `{"value":total}`,
//! snapshot `{"version":1,"value":total}`), but `restore` never returns: it
//! loops until the host's fuel budget runs out, which traps the instance, so
//! swapping it in must leave the host running the previous version (and must
//! not hang the node). The counter is the one all hot-swap test plugins share
//! (`../common`); this file holds only the way it misbehaves.

use test_plugins_common::{Counter, RefuseRestore, spin};

/// Restore loops forever, as `misbehave`'s `"spin"` does.
#[derive(Debug)]
pub enum Spins {}

impl RefuseRestore for Spins {
    fn refuse(_snapshot: &[u8]) -> String {
        spin()
    }
}

/// A counter whose restore spins forever.
pub type RestoreSpins = Counter<Spins>;

clusterhost_sdk::export_state_machine!(RestoreSpins);

#[cfg(test)]
mod tests {
    //! Goal: counts like every hot-swap test plugin, and restore never
    //! returns (in wasm the host's fuel stops it).
    use super::*;
    use clusterhost_sdk::StateMachine;
    use clusterhost_sdk::testing::Harness;

    #[test]
    fn counts_like_every_restore_test_plugin() {
        Harness::<RestoreSpins>::new()
            .assert_transcript(include_str!("../../common/counter.transcript"));
    }

    #[test]
    fn restore_does_not_return() {
        // Natively nothing stops the loop, so run it on a thread that is left
        // spinning until the test process exits.
        let restore = std::thread::spawn(|| {
            let _ = RestoreSpins::restore(br#"{"version":1,"value":3}"#);
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!restore.is_finished(), "restore returned or panicked");
    }
}
