//! TEST-ONLY plugin that writes to the host store and then ends its entry
//! in each way an entry can end, so tests see which writes stay:
//!
//! - `{"put":{"key":K,"value":V}}` writes and answers `{"count":N}`;
//! - `{"fail":{…}}` writes, then returns `err` (the write stays);
//! - `{"trap":{…}}` writes, then panics (the write must vanish);
//! - `{"spin":{…}}` writes, then loops until its fuel runs out (the write
//!   must vanish);
//! - `{"fill":{"keys":N,"bytes":B}}` writes N keys of B bytes each in one
//!   entry and answers `{"count":N}` (past the host's per-call write bound
//!   it must trap, leaving nothing).
//!
//! Queries: `{"get":{"key":K}}` → `{"value":V|null}`, `"count"` →
//! `{"count":N}`, `{"write":{"key":K}}` writes from a query (must trap).

use clusterhost_sdk::store::Store;
use clusterhost_sdk::{Entry, StateMachine};
use serde::{Deserialize, Serialize};

/// Keeps nothing in memory.
#[derive(Debug, Default)]
pub struct StoreFaults;

/// A key and the value to write under it.
#[derive(Debug, Deserialize)]
pub struct Write {
    pub key: String,
    pub value: String,
}

/// How many keys of how many bytes one `fill` writes.
#[derive(Debug, Deserialize)]
pub struct Fill {
    pub keys: u32,
    pub bytes: u32,
}

/// How the entry ends after writing.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Put(Write),
    Fail(Write),
    Trap(Write),
    Spin(Write),
    Fill(Fill),
}

/// A read, or a write where none is allowed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    Get { key: String },
    Count,
    Write { key: String },
}

/// Every answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Count { count: u64 },
    Value { value: Option<String> },
}

/// Write `fill.keys` keys of `fill.bytes` bytes each.
fn fill_store(fill: &Fill) -> Result<Answer, String> {
    let value = vec![b'x'; fill.bytes as usize];
    for key in 0..fill.keys {
        Store
            .put(format!("fill-{key}").as_bytes(), &value)
            .map_err(|error| error.to_string())?;
    }
    Ok(Answer::Count {
        count: Store.count(),
    })
}

impl StateMachine for StoreFaults {
    type Command = Command;
    type Response = Answer;
    type Query = Query;
    type QueryResponse = Answer;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Answer, String> {
        let write = match &command {
            Command::Fill(fill) => return fill_store(fill),
            Command::Put(write)
            | Command::Fail(write)
            | Command::Trap(write)
            | Command::Spin(write) => write,
        };
        Store
            .put(write.key.as_bytes(), write.value.as_bytes())
            .map_err(|error| error.to_string())?;
        match command {
            Command::Put(_) => Ok(Answer::Count {
                count: Store.count(),
            }),
            Command::Fail(_) => Err("failed after writing".to_string()),
            Command::Trap(_) => panic!("trap after writing"),
            Command::Spin(_) => test_plugins_common::spin(),
            Command::Fill(_) => unreachable!("answered above"),
        }
    }

    fn query(&self, query: Query) -> Result<Answer, String> {
        match query {
            Query::Get { key } => Ok(Answer::Value {
                value: Store
                    .get(key.as_bytes())
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            }),
            Query::Count => Ok(Answer::Count {
                count: Store.count(),
            }),
            Query::Write { key } => {
                Store
                    .put(key.as_bytes(), b"from a query")
                    .map_err(|error| error.to_string())?;
                Ok(Answer::Count {
                    count: Store.count(),
                })
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    fn restore(_snapshot: &[u8]) -> Result<Self, String> {
        Ok(StoreFaults)
    }
}

clusterhost_sdk::export_state_machine!(StoreFaults);

#[cfg(test)]
mod tests {
    //! Goal: under the SDK's harness the writes of `fail` stay and those of
    //! `trap` vanish, as the host must do.
    use super::*;
    use clusterhost_sdk::testing::Harness;
    use serde_json::json;

    #[test]
    fn err_keeps_the_writes_and_a_trap_drops_them() {
        let mut harness = Harness::<StoreFaults>::new();
        let put = json!({"put": {"key": "a", "value": "1"}});
        assert_eq!(harness.apply(&put), Ok(json!({"count": 1})));
        assert!(
            harness
                .apply(&json!({"fail": {"key": "b", "value": "2"}}))
                .is_err()
        );
        let trapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            harness.apply(&json!({"trap": {"key": "c", "value": "3"}}))
        }));
        assert!(trapped.is_err());
        assert_eq!(harness.query(&json!("count")), Ok(json!({"count": 2})));
    }
}
