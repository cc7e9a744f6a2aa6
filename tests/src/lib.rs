//! End-to-end test support for clusterhost: a [`TestCluster`] harness that
//! owns real `clusterhost` processes (ports, data dirs, logs) and kills
//! them when the test ends, plus helpers the scenarios in `tests/` share.
//! The demo and the benchmarks (`cargo xtask demo|bench`) start their
//! clusters with the same harness.
//!
//! Layout:
//! - [`browser`]: headless Chromium for the status page's tests (installed
//!   with apt-get when missing).
//! - [`cluster`]: [`TestCluster`] — start, kill -9, SIGTERM, restart; prints
//!   node logs when a test fails.
//! - [`node`]: one node's flags, directory, addresses and process.
//! - [`observe`]: readiness, leaders, membership, status, clients and the CLI
//!   of each node.
//! - [`ops`]: a node's ops listener: HTTP requests and parsed `/metrics`
//!   scrapes.
//! - [`resources`]: CPU time and memory of each node's process.
//! - [`scenario`]: building blocks the multi-node scenarios share.
//! - [`process`]: one owned child process.
//! - [`cli`]: running the real command line; exit codes.
//! - [`wait`]: [`wait_for`] — poll a condition instead of sleeping.
//! - [`tls`]: [`tls::TestPki`] — certificates for a cluster running mutual
//!   TLS, made with the real `clusterhost certs`.
//! - [`load`]: [`load::WriteStream`] — concurrent writers through chosen
//!   endpoints, recording what was acknowledged and when.
//! - [`kv`]: the example key-value plugin's commands and reads.
//! - [`netns`]: [`netns::TestNetwork`] — hosts in Linux network namespaces
//!   behind one bridge, for running nodes apart and cutting links between
//!   them (partitions, a bridge host, one flapping link) while the test, as
//!   client, still reaches every host. Needs root.
//! - [`faults`]: the fault suite — a cluster on test hosts under clients
//!   and nemeses, checked for linearizability and identical replicas.
//! - [`invariants`]: checks after every scenario (no acknowledged write lost,
//!   replicas agree).
//! - [`linearizability`]: record kv operations from concurrent clients and
//!   check the history is linearizable, key by key.
//! - [`paths`]: the binary and plugins under test.
//! - [`signing`]: a signing key and plugins signed with it.
//!
//! The binary is `<target>/debug/clusterhost`, which cargo does not build for
//! this package: run `cargo build` first, or everything with `cargo xtask test`.

pub mod browser;
pub mod cli;
pub mod cluster;
#[cfg(target_os = "linux")]
pub mod faults;
pub mod invariants;
pub mod kv;
pub mod languages;
pub mod linearizability;
pub mod load;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod node;
pub mod observe;
pub mod ops;
pub mod paths;
pub mod process;
pub mod resources;
pub mod scenario;
pub mod signing;
pub mod tls;
pub mod wait;

pub use cli::{CliOutput, exit};
pub use cluster::TestCluster;
pub use invariants::{
    Acknowledged, assert_acknowledged_present, assert_replicas_agree, assert_replicas_agree_on,
};
pub use node::NodeOptions;
pub use wait::wait_for;
