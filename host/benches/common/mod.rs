//! What the plugin benchmarks share.

use std::path::PathBuf;
use std::sync::Arc;

/// The bytes of `target/plugins/{name}.wasm`, built by `cargo xtask plugins`.
pub fn plugin_bytes(name: &str) -> Arc<[u8]> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/plugins/{name}.wasm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run `cargo xtask plugins` first",
            path.display()
        )
    });
    Arc::from(bytes)
}
