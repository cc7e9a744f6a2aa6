//! clusterhost: make any state machine a fault-tolerant cluster.
//!
//! Each process is one node. The user's state machine is a WebAssembly
//! component implementing the WIT world in `wit/`, replicated by Raft.
//!
//! Layout, one module per concern; each outside dependency lives in one:
//! - [`cli`]: the command line (clap).
//! - [`embed`]: [`Node`], a node started inside your own program (and by
//!   `clusterhost run`).
//! - [`node`]: wiring a node together, and taking it down.
//! - [`ops`]: the HTTP listener for operators: metrics, health checks, a
//!   status page.
//! - [`api`]: the public gRPC service (tonic): handlers, routing to the
//!   leader, status reports.
//! - [`membership`]: gossip-driven Raft membership: pure decisions and the
//!   loop that carries them out; leaving.
//! - [`discovery`]: gossip (chitchat).
//! - [`consensus`]: Raft (openraft), its log and state machine, and the
//!   internal Raft transport (tonic).
//! - [`storage`]: the data dir, the log database (redb), snapshot files.
//! - [`plugin`]: the deterministic wasm runtime (wasmtime).
//! - [`metrics`]: the node's Prometheus metrics (prometheus-client).
//! - [`security`]: roles and the method table, certificates, refusing an
//!   unprotected network port.
//! - [`limits`]: every bound and timing, as named constants.
//! - [`loadgen`]: the load generator behind `clusterhost bench`.
//!
//! Modules only use modules below them in this list (cli → embed → node →
//! ops → api → membership → discovery → consensus → storage → plugin →
//! security → metrics → limits).
//!
//! One write, file by file:
//! 1. `cli/commands.rs` (`apply`) sends it with the `clusterhost-client`
//!    crate.
//! 2. `api/cluster_service.rs` (`apply`) receives it;
//! 3. `api/leader.rs` serves it here or forwards it to the leader, as the
//!    pure `api/routing.rs` decides.
//! 4. `consensus/handle/proposals.rs` (`propose_command`) hands it to Raft
//!    and waits for it to be applied.
//! 5. `consensus/state_machine/mod.rs` (`apply`) applies the committed
//!    entry on every replica;
//! 6. `plugin/worker.rs` runs it on the plugin's thread, through
//!    `plugin/machine.rs` and `plugin/runtime.rs` to the component call in
//!    `plugin/instance.rs`, the plugin's `apply`.

pub mod api;
pub mod cli;
pub mod consensus;
pub mod discovery;
pub mod embed;
pub mod limits;
pub mod loadgen;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod plugin;
pub mod security;
pub mod storage;

pub use embed::{Consistency, EmbedError, Entry, Node, NodeBuilder, SdkMachine, StateMachine};
