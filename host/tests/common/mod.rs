//! What the plugin store's integration tests share: a built plugin loaded
//! into a fresh engine, and a log position.

use std::path::PathBuf;
use std::sync::Arc;

use clusterhost::plugin::{EntryPosition, PluginCode, PluginEngine};

/// The plugin at `target/plugins/<relative>`, loaded into an engine
/// without a compiled cache.
pub fn load(relative: &str) -> PluginCode {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(relative);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run `cargo xtask plugins`", path.display()));
    let engine = PluginEngine::new(None).expect("engine");
    engine.load(Arc::from(bytes)).expect("a valid plugin")
}

/// Entry `index` of term 1, stamped at a fixed time plus its index.
pub fn position(index: u64) -> EntryPosition {
    EntryPosition {
        index,
        term: 1,
        time_ms: 1_700_000_000_000 + index,
    }
}
