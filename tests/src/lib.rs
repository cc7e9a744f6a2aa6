//! End-to-end test support for clusterhost: a [`TestCluster`] harness that
//! owns real `clusterhost` processes (ports, temp data dirs, logs) and kills
//! them when the test ends, plus helpers the scenarios in `tests/` share.
//!
//! Layout:
//! - [`cluster`]: [`TestCluster`] — start, kill -9, SIGTERM, restart, clients,
//!   the CLI and status of each node; prints node logs when a test fails.
//! - [`process`]: one owned child process.
//! - [`cli`]: running the real command line; exit codes.
//! - [`wait`]: [`wait_for`] — poll a condition instead of sleeping.
//! - [`load`]: [`load::WriteStream`] — concurrent writers through chosen
//!   endpoints, recording what was acknowledged and when.
//! - [`kv`]: the example key-value plugin's commands and reads.
//! - [`netns`]: [`netns::TestNetwork`] — hosts in Linux network namespaces
//!   behind one bridge, for running nodes apart and cutting links between
//!   them (partitions, a bridge host, one flapping link) while the test, as
//!   client, still reaches every host. Needs root.
//! - [`invariants`]: checks after every scenario (no acknowledged write lost,
//!   replicas agree).
//! - [`paths`]: the binary and plugins under test.
//!
//! The binary is `<target>/debug/clusterhost`, which cargo does not build for
//! this package: run `cargo build` first, or everything with `cargo xtask test`.

pub mod cli;
pub mod cluster;
pub mod invariants;
pub mod kv;
pub mod load;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod paths;
pub mod process;
pub mod wait;

pub use cli::{CliOutput, exit};
pub use cluster::{NodeOptions, TestCluster};
pub use invariants::{
    Acknowledged, assert_acknowledged_present, assert_replicas_agree, assert_replicas_agree_on,
};
pub use wait::wait_for;
