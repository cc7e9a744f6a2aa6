//! Project tooling in Rust, run as `cargo xtask <command>` from anywhere in the
//! repository (the alias lives in `.cargo/config.toml`).
//!
//! One module per subcommand; `command` holds the shared helpers for running
//! child processes. To add a subcommand (`test`, `demo`, `bench`, ...): write a
//! module with a `pub fn run(root: &Path, args: &[String]) -> Result<()>` and
//! add a row to [`SUBCOMMANDS`].

mod ab_pairs;
mod bench;
mod bench_languages;
mod bench_report;
mod command;
mod compare;
mod demo;
mod etcd;
mod failover;
mod faults;
mod growth;
mod growth_load;
mod growth_report;
mod growth_state;
mod js_plugins;
mod metrics_overhead;
mod plugin_tests;
mod plugins;
mod python_plugins;
mod test;
mod tls_overhead;
mod toolchain;
mod upgrade;

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A subcommand: its name, one line of help, and its entry point.
struct Subcommand {
    name: &'static str,
    help: &'static str,
    run: fn(root: &Path, args: &[String]) -> Result<()>,
}

/// Every subcommand, in the order `help` lists them.
const SUBCOMMANDS: &[Subcommand] = &[
    Subcommand {
        name: "plugins",
        help: "build the plugins for wasm32-wasip2 into target/plugins/ (tests: target/plugins/test/)",
        run: plugins::run,
    },
    Subcommand {
        name: "plugin-tests",
        help: "run the native unit tests of guest-sdk, plugins/ and tests/plugins/",
        run: plugin_tests::run,
    },
    Subcommand {
        name: "test",
        help: "build everything and run every test (what CI runs); `-- ARGS` go to cargo test",
        run: test::run,
    },
    Subcommand {
        name: "bench",
        help: "release build; load a local cluster and the plugin path; write target/bench/report.md (--quick for a short run; --compare etcd side by side with etcd; --only metrics-overhead|tls-overhead|cluster|growth: one part alone; growth: how cost grows, target/bench/growth.md)",
        run: bench::run,
    },
    Subcommand {
        name: "faults",
        help: "the fault suite: every nemesis on 3 and 5 nodes (--soak 30m: random ones until the time is up); needs root",
        run: faults::run,
    },
    Subcommand {
        name: "upgrade-test",
        help: "a rolling upgrade under writes from the binary of an earlier commit (built once into target/upgrade/) to this one",
        run: upgrade::run,
    },
    Subcommand {
        name: "demo",
        help: "start a local cluster on the embedded defaults, use it, and stop it",
        run: demo::run,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let Some((name, rest)) = args.split_first() else {
        print_help();
        bail!("no command given");
    };
    if matches!(name.as_str(), "help" | "-h" | "--help") {
        print_help();
        return Ok(());
    }
    let Some(subcommand) = SUBCOMMANDS
        .iter()
        .find(|subcommand| subcommand.name == name)
    else {
        print_help();
        bail!("unknown command `{name}`");
    };
    (subcommand.run)(&repo_root(), rest)
}

fn print_help() {
    eprintln!("Usage: cargo xtask <command> [args]\n\nCommands:");
    for subcommand in SUBCOMMANDS {
        eprintln!("  {:<14} {}", subcommand.name, subcommand.help);
    }
}

/// The repository root: xtask's manifest directory is `<root>/xtask`.
fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Fail if a subcommand that takes no arguments was given some.
fn expect_no_args(command: &str, args: &[String]) -> Result<()> {
    if let Some(first) = args.first() {
        bail!("`cargo xtask {command}` takes no arguments, got `{first}`");
    }
    Ok(())
}
