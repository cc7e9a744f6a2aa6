//! clusterhost: make any state machine a fault-tolerant cluster.
//!
//! Each process is one node. The user's state machine is a WebAssembly
//! component implementing the WIT world in `wit/`, replicated by Raft.
//!
//! Layout, one module per concern, each hiding one dependency:
//! - [`limits`]: every bound, as named constants.
//! - [`plugin`]: the deterministic wasm runtime (wasmtime lives only here).
//! - [`consensus`]: Raft (openraft lives only here and in [`storage`]).
//! - [`storage`]: the data dir, the redb log, snapshot files.
//! - [`api`]: gRPC services and client (tonic).
//! - [`node`]: wiring a node together, and taking it down.
//! - [`cli`]: the command line.

pub mod api;
pub mod cli;
pub mod consensus;
pub mod deploy;
pub mod discovery;
pub mod limits;
pub mod loadgen;
pub mod membership;
pub mod node;
pub mod plugin;
pub mod storage;
