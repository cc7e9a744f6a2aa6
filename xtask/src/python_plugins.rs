//! Python plugins, built by `cargo xtask plugins` with componentize-py.
//!
//! componentize-py comes from the Python package index into a project-local
//! virtual environment (`target/componentize-venv`), created on first use, so
//! a fresh machine needs only `python3` with `venv`. Its bindings come from
//! `wit/`, the one contract every plugin, in any language, is built against.

use crate::command;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release the Python plugins are built with: pinned,
/// so a new release cannot change the components under us.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The virtual environment, relative to the repository root.
const VENV: &str = "target/componentize-venv";

/// A Python plugin: its directory (relative to the root), the module that
/// implements the world, and the component file stem.
pub struct PythonPlugin {
    pub directory: &'static str,
    pub module: &'static str,
    pub component: &'static str,
}

/// Every Python plugin; they publish into `target/plugins/`.
pub const PYTHON_PLUGINS: &[PythonPlugin] = &[PythonPlugin {
    directory: "plugins/kv-py",
    module: "app",
    component: "kv_py",
}];

/// The componentize-py executable, installing it first when missing.
fn ensure_componentize(root: &Path) -> Result<PathBuf> {
    let venv = root.join(VENV);
    let tool = venv.join("bin/componentize-py");
    if tool.is_file() {
        return Ok(tool);
    }
    command::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .context("python3 with venv is needed to build the Python plugins")?;
    command::run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", COMPONENTIZE_PY]))?;
    Ok(tool)
}

/// Build every Python plugin into `built`, returning the built files.
pub fn build(root: &Path, built: &Path) -> Result<Vec<PathBuf>> {
    let tool = ensure_componentize(root)?;
    std::fs::create_dir_all(built).with_context(|| format!("cannot create {}", built.display()))?;
    let mut outputs = Vec::new();
    for plugin in PYTHON_PLUGINS {
        let output = built.join(format!("{}.wasm", plugin.component));
        // componentize-py takes ~40 s and has no incremental build of its
        // own: skip it while the component is newer than every input.
        let inputs = [root.join(plugin.directory), root.join("wit")];
        if newer_than_all(&output, &inputs) {
            outputs.push(output);
            continue;
        }
        command::run(
            Command::new(&tool)
                .current_dir(root)
                .args(["-d", "wit", "-w", "state-machine", "componentize", "-p"])
                .arg(plugin.directory)
                .arg(plugin.module)
                .arg("-o")
                .arg(&output),
        )?;
        outputs.push(output);
    }
    Ok(outputs)
}

/// Whether `output` exists and was modified after every file in `inputs`
/// (directories, one level deep). Shared with the JavaScript plugins.
pub fn newer_than_all(output: &Path, inputs: &[PathBuf]) -> bool {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    let Some(built) = modified(output) else {
        return false;
    };
    inputs.iter().all(|directory| {
        std::fs::read_dir(directory).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .all(|entry| modified(&entry.path()).is_some_and(|time| time < built))
        })
    })
}
