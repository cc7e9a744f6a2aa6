//! The clusterhost plugin SDK: write a replicated state machine (FSM) as a
//! plain Rust struct and export it as a `wasm32-wasip2` WebAssembly component
//! that implements the `clusterhost:fsm/state-machine` world (`wit/fsm.wit`).
//!
//! clusterhost runs one instance of the plugin on every replica and feeds every
//! instance the same committed commands in the same order. The plugin's only
//! job is to be a deterministic function of those commands.
//!
//! # Writing a plugin
//!
//! Implement [`StateMachine`] on a struct with typed serde messages (JSON on the
//! wire), then export it with [`export_state_machine!`]:
//!
//! ```
//! use clusterhost_sdk::{Entry, StateMachine};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default)]
//! pub struct Counter {
//!     total: i64,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "snake_case")]
//! pub enum Command {
//!     Add(i64),
//! }
//!
//! #[derive(Serialize)]
//! pub struct Total {
//!     value: i64,
//! }
//!
//! impl StateMachine for Counter {
//!     type Command = Command;
//!     type Response = Total;
//!     type Query = ();
//!     type QueryResponse = Total;
//!
//!     fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Total, String> {
//!         let Command::Add(amount) = command;
//!         self.total = self.total.checked_add(amount).ok_or("counter overflow")?;
//!         Ok(Total { value: self.total })
//!     }
//!
//!     fn query(&self, _query: ()) -> Result<Total, String> {
//!         Ok(Total { value: self.total })
//!     }
//!
//!     fn snapshot(&self) -> Vec<u8> {
//!         self.total.to_le_bytes().to_vec()
//!     }
//!
//!     fn restore(snapshot: &[u8]) -> Result<Self, String> {
//!         let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "snapshot is not 8 bytes")?;
//!         Ok(Counter { total: i64::from_le_bytes(bytes) })
//!     }
//! }
//!
//! clusterhost_sdk::export_state_machine!(Counter);
//! ```
//!
//! A malformed command or query never reaches your code: the SDK answers it with
//! an `Err` naming the problem. [`scan`] (bounded prefix scans over a
//! `BTreeMap`) and [`snapshot`] (versioned, canonical JSON snapshots) are the
//! pieces most key-value plugins need; [`store::Store`] is the host's
//! replicated, on-disk ordered store for state larger than memory. Authors with their own encoding implement
//! [`RawStateMachine`] (bytes in, bytes out) instead; the macro exports either.
//!
//! The plugin crate needs `crate-type = ["cdylib", "rlib"]`: `cdylib` is the
//! component, `rlib` lets native tests link the struct.
//!
//! # Testing a plugin
//!
//! [`testing::Harness`] plays the host natively, so plugin tests are ordinary
//! `cargo test` runs (the export macro expands to nothing outside wasm):
//!
//! ```
//! # use clusterhost_sdk::{Entry, StateMachine};
//! # #[derive(Default)] struct Echo;
//! # impl StateMachine for Echo {
//! #     type Command = String; type Response = String; type Query = (); type QueryResponse = ();
//! #     fn apply(&mut self, _: &Entry, c: String) -> Result<String, String> { Ok(c) }
//! #     fn query(&self, _: ()) -> Result<(), String> { Ok(()) }
//! #     fn snapshot(&self) -> Vec<u8> { Vec::new() }
//! #     fn restore(_: &[u8]) -> Result<Self, String> { Ok(Echo) }
//! # }
//! use clusterhost_sdk::testing::Harness;
//! use serde_json::json;
//!
//! let mut harness = Harness::<Echo>::new();
//! assert_eq!(harness.apply(&json!("hi")), Ok(json!("hi")));
//! assert!(harness.apply_raw(b"{not json").unwrap_err().contains("malformed command"));
//! harness.assert_snapshot_roundtrip();
//! ```
//!
//! # Building a plugin
//!
//! ```text
//! rustup target add wasm32-wasip2
//! cargo build --release --target wasm32-wasip2
//! ```
//!
//! `wasm32-wasip2` makes rustc emit a component directly:
//! `target/wasm32-wasip2/release/<lib name>.wasm` is ready to deploy. In this
//! repository `cargo xtask plugins` builds every plugin.
//!
//! # Determinism
//!
//! Every replica must reach the same state and answer with the same bytes.
//!
//! - Anything whose iteration order can reach a response or a snapshot must be
//!   ordered: use `BTreeMap`/`BTreeSet`/`Vec`, never `HashMap`'s default
//!   randomly seeded hasher (or give it a fixed-seed hasher).
//! - Use [`Entry::time_ms`] for time and derive randomness from
//!   [`Entry::index`]. The host virtualizes the WASI clocks (they read the
//!   leader-stamped entry time) and seeds WASI randomness from the log
//!   position, so such calls are deterministic but meaningless: treat them as
//!   a fallback, not a source of truth.
//! - Do not rely on the lifetime of the instance: the host may discard it at
//!   any time (after a trap, on restart, on a version swap) and rebuild it from
//!   a snapshot plus the entries since. State that is not in the snapshot is
//!   lost; caches must be rebuildable from it.
//! - `query` must not change state; `apply` should validate before mutating,
//!   because state changes made before returning `Err` stay.
//! - Bound what you keep: every call runs under a fuel budget and memory cap.
//!
//! # Upgrading: a version that takes over its predecessor's state
//!
//! The host swaps in a new plugin version by calling `snapshot` on the running
//! one and `restore` on the new one; if `restore` fails or traps, the old one
//! keeps running. Put a version tag in the snapshot from day one, read the tag
//! before anything else (each version lays out the rest its own way), and make
//! `restore` accept every format you ever wrote. [`snapshot::VersionedJson`]
//! does the reading and phrases the errors:
//!
//! ```
//! use clusterhost_sdk::snapshot::VersionedJson;
//! use serde::Deserialize;
//! use std::collections::BTreeMap;
//!
//! const SNAPSHOT: VersionedJson = VersionedJson::new("counter", 2);
//!
//! /// Version 1 stored a single counter.
//! #[derive(Deserialize)]
//! struct V1 {
//!     total: i64,
//! }
//! /// Version 2 stores a map.
//! #[derive(Deserialize)]
//! struct V2 {
//!     totals: BTreeMap<String, i64>,
//! }
//!
//! fn restore(bytes: &[u8]) -> Result<BTreeMap<String, i64>, String> {
//!     // Refuses versions newer than 2 itself.
//!     match SNAPSHOT.read_version(bytes)? {
//!         1 => {
//!             let V1 { total } = SNAPSHOT.decode(bytes)?;
//!             Ok(BTreeMap::from([("default".to_string(), total)]))
//!         }
//!         2 => Ok(SNAPSHOT.decode::<V2>(bytes)?.totals),
//!         unknown => Err(SNAPSHOT.unsupported(unknown)),
//!     }
//! }
//!
//! assert_eq!(restore(br#"{"version":1,"total":5}"#).unwrap()["default"], 5);
//! assert!(restore(br#"{"version":3}"#).unwrap_err().contains("newer"));
//! ```
//!
//! Always write the newest format; never reuse a version number; return `Err`
//! for versions you do not know (the host then keeps running the old version).
//! Keep command and query JSON backward compatible: add fields and commands,
//! never rename, remove or change one. Test the migration natively by making
//! the old crate a dev-dependency and restoring a snapshot it produced into
//! the new one through [`testing::Harness`]. `plugins/kv_v2` (per-key versions
//! on top of `plugins/kv`) is the worked example; the SDK's README walks
//! through it.

mod export;
pub mod scan;
pub mod snapshot;
pub mod store;
pub mod testing;

#[doc(hidden)]
pub use export::__private;

#[cfg(target_arch = "wasm32")]
pub mod bindings {
    //! Bindings generated from the repository's `wit/fsm.wit`. Plugins never
    //! use these directly; [`export_state_machine!`](crate::export_state_machine)
    //! does.
    wit_bindgen::generate!({
        path: "../wit",
        // The world with the optional store: a plugin that never calls
        // `store::Store` does not import it (unused imports are not linked).
        world: "state-machine-with-store",
        // The export macro is used from plugin crates, so it must be public
        // and name this module by its absolute path.
        pub_export_macro: true,
        default_bindings_module: "clusterhost_sdk::bindings",
    });
}

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where a command sits in the replicated log, and when it was proposed.
/// Identical on every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// Raft log index; strictly increasing across `apply` calls.
    pub index: u64,
    /// Raft term in which the leader proposed the entry.
    pub term: u64,
    /// Leader-stamped wall-clock time in milliseconds since the Unix epoch.
    /// Not guaranteed monotonic across leader changes.
    pub time_ms: u64,
}

/// A state machine with typed messages, encoded as JSON on the wire.
///
/// Implement this on a plain struct and export it with
/// [`export_state_machine!`]. Every method must be deterministic: see the crate
/// documentation.
pub trait StateMachine: Default {
    /// A command proposed by a client, decoded from JSON.
    type Command: DeserializeOwned;
    /// What `apply` answers to the client, encoded as JSON.
    type Response: Serialize;
    /// A read-only request, decoded from JSON.
    type Query: DeserializeOwned;
    /// What `query` answers, encoded as JSON.
    type QueryResponse: Serialize;

    /// Apply one committed command. `Err` is an application-level rejection
    /// sent to the client; validate before mutating, because changes made
    /// before returning `Err` stay.
    fn apply(&mut self, entry: &Entry, command: Self::Command) -> Result<Self::Response, String>;

    /// Answer a read-only request.
    fn query(&self, query: Self::Query) -> Result<Self::QueryResponse, String>;

    /// Serialize the whole state canonically: equal states give equal bytes.
    fn snapshot(&self) -> Vec<u8>;

    /// Rebuild a state from `snapshot`, possibly written by an older version.
    fn restore(snapshot: &[u8]) -> Result<Self, String>;
}

/// A state machine that works on raw bytes, for authors with their own
/// encoding. Every [`StateMachine`] is one through the JSON adapter below.
///
/// The methods mirror the WIT exports one to one.
pub trait RawStateMachine: Default {
    /// Apply one committed command; see [`StateMachine::apply`].
    fn apply(&mut self, entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String>;

    /// Answer a read-only request; see [`StateMachine::query`].
    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String>;

    /// Serialize the whole state canonically.
    fn snapshot(&self) -> Vec<u8>;

    /// Rebuild a state from a snapshot.
    fn restore(snapshot: &[u8]) -> Result<Self, String>;
}

/// The JSON adapter: decoding failures become `Err`s that name the problem, so
/// a malformed message from a client can never trap the plugin.
impl<T: StateMachine> RawStateMachine for T {
    fn apply(&mut self, entry: &Entry, command: &[u8]) -> Result<Vec<u8>, String> {
        let command = serde_json::from_slice(command)
            .map_err(|error| format!("malformed command: {error}"))?;
        let response = StateMachine::apply(self, entry, command)?;
        serde_json::to_vec(&response).map_err(|error| format!("cannot encode response: {error}"))
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        let query =
            serde_json::from_slice(request).map_err(|error| format!("malformed query: {error}"))?;
        let response = StateMachine::query(self, query)?;
        serde_json::to_vec(&response)
            .map_err(|error| format!("cannot encode query response: {error}"))
    }

    fn snapshot(&self) -> Vec<u8> {
        StateMachine::snapshot(self)
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        <T as StateMachine>::restore(snapshot)
    }
}

/// Export a [`StateMachine`] or [`RawStateMachine`] as the plugin's
/// implementation of the `state-machine` world: `export_state_machine!(Kv);`
///
/// Use it once, in the plugin's `lib.rs`. The instance lives in a per-instance
/// static, created with `Default` before the first call and replaced by
/// `restore`. Outside wasm the macro only checks that the type is exportable,
/// so native builds and tests never compile the component bindings.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_state_machine {
    ($machine:ty) => {
        const _: () = {
            ::std::thread_local! {
                // The host serializes calls into an instance, so a RefCell is
                // never contended; wasm32-wasip2 has a single thread anyway.
                static INSTANCE: $crate::__private::Slot<$machine> =
                    const { $crate::__private::Slot::new() };
            }

            struct __ClusterhostExport;

            impl $crate::bindings::Guest for __ClusterhostExport {
                fn apply(
                    entry: $crate::bindings::Entry,
                    command: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    INSTANCE.with(|slot| slot.apply(&entry.into(), &command))
                }

                fn query(
                    request: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    INSTANCE.with(|slot| slot.query(&request))
                }

                fn snapshot() -> ::std::vec::Vec<u8> {
                    INSTANCE.with(|slot| slot.snapshot())
                }

                fn restore(
                    snapshot: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    INSTANCE.with(|slot| slot.restore(&snapshot))
                }
            }

    $crate::bindings::export!(__ClusterhostExport with_types_in $crate::bindings);
        };
    };
}

/// Export a [`StateMachine`] or [`RawStateMachine`] as the plugin's
/// implementation of the `state-machine` world: `export_state_machine!(Kv);`
///
/// Use it once, in the plugin's `lib.rs`. The instance lives in a per-instance
/// static, created with `Default` before the first call and replaced by
/// `restore`. Outside wasm the macro only checks that the type is exportable,
/// so native builds and tests never compile the component bindings.
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_state_machine {
    ($machine:ty) => {
        const _: () = $crate::__private::assert_exportable::<$machine>();
    };
}
