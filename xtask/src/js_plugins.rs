//! JavaScript plugins, built by `cargo xtask plugins` with componentize-js.
//!
//! componentize-js comes from the npm registry into a project-local directory
//! (`target/componentize-js`), installed on first use; `node` and `npm`
//! come from Debian's packages when missing. Its bindings come from `wit/`, like every
//! plugin's. The component embeds the SpiderMonkey engine with the module
//! pre-initialized, which is why it is ~12 MB.

use crate::command;
use crate::python_plugins::newer_than_all;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The componentize-js release the JavaScript plugins are built with:
/// pinned, so a new release cannot change the components under us.
const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// Where it is installed, relative to the repository root.
const INSTALL_DIR: &str = "target/componentize-js";

/// Longest the first `npm install` may take (about 150 packages).
const NPM_INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest `apt-get install nodejs npm` may take.
const APT_INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// Engine features switched off. `http` and `fetch-event` would import
/// `wasi:http`, which the host's linker does not define, so the component
/// could not load. Clocks, random and stdio stay: the host gives every plugin
/// virtual ones (the leader-stamped time of the entry, a stream seeded from
/// its log position, the host's log), and stdio lets an uncaught exception
/// reach that log instead of trapping silently.
const DISABLED_FEATURES: &[&str] = &["http", "fetch-event"];

/// A JavaScript plugin: its directory (relative to the root), its source
/// files, and the component file stem. componentize-js takes one module, so
/// the files are joined in this order (plain scripts, the last one exporting
/// the world's functions) into `target/componentize-js/<component>.js`.
pub struct JsPlugin {
    pub directory: &'static str,
    pub modules: &'static [&'static str],
    pub component: &'static str,
}

/// Every JavaScript plugin; they publish into `target/plugins/`.
pub const JS_PLUGINS: &[JsPlugin] = &[JsPlugin {
    directory: "plugins/kv-js",
    modules: &[
        "rust_format.js",
        "serde_reader.js",
        "serde_types.js",
        "serde_derive.js",
        "app.js",
    ],
    component: "kv_js",
}];

/// The componentize-js executable, installing it first when missing.
fn ensure_componentize(root: &Path) -> Result<PathBuf> {
    let install = root.join(INSTALL_DIR);
    let tool = install.join("node_modules/.bin/componentize-js");
    if tool.is_file() {
        return Ok(tool);
    }
    std::fs::create_dir_all(&install)
        .with_context(|| format!("cannot create {}", install.display()))?;
    ensure_npm()?;
    command::run_with_timeout(
        Command::new("npm")
            .current_dir(&install)
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .arg(COMPONENTIZE_JS),
        NPM_INSTALL_TIMEOUT,
    )
    .context("node and npm are needed to build the JavaScript plugins")?;
    Ok(tool)
}

/// Install Debian's node and npm when `npm` is not on the path.
fn ensure_npm() -> Result<()> {
    let found = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if found {
        return Ok(());
    }
    command::run_with_timeout(
        Command::new("apt-get").args(["install", "-y", "nodejs", "npm"]),
        APT_INSTALL_TIMEOUT,
    )
    .context("cannot install node and npm for the JavaScript plugins (needs root and apt sources)")
}

/// Build every JavaScript plugin into `built`, returning the built files.
pub fn build(root: &Path, built: &Path) -> Result<Vec<PathBuf>> {
    let tool = ensure_componentize(root)?;
    std::fs::create_dir_all(built).with_context(|| format!("cannot create {}", built.display()))?;
    let mut outputs = Vec::new();
    for plugin in JS_PLUGINS {
        let output = built.join(format!("{}.wasm", plugin.component));
        // componentize-js pre-initializes the engine on every run (~30 s or
        // more): skip it while the component is newer than every input.
        let inputs = [root.join(plugin.directory), root.join("wit")];
        if newer_than_all(&output, &inputs) {
            outputs.push(output);
            continue;
        }
        let module = join_modules(root, plugin)?;
        let mut componentize = Command::new(&tool);
        componentize
            .current_dir(root)
            .args(["--wit", "wit", "--world-name", "state-machine", "--disable"])
            .args(DISABLED_FEATURES)
            .arg("--out")
            .arg(&output)
            .arg(&module);
        command::run(&mut componentize)?;
        outputs.push(output);
    }
    Ok(outputs)
}

/// Join a plugin's source files into the one module componentize-js reads.
fn join_modules(root: &Path, plugin: &JsPlugin) -> Result<PathBuf> {
    let mut joined = String::new();
    for module in plugin.modules {
        let path = root.join(plugin.directory).join(module);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        joined.push_str(&format!("// ---- {module}\n{text}\n"));
    }
    let path = root
        .join(INSTALL_DIR)
        .join(format!("{}.js", plugin.component));
    std::fs::write(&path, joined).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
