//! Where the things under test live: the `clusterhost` binary and the plugin
//! components. Missing or stale artifacts fail with the command that fixes
//! them, instead of a confusing test failure later.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// Overrides the binary the harness runs (an absolute path).
pub const BINARY_ENV: &str = "CLUSTERHOST_BIN";

/// The repository root: this package's manifest directory is `<root>/tests`.
pub fn workspace_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir)
}

/// The `clusterhost` binary next to the running test executable
/// (`<target>/debug/deps/<test>` → `<target>/debug/clusterhost`), or
/// [`BINARY_ENV`]. Panics with the fix when it is missing or older than the
/// host's sources (cargo does not build another package's binary for our tests).
pub fn clusterhost_binary() -> &'static Path {
    BINARY.get_or_init(|| match locate_binary() {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    })
}

/// The binary every cluster of this process runs, once chosen.
static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Run `binary` (e.g. a release build, for benchmarks) instead of the one
/// next to the executable. Must be called before any node starts.
pub fn use_binary(binary: &Path) -> Result<(), String> {
    if !binary.is_file() {
        return Err(format!("{} is not a file", binary.display()));
    }
    BINARY
        .set(binary.to_path_buf())
        .map_err(|_| "the clusterhost binary was already chosen".to_string())
}

fn locate_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(BINARY_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{BINARY_ENV}={} is not a file", path.display()))
        };
    }
    let executable = std::env::current_exe()
        .map_err(|error| format!("cannot locate the test executable: {error}"))?;
    let name = format!("clusterhost{}", std::env::consts::EXE_SUFFIX);
    let found = executable
        .ancestors()
        .skip(1)
        .map(|directory| directory.join(&name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "no `{name}` binary found next to {} — build it first: \
                 `cargo build -p clusterhost` (or run everything with `cargo xtask test`)",
                executable.display()
            )
        })?;
    check_not_stale(&found)?;
    Ok(found)
}

/// Refuse a binary older than any file under `host/`: testing yesterday's
/// build would pass or fail for the wrong reasons.
fn check_not_stale(binary: &Path) -> Result<(), String> {
    let built = modified(binary).unwrap_or(SystemTime::UNIX_EPOCH);
    let host = workspace_root().join("host");
    let newest = ["src", "proto", "Cargo.toml", "build.rs"]
        .iter()
        .filter_map(|entry| newest_modification(&host.join(entry)))
        .max();
    match newest {
        Some((source_time, source)) if source_time > built => Err(format!(
            "{} is older than {} — rebuild it: `cargo build -p clusterhost` \
             (or run everything with `cargo xtask test`)",
            binary.display(),
            source.display()
        )),
        _ => Ok(()),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

fn newest_modification(path: &Path) -> Option<(SystemTime, PathBuf)> {
    let own = modified(path).map(|time| (time, path.to_path_buf()));
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| newest_modification(&entry.path()))
        .chain(own.filter(|_| !path.is_dir()))
        .max()
}

/// A plugin built by `cargo xtask plugins`: `name` is relative to
/// `target/plugins/` (e.g. `kv.wasm`, `test/misbehave.wasm`).
pub fn plugin(name: &str) -> PathBuf {
    let path = workspace_root().join("target/plugins").join(name);
    assert!(
        path.is_file(),
        "plugin {} is missing — run `cargo xtask plugins` first",
        path.display()
    );
    path
}

/// The example key-value plugin.
pub fn kv_plugin() -> PathBuf {
    plugin("kv.wasm")
}

/// The test plugin that traps, spins and allocates on command.
pub fn misbehave_plugin() -> PathBuf {
    plugin("test/misbehave.wasm")
}
