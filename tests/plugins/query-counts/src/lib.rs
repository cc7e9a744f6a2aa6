//! TEST-ONLY plugin, broken on purpose for `plugin check`: the test
//! plugins' counter (`{"add":N}` → `{"value":V}`, query `"get"` →
//! `{"value":V}`, from `test_plugins_common`) whose answers
//! add the number of queries it has served. Queries run on one replica only,
//! so its replicas would answer differently; the query-purity check must
//! catch it. Snapshots hold the sum alone and are deterministic.

use clusterhost_sdk::{Entry, StateMachine};
use std::cell::Cell;
use test_plugins_common::{Command, Query, Total};

/// The counter, and the hidden count of queries served.
#[derive(Debug, Default)]
pub struct QueryCounts {
    total: i64,
    queries: Cell<i64>,
}

impl StateMachine for QueryCounts {
    type Command = Command;
    type Response = Total;
    type Query = Query;
    type QueryResponse = Total;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Total, String> {
        let Command::Add(n) = command;
        self.total = self.total.wrapping_add(n);
        // The bug: the answer counts queries, which are not in the log.
        Ok(Total::new(self.total.wrapping_add(self.queries.get())))
    }

    fn query(&self, _query: Query) -> Result<Total, String> {
        self.queries.set(self.queries.get().wrapping_add(1));
        Ok(Total::new(self.total))
    }

    fn snapshot(&self) -> Vec<u8> {
        self.total.to_string().into_bytes()
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(snapshot).map_err(|error| error.to_string())?;
        Ok(Self {
            total: text.parse().map_err(|error| format!("{error}"))?,
            queries: Cell::new(0),
        })
    }
}

clusterhost_sdk::export_state_machine!(QueryCounts);
