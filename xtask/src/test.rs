//! `cargo xtask test`: everything CI runs, in order — build the plugins,
//! the guest-side native tests, then the whole host workspace's tests
//! (unit, plugin runtime, and the multi-process cluster tests, which need
//! the plugins and the `clusterhost` binary built first), then the
//! examples a user would run (`cargo test` builds them; this runs them).
//!
//! Arguments after `--` go to `cargo test` (e.g. a test name filter).

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::{command, plugin_tests, plugins, toolchain};

/// Entry point of `cargo xtask test`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let passthrough: Vec<&String> = match args.split_first() {
        None => Vec::new(),
        Some((first, rest)) if first == "--" => rest.iter().collect(),
        Some((first, _)) => {
            anyhow::bail!("`cargo xtask test` takes `-- <cargo test args>`, got `{first}`")
        }
    };
    plugins::run(root, &[])?;
    plugin_tests::run(root, &[])?;
    // The cluster tests spawn the real binary: build the whole workspace
    // first (whole, so feature unification matches `cargo test`).
    command::run(
        Command::new(toolchain::cargo())
            .current_dir(root)
            .args(["build", "--workspace"]),
    )?;
    let mut test = Command::new(toolchain::cargo());
    test.current_dir(root).args(["test", "--workspace"]);
    let filtered = !passthrough.is_empty();
    if filtered {
        test.arg("--").args(passthrough);
    }
    command::run(&mut test)?;
    if !filtered {
        run_examples(root)?;
    }
    Ok(())
}

/// Examples `cargo test --workspace` built, run as a user would.
const EXAMPLES: &[(&str, &[&str])] = &[("embedded_cluster", &["target/plugins/kv.wasm"])];

fn run_examples(root: &Path) -> Result<()> {
    for (name, args) in EXAMPLES {
        eprintln!("== example {name}");
        command::run(
            Command::new(root.join("target/debug/examples").join(name))
                .current_dir(root)
                .args(*args),
        )?;
    }
    Ok(())
}
