//! `cargo xtask plugin-tests`: the native unit tests of the guest side — the
//! SDK, the example plugins and the test plugins. They run on the host
//! architecture through `clusterhost_sdk::testing::Harness`, so no wasm
//! toolchain is needed.

use crate::command;
use crate::toolchain;
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// The guest workspaces, relative to the repository root.
const GUEST_WORKSPACES: &[&str] = &["guest-sdk", "plugins", "tests/plugins"];
/// One native target directory for all of them, so shared dependencies (serde)
/// build once; separate from the host's `target/debug`.
const NATIVE_TARGET_DIR: &str = "target/guest-native";

/// Entry point of `cargo xtask plugin-tests`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    crate::expect_no_args("plugin-tests", args)?;
    for workspace in GUEST_WORKSPACES {
        let mut test = Command::new(toolchain::cargo());
        test.current_dir(root.join(workspace))
            .args(["test", "--workspace", "--target-dir"])
            .arg(root.join(NATIVE_TARGET_DIR));
        command::run(&mut test)?;
    }
    eprintln!(
        "guest tests passed in {} workspaces",
        GUEST_WORKSPACES.len()
    );
    Ok(())
}
