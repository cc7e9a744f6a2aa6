//! `cargo xtask test [ARGS]`: everything the host's tests need, then the
//! tests — build the plugins, build the `clusterhost` binary (cargo does not
//! build it for the end-to-end package, which runs it as a process), then
//! `cargo test --workspace ARGS`.

use crate::command;
use crate::toolchain;
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// Entry point of `cargo xtask test`; `args` go to `cargo test`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    crate::plugins::run(root, &[])?;
    let mut build = Command::new(toolchain::cargo());
    build
        .current_dir(root)
        .args(["build", "--package", "clusterhost", "--bin", "clusterhost"]);
    command::run(&mut build)?;
    let mut test = Command::new(toolchain::cargo());
    test.current_dir(root)
        .args(["test", "--workspace"])
        .args(args);
    command::run(&mut test)
}
