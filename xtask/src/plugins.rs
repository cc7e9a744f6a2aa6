//! `cargo xtask plugins`: build every plugin as a wasm32-wasip2 component.
//!
//! Both guest workspaces (`plugins/`, `tests/plugins/`) build into one shared
//! `target/wasm` (equal release profiles, so dependencies compile once), then
//! the components are copied to stable paths the host and its tests use:
//! `target/plugins/<name>.wasm` and `target/plugins/test/<name>.wasm`. Copies
//! happen only when the bytes changed, so an unchanged rebuild touches nothing
//! and the host's file watchers and caches stay quiet.

use crate::command;
use crate::toolchain::{TARGET, WasmToolchain};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A cargo workspace of plugins and the components it produces.
struct PluginWorkspace {
    /// Workspace directory, relative to the repository root.
    directory: &'static str,
    /// Component file stems (the crates' lib names).
    components: &'static [&'static str],
    /// Where the components are published, relative to the repository root.
    output: &'static str,
}

/// Every plugin workspace. A new plugin crate must be listed here too; the
/// build fails if a listed component is missing, so typos cannot go unnoticed.
const WORKSPACES: &[PluginWorkspace] = &[
    PluginWorkspace {
        directory: "plugins",
        components: &["kv", "kv_v2", "counter", "kv_disk"],
        output: "target/plugins",
    },
    PluginWorkspace {
        directory: "tests/plugins",
        components: &[
            "misbehave",
            "wrong_world",
            "bad_import",
            "restore_fails",
            "restore_traps",
            "restore_spins",
            "snapshot_drops",
            "query_counts",
            "upgrade_loses_key",
            "store_faults",
        ],
        output: "target/plugins/test",
    },
];

/// Shared cargo target directory of the wasm builds, relative to the root.
pub const WASM_TARGET_DIR: &str = "target/wasm";

/// Entry point of `cargo xtask plugins`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    crate::expect_no_args("plugins", args)?;
    let started = Instant::now();
    let toolchain = WasmToolchain::ensure()?;
    let target_dir = root.join(WASM_TARGET_DIR);
    for workspace in WORKSPACES {
        let mut build = toolchain.cargo_build();
        build
            .current_dir(root.join(workspace.directory))
            .arg("--target-dir")
            .arg(&target_dir);
        command::run(&mut build)?;
    }

    let built = target_dir.join(TARGET).join("release");
    for workspace in WORKSPACES {
        let output = root.join(workspace.output);
        std::fs::create_dir_all(&output)
            .with_context(|| format!("cannot create {}", output.display()))?;
        for name in workspace.components {
            let file = format!("{name}.wasm");
            let published = publish(&built.join(&file), &output.join(&file))?;
            report(root, &published);
        }
    }
    // Python and JavaScript plugins build into target/wasm too, and publish
    // the same way.
    let mut others = crate::python_plugins::build(root, &target_dir.join("python"))?;
    others.extend(crate::js_plugins::build(root, &target_dir.join("js"))?);
    for built in others {
        let Some(file) = built.file_name() else {
            continue;
        };
        let published = publish(&built, &root.join("target/plugins").join(file))?;
        report(root, &published);
    }
    eprintln!("plugins built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A published component and whether this run changed it.
struct Published {
    path: PathBuf,
    size_bytes: u64,
    changed: bool,
}

/// Copy `source` to `destination` unless it already holds the same bytes.
/// Writes to a temporary file and renames it, so a reader (the host loading a
/// plugin) never sees a half-written component.
/// The plugins and a release build of the workspace (the benchmarks run it).
pub fn build_release(root: &Path) -> Result<()> {
    run(root, &[])?;
    command::run(
        std::process::Command::new(crate::toolchain::cargo())
            .current_dir(root)
            .args(["build", "--release", "--workspace"]),
    )
}

fn publish(source: &Path, destination: &Path) -> Result<Published> {
    let bytes = std::fs::read(source)
        .with_context(|| format!("expected component {} was not built", source.display()))?;
    check_component(source, &bytes)?;
    let size_bytes = bytes.len() as u64;
    let unchanged = std::fs::read(destination).is_ok_and(|existing| existing == bytes);
    if !unchanged {
        let temporary = destination.with_extension("wasm.tmp");
        std::fs::write(&temporary, &bytes)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, destination)
            .with_context(|| format!("cannot move {} into place", destination.display()))?;
    }
    Ok(Published {
        path: destination.to_path_buf(),
        size_bytes,
        changed: !unchanged,
    })
}

/// Layer and version bytes of a binary component (core modules have `01 00 00 00`).
const COMPONENT_HEADER: [u8; 8] = [0x00, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00];

/// Refuse to publish a core module: the host loads components only.
fn check_component(path: &Path, bytes: &[u8]) -> Result<()> {
    if !bytes.starts_with(&COMPONENT_HEADER) {
        bail!(
            "{} is not a WebAssembly component (header {:02x?})",
            path.display(),
            &bytes[..bytes.len().min(8)]
        );
    }
    Ok(())
}

fn report(root: &Path, published: &Published) {
    let shown = published.path.strip_prefix(root).unwrap_or(&published.path);
    let status = if published.changed {
        "updated"
    } else {
        "unchanged"
    };
    println!(
        "{:<40} {:>9} bytes  {status}",
        shown.display(),
        published.size_bytes
    );
}
