//! TEST-ONLY: what the test plugins share, so each plugin's file holds only
//! the way it misbehaves.
//!
//! The hot-swap test plugins are one counter that differs only in `restore`:
//! - command `{"add":N}` → `{"value":total}`; an overflow is refused with
//!   `Err("counter overflow")` and changes nothing;
//! - query `"get"` → `{"value":total}`;
//! - snapshot `{"version":1,"value":total}`, byte for byte the format of
//!   `plugins/counter`, so a swap from the counter hands them its state.
//!
//! [`Tally`] is that counter's state and operations; [`Counter`] makes it a
//! [`StateMachine`] whose `restore` is a [`RefuseRestore`] (restore-traps,
//! restore-spins); restore-fails drives [`Tally`] through the raw byte
//! interface instead. `counter.transcript` pins every answer but restore's,
//! and each plugin's tests check it against that plugin.

use clusterhost_sdk::{Entry, StateMachine};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// The snapshot format version, as `plugins/counter` writes it.
const SNAPSHOT_VERSION: u32 = 1;

/// `{"add":N}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Add a (possibly negative) amount.
    Add(i64),
}

/// `"get"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// Read the total.
    Get,
}

/// `{"value":total}`: the answer to every command and query.
#[derive(Debug, Serialize)]
pub struct Total {
    value: i64,
}

impl Total {
    /// The answer `{"value":value}`.
    pub fn new(value: i64) -> Self {
        Self { value }
    }
}

#[derive(Serialize)]
struct Snapshot {
    version: u32,
    value: i64,
}

/// The counter's state and what it does with commands, queries and
/// snapshots; everything but restoring.
///
/// The methods are `#[inline]` so serde_json is instantiated in each plugin
/// crate next to the plugin's own uses of it, not a second time here.
#[derive(Debug, Default)]
pub struct Tally {
    total: i64,
}

impl Tally {
    /// Apply a command; an overflow changes nothing.
    #[inline]
    pub fn apply(&mut self, command: Command) -> Result<Total, String> {
        let Command::Add(amount) = command;
        self.total = self.total.checked_add(amount).ok_or("counter overflow")?;
        Ok(Total { value: self.total })
    }

    /// Answer a query.
    #[inline]
    pub fn query(&self, Query::Get: Query) -> Total {
        Total { value: self.total }
    }

    /// `{"version":1,"value":total}`.
    #[inline]
    pub fn snapshot(&self) -> Vec<u8> {
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            value: self.total,
        };
        // A struct of two integers always serializes.
        serde_json::to_vec(&snapshot).expect("snapshot serializes")
    }
}

/// How a hot-swap test plugin refuses every snapshot: by returning the
/// error, by panicking (a trap in wasm) or by never returning (the host's
/// fuel stops it). Implemented on an uninhabited type that names the way.
pub trait RefuseRestore {
    /// The error `restore` returns, if this returns at all.
    fn refuse(snapshot: &[u8]) -> String;
}

/// The shared counter as a [`StateMachine`] whose `restore` never succeeds:
/// it does what `R` does.
#[derive(Debug)]
pub struct Counter<R> {
    tally: Tally,
    restore: PhantomData<R>,
}

impl<R> Default for Counter<R> {
    fn default() -> Self {
        Counter {
            tally: Tally::default(),
            restore: PhantomData,
        }
    }
}

impl<R: RefuseRestore> StateMachine for Counter<R> {
    type Command = Command;
    type Response = Total;
    type Query = Query;
    type QueryResponse = Total;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Total, String> {
        self.tally.apply(command)
    }

    fn query(&self, query: Query) -> Result<Total, String> {
        Ok(self.tally.query(query))
    }

    fn snapshot(&self) -> Vec<u8> {
        self.tally.snapshot()
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        Err(R::refuse(snapshot))
    }
}

/// Loop forever; `black_box` keeps the optimizer from proving anything about
/// the loop, so only the host's fuel can end it.
pub fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}
