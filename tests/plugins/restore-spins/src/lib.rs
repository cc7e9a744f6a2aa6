//! TEST-ONLY plugin for hot-swap tests: counts like `plugins/counter`
//! (`{"add":N}` → `{"value":total}`, query `"get"` → `{"value":total}`,
//! snapshot `{"version":1,"value":total}`), but `restore` never returns: it
//! loops until the host's fuel budget runs out, which traps the instance, so
//! swapping it in must leave the host running the previous version (and must
//! not hang the node).

use clusterhost_sdk::{Entry, StateMachine};
use serde::{Deserialize, Serialize};

/// A counter whose restore spins forever.
#[derive(Debug, Default)]
pub struct RestoreSpins {
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

impl StateMachine for RestoreSpins {
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
        spin()
    }
}

/// Loop forever, as `misbehave`'s `"spin"` does; `black_box` keeps the
/// optimizer from proving anything about the loop, so only fuel can end it.
fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}

clusterhost_sdk::export_state_machine!(RestoreSpins);

#[cfg(test)]
mod tests {
    //! Goal: applies like the counter, and restore never returns (in wasm the
    //! host's fuel stops it).
    use super::*;
    use clusterhost_sdk::testing::Harness;
    use serde_json::json;

    #[test]
    fn counts_like_every_restore_test_plugin() {
        Harness::<RestoreSpins>::new().assert_transcript(include_str!("../../counter.transcript"));
    }

    #[test]
    fn applies_like_a_counter() {
        let mut plugin = Harness::<RestoreSpins>::new();
        assert_eq!(plugin.apply(&json!({"add": 3})), Ok(json!({"value": 3})));
        assert_eq!(plugin.query(&"get"), Ok(json!({"value": 3})));
        assert_eq!(plugin.snapshot(), br#"{"version":1,"value":3}"#);
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
