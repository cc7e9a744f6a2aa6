//! Loading plugin code: one explicitly configured engine, validation of a
//! component against the contract, a digest, and an on-disk cache of
//! compiled artifacts so a restart does not recompile.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest as _, Sha256};
use wasmtime::component::types::{ComponentExtern, ComponentItem};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::cache::ArtifactCache;
use super::limiter::PluginLimiter;
use super::output_gate::OutputGate;
use super::sandbox::{CallContext, MonotonicClockView, VirtualMonotonicClockHost};
use super::store::StoreView;
use super::store::link::STORE_INTERFACE;
use crate::limits::{
    LOADED_ARTIFACT_PRUNES_KEPT, PLUGIN_APPLY_COMPILES_MAX, PLUGIN_BYTES_MAX, PLUGIN_COMPILES_MAX,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "state-machine",
    });
}

pub use bindings::clusterhost::fsm::types::Entry as WitEntry;
pub use bindings::{StateMachine, StateMachinePre};

/// The name of the world every plugin must implement.
pub const WORLD_NAME: &str = "clusterhost:fsm/state-machine@0.2.0";

/// The four preamble bytes every wasm binary starts with.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version field of a core module (a component has a different layer byte).
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// The sha256 of a plugin's bytes: its identity everywhere.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginDigest(pub [u8; 32]);

impl PluginDigest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lower-case hex, as shown to users.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The digest `text` names, in the hex [`Self::to_hex`] writes.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for PluginDigest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PluginDigest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PluginDigest({})", self.short())
    }
}

/// Why bytes could not become a runnable plugin. Loading has no side
/// effects, so any of these leaves everything as it was.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Larger than the host accepts.
    #[error("plugin is {bytes} bytes, larger than the {max} byte limit")]
    TooLarge { bytes: usize, max: usize },
    /// Not WebAssembly at all.
    #[error("not a WebAssembly file (no \\0asm header)")]
    NotWasm,
    /// A core module: plugins must be components.
    #[error(
        "this is a core WebAssembly module, not a component; build the plugin for \
         wasm32-wasip2 so the output is a component"
    )]
    CoreModule,
    /// Wasm that does not compile.
    #[error("invalid WebAssembly component: {0}")]
    Invalid(String),
    /// A component that needs something the host does not provide.
    #[error("plugin imports something clusterhost does not provide: {0}")]
    UnsupportedImport(String),
    /// A component that does not export the state-machine world.
    #[error("plugin does not implement the {WORLD_NAME} world: {0}")]
    WrongWorld(String),
}

/// Per-instance data a plugin's store carries.
pub struct InstanceState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: PluginLimiter,
    /// The call in progress, which the shadowed monotonic clock reads.
    pub(super) call: CallContext,
    /// The instance's view of the plugin store, and what the call in
    /// progress may do with it.
    pub(super) store: StoreView,
}

impl InstanceState {
    fn monotonic_clock(&mut self) -> MonotonicClockView<'_> {
        MonotonicClockView {
            call: &self.call,
            table: &mut self.table,
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The engine and linker shared by every plugin a node runs.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<InstanceState>>,
    cache: Option<ArtifactCache>,
    /// Compilations running at once for uploads and precompiles
    /// ([`PLUGIN_COMPILES_MAX`]), so a burst of uploads cannot take every
    /// core.
    compiles: Arc<tokio::sync::Semaphore>,
    /// Compilations running at once to apply the log
    /// ([`PLUGIN_APPLY_COMPILES_MAX`]): its own slot, so applying a deploy
    /// never waits behind uploads.
    applying: Arc<tokio::sync::Semaphore>,
    /// Loads in progress, by digest: a second load of the same plugin (a
    /// deploy applied while its precompile runs) waits for the first and
    /// then reads its compiled artifact from the cache instead of compiling
    /// it again.
    in_flight: Arc<Mutex<HashMap<PluginDigest, Arc<tokio::sync::Mutex<()>>>>>,
    /// The rate every instance of every plugin this engine loads shares
    /// for its output: one engine per node, so one gate per node.
    output: OutputGate,
    /// Plugins loaded since the cache was last pruned: [`Self::prune_cache`]
    /// keeps their artifacts, so a plugin compiled ahead of its deploy
    /// entry (the `--plugin` of a first start, a precompiled upload, a
    /// lagging follower's queue of deploys) is still cached when that entry
    /// applies. Each counts the prunes it outlived; it leaves the set once
    /// retained or after [`LOADED_ARTIFACT_PRUNES_KEPT`] prunes.
    loaded_since_prune: Arc<Mutex<HashMap<PluginDigest, usize>>>,
}

impl PluginEngine {
    /// An engine configured for deterministic execution; compiled artifacts
    /// are kept in `cache` when given (see [`ArtifactCache`]).
    pub fn new(cache: Option<ArtifactCache>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // Fuel is the deterministic bound on every call.
            .consume_fuel(true)
            // Float results must not depend on the host CPU.
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            // (Shared-memory threads, which would make execution order
            // observable, are compiled out: wasmtime's `threads` feature is off.)
            // Shared-memory threads would make execution order observable.
            // Trap messages carry the trap code only; backtraces are noise
            // in a replicated result and cost time on every trap.
            .wasm_backtrace_max_frames(None)
            .parallel_compilation(true);
        let engine = Engine::new(&config).map_err(wasm_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wasm_error)?;
        // Replace wasmtime-wasi's monotonic clock, whose pollables sleep in
        // real time, by the virtual one (same interface, same version).
        linker.allow_shadowing(true);
        monotonic_clock::add_to_linker::<InstanceState, VirtualMonotonicClockHost>(
            &mut linker,
            InstanceState::monotonic_clock,
        )
        .map_err(wasm_error)?;
        linker.allow_shadowing(false);
        // Linked for every plugin; only those that call it import it.
        super::store::link::add_to_linker(&mut linker).map_err(wasm_error)?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            cache,
            compiles: Arc::new(tokio::sync::Semaphore::new(PLUGIN_COMPILES_MAX)),
            applying: Arc::new(tokio::sync::Semaphore::new(PLUGIN_APPLY_COMPILES_MAX)),
            in_flight: Arc::default(),
            output: OutputGate::default(),
            loaded_since_prune: Arc::default(),
        })
    }

    /// Remove from the cache every artifact but those of `keep` (the
    /// running plugin and the versions retained for rollback) and of the
    /// plugins loaded since the last prune, and any leftover temporary
    /// file. Blocking file I/O on a small directory.
    pub fn prune_cache(&self, keep: &[PluginDigest]) {
        let Some(cache) = &self.cache else {
            return;
        };
        let recent: Vec<PluginDigest> = {
            let mut loaded = self
                .loaded_since_prune
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            loaded.retain(|digest, prunes| {
                *prunes += 1;
                !keep.contains(digest) && *prunes <= LOADED_ARTIFACT_PRUNES_KEPT
            });
            loaded.keys().copied().collect()
        };
        let names: Vec<String> = keep
            .iter()
            .chain(&recent)
            .map(|digest| self.cache_name(digest))
            .collect();
        let removed = cache.prune(&names);
        if removed > 0 {
            tracing::info!(
                removed,
                kept = names.len(),
                "pruned the compiled-plugin cache"
            );
        }
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The node's gate on plugin output, for its counts.
    pub fn output_gate(&self) -> &OutputGate {
        &self.output
    }

    /// [`PluginEngine::load`] on a blocking thread: compiling takes
    /// hundreds of milliseconds and must not stall the async workers. For
    /// uploads and precompiles; they share one compile slot.
    pub async fn load_off_thread(&self, bytes: Vec<u8>) -> Result<PluginCode, LoadError> {
        self.load_in_slot(&self.compiles, bytes).await
    }

    /// [`PluginEngine::load_off_thread`] for applying the log: a deploy
    /// entry or a snapshot's plugin. It has a compile slot of its own.
    pub async fn load_to_apply(&self, bytes: Vec<u8>) -> Result<PluginCode, LoadError> {
        self.load_in_slot(&self.applying, bytes).await
    }

    async fn load_in_slot(
        &self,
        slots: &Arc<tokio::sync::Semaphore>,
        bytes: Vec<u8>,
    ) -> Result<PluginCode, LoadError> {
        let digest = PluginDigest::of(&bytes);
        let same_plugin = self.in_flight_entry(digest);
        // Slot first, then the plugin's lock: a load waiting for this plugin
        // already has its slot, so the apply path never waits behind
        // uploads through a precompile of the same plugin. Both are held by
        // the compiling thread itself, so a caller that gives up frees
        // neither while its compile still runs. The semaphore is never
        // closed: acquiring only waits.
        let compiling = slots.clone().acquire_owned().await;
        let loading_this = same_plugin.clone().lock_owned().await;
        let engine = self.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let _held = (loading_this, compiling);
            engine.load_with_digest(bytes.into(), digest)
        })
        .await
        .unwrap_or_else(|error| Err(LoadError::Invalid(format!("the compiler failed: {error}"))));
        drop(same_plugin);
        self.forget_in_flight(digest);
        loaded
    }

    /// The lock of loads of `digest`, shared by every load of it in progress.
    fn in_flight_entry(&self, digest: PluginDigest) -> Arc<tokio::sync::Mutex<()>> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.entry(digest).or_default().clone()
    }

    /// Drop the lock of `digest` once no load of it holds or waits for it
    /// (entries are cloned under the map's lock, so the count is exact).
    fn forget_in_flight(&self, digest: PluginDigest) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight
            .get(&digest)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            in_flight.remove(&digest);
        }
    }

    /// Validate and compile `bytes` into runnable plugin code.
    pub fn load(&self, bytes: Arc<[u8]>) -> Result<PluginCode, LoadError> {
        check_header(&bytes)?;
        let digest = PluginDigest::of(&bytes);
        self.load_with_digest(bytes, digest)
    }

    /// [`PluginEngine::load`] of bytes whose digest the caller has already
    /// taken (hashing up to 64 MiB is not free).
    fn load_with_digest(
        &self,
        bytes: Arc<[u8]>,
        digest: PluginDigest,
    ) -> Result<PluginCode, LoadError> {
        check_header(&bytes)?;
        let component = self.compile(&bytes, &digest)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|error| LoadError::UnsupportedImport(format!("{error:#}")))?;
        let pre = StateMachinePre::new(instance_pre)
            .map_err(|error| LoadError::WrongWorld(format!("{error:#}")))?;
        let uses_store = component
            .component_type()
            .imports(&self.engine)
            .any(|(name, _)| name == STORE_INTERFACE);
        Ok(PluginCode {
            uses_store,
            digest,
            bytes,
            component,
            pre,
            output: self.output.clone(),
        })
    }

    fn compile(&self, bytes: &[u8], digest: &PluginDigest) -> Result<Component, LoadError> {
        let name = self.cache_name(digest);
        if self.cache.is_some() {
            self.loaded_since_prune
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(*digest, 0);
        }
        if let Some(cache) = &self.cache
            && let Some(artifact) = cache.read(&name)
        {
            // SAFETY: the artifact's tag verified under this node's cache
            // key, so it is what `Component::serialize` of this same engine
            // configuration (the name carries its compatibility hash) wrote.
            match unsafe { Component::deserialize(&self.engine, &artifact) } {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(%name, "ignoring unusable compiled plugin cache: {error:#}");
                }
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|error| LoadError::Invalid(format!("{error:#}")))?;
        if let Some(cache) = &self.cache
            && let Err(error) = write_cache(cache, &name, &component)
        {
            tracing::warn!(%name, "could not cache compiled plugin: {error:#}");
        }
        Ok(component)
    }

    /// The cache file name of a plugin compiled by this engine.
    fn cache_name(&self, digest: &PluginDigest) -> String {
        let mut hasher = DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{}-{:016x}.cwasm", digest.to_hex(), hasher.finish())
    }

    /// Describe `bytes` for `plugin inspect`: what it is, whether it fits the
    /// contract, and what it imports and exports.
    pub fn inspect(&self, bytes: &[u8]) -> Result<PluginReport, LoadError> {
        check_header(bytes)?;
        let component = Component::new(&self.engine, bytes)
            .map_err(|error| LoadError::Invalid(format!("{error:#}")))?;
        let component_type = component.component_type();
        let imports = component_type
            .imports(&self.engine)
            .map(|(name, item)| format!("{name} ({})", item_kind(&item)))
            .collect();
        let exports = component_type
            .exports(&self.engine)
            .map(|(name, item)| format!("{name} ({})", item_kind(&item)))
            .collect();
        let contract = self
            .linker
            .instantiate_pre(&component)
            .map_err(|error| LoadError::UnsupportedImport(format!("{error:#}")))
            .and_then(|instance_pre| {
                StateMachinePre::new(instance_pre)
                    .map_err(|error| LoadError::WrongWorld(format!("{error:#}")))
            })
            .map(|_| ())
            .map_err(|error| error.to_string());
        Ok(PluginReport {
            digest: PluginDigest::of(bytes),
            size_bytes: bytes.len(),
            world: contract.as_ref().ok().map(|()| WORLD_NAME.to_string()),
            contract_error: contract.err(),
            imports,
            exports,
        })
    }
}

fn write_cache(cache: &ArtifactCache, name: &str, component: &Component) -> anyhow::Result<()> {
    let serialized = component.serialize().map_err(wasm_error)?;
    cache.write(name, &serialized)?;
    Ok(())
}

fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() > PLUGIN_BYTES_MAX {
        return Err(LoadError::TooLarge {
            bytes: bytes.len(),
            max: PLUGIN_BYTES_MAX,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(LoadError::NotWasm);
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

/// wasmtime's error type is not `std::error::Error`; keep its whole chain.
fn wasm_error(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{error:#}")
}

fn item_kind(item: &ComponentExtern<'_>) -> &'static str {
    match &item.ty {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

/// What `plugin inspect` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginReport {
    /// sha256 of the bytes.
    #[serde(serialize_with = "serialize_digest")]
    pub digest: PluginDigest,
    /// Size of the file.
    pub size_bytes: usize,
    /// The world it implements, when it fits the contract.
    pub world: Option<String>,
    /// Why it does not fit the contract, when it does not.
    pub contract_error: Option<String>,
    /// What it imports.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
}

fn serialize_digest<S: serde::Serializer>(
    digest: &PluginDigest,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&digest.to_hex())
}

/// Validated, compiled plugin code, ready to instantiate any number of times.
#[derive(Clone)]
pub struct PluginCode {
    /// Whether the plugin imports the store (its state then includes it).
    uses_store: bool,
    digest: PluginDigest,
    bytes: Arc<[u8]>,
    component: Component,
    pre: StateMachinePre<InstanceState>,
    /// The loading engine's output gate.
    output: OutputGate,
}

impl PluginCode {
    /// The sha256 of the plugin bytes.
    pub fn digest(&self) -> PluginDigest {
        self.digest
    }

    /// The plugin bytes, as loaded.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// Whether the plugin imports the host's store.
    pub fn uses_store(&self) -> bool {
        self.uses_store
    }

    pub(super) fn pre(&self) -> &StateMachinePre<InstanceState> {
        &self.pre
    }

    /// The gate its instances' output passes (the loading engine's).
    pub(super) fn output_gate(&self) -> &OutputGate {
        &self.output
    }
}

impl fmt::Debug for PluginCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PluginCode")
            .field("digest", &self.digest)
            .field("size_bytes", &self.bytes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Longer than any compile of a few bytes takes.
    const PROMPT: Duration = Duration::from_secs(10);
    /// Longer than compiling kv.wasm takes on a loaded machine.
    const COMPILED_WITHIN: Duration = Duration::from_secs(120);

    #[tokio::test]
    async fn applying_the_log_does_not_wait_behind_an_upload_compile() {
        let engine = PluginEngine::new(None).expect("engine");
        let _uploading = engine
            .compiles
            .clone()
            .acquire_owned()
            .await
            .expect("the upload slot");
        let applied = tokio::time::timeout(PROMPT, engine.load_to_apply(b"not wasm".to_vec()))
            .await
            .expect("applying waited for the upload's compile slot");
        assert!(applied.is_err(), "garbage loaded");
        let second_upload = engine.load_off_thread(b"not wasm".to_vec());
        tokio::pin!(second_upload);
        assert!(
            futures::poll!(&mut second_upload).is_pending(),
            "a second upload compiled while the slot was held"
        );
    }

    #[tokio::test]
    async fn a_load_of_a_plugin_being_loaded_waits_for_it_and_then_reads_the_cache() {
        let kv = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/kv.wasm"),
        )
        .expect("target/plugins/kv.wasm (cargo xtask plugins)");
        let root = tempfile::tempdir().expect("cache dir");
        let cache = ArtifactCache::open(
            &root.path().join("compiled"),
            crate::plugin::cache::CacheKey::random().expect("key"),
        )
        .expect("cache");
        let engine = PluginEngine::new(Some(cache)).expect("engine");
        let digest = PluginDigest::of(&kv);
        let precompiling = engine.in_flight_entry(digest);
        let held = precompiling.lock().await;
        let apply = engine.load_to_apply(kv.clone());
        tokio::pin!(apply);
        assert!(
            futures::poll!(&mut apply).is_pending(),
            "the apply compiled beside a load of the same plugin"
        );
        drop(held);
        drop(precompiling);
        let (applied, uploaded) = tokio::join!(
            tokio::time::timeout(COMPILED_WITHIN, apply),
            tokio::time::timeout(COMPILED_WITHIN, engine.load_off_thread(kv))
        );
        assert!(applied.expect("in time").is_ok() && uploaded.expect("in time").is_ok());
        let left = engine.in_flight.lock().expect("in-flight map").len();
        assert_eq!(left, 0, "a finished load left its lock behind");
    }
}
