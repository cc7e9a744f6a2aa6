//! Bounds of the plugin sandbox, of `plugin check`, and of the plugin store.

use std::time::Duration;

// ---- `plugin check` ----------------------------------------------------------

/// Most steps one command file may hold: the round-trip check replays the
/// rest of the file from several points, so its cost grows with the square.
pub const CHECK_SCRIPT_STEPS_MAX: usize = 10_000;

/// Points in the command file at which the round-trip check snapshots,
/// restores into a fresh instance and replays the rest.
pub const CHECK_ROUND_TRIP_POINTS: usize = 4;

/// Bytes shown either side of where two answers or snapshots part.
pub const CHECK_DIFF_CONTEXT_BYTES: usize = 48;

// ---- The plugin sandbox ----------------------------------------------------

/// Fuel one plugin call may burn before it is stopped. Fuel counts wasm
/// instructions, so the same call with the same input stops at the same point
/// on every machine: it is the deterministic bound on runaway plugins.
pub const PLUGIN_FUEL_PER_CALL: u64 = 1_000_000_000;

/// Fuel for `restore` and `snapshot`, which walk the whole state and so may
/// legitimately need much more than one `apply`.
pub const PLUGIN_FUEL_PER_BULK_CALL: u64 = 50_000_000_000;

/// Bytes all linear memories of one plugin instance may total.
pub const PLUGIN_MEMORY_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Largest value of `--plugin-memory-mib`.
pub const PLUGIN_MEMORY_MIB_FLAG_MAX: u64 = 4096;

/// Elements all tables of one plugin instance may total. Each costs the
/// host a pointer, so this is 8 MiB; a component needs a few per function
/// whose address it takes.
pub const PLUGIN_TABLE_ELEMENTS_MAX: usize = 1024 * 1024;

/// Core instances one plugin store may create.
pub const PLUGIN_INSTANCES_MAX: usize = 64;
/// Tables per plugin store.
pub const PLUGIN_TABLES_MAX: usize = 64;
/// Linear memories per plugin store.
pub const PLUGIN_MEMORIES_MAX: usize = 64;

/// Largest response a plugin may return from `apply` or `query`, in bytes.
/// A larger response fails the call identically on every replica.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest plugin snapshot, in bytes.
pub const SNAPSHOT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Writes are refused once the plugin state (its snapshot) is this large,
/// in bytes (as etcd's `--quota-backend-bytes`): below the snapshot limit,
/// so a state can always still be snapshotted. A cluster setting.
pub const STATE_QUOTA_BYTES_DEFAULT: u64 = 192 * 1024 * 1024;

/// Largest plugin component accepted, in bytes.
pub const PLUGIN_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes of plugin stdout/stderr forwarded to the log per call; the rest is
/// dropped (and counted) so a chatty plugin cannot flood the host.
pub const PLUGIN_OUTPUT_BYTES_PER_CALL_MAX: usize = 16 * 1024;

/// Bytes of plugin stdout/stderr a node forwards to its log per second,
/// across every call of every plugin instance it runs: the per-call cap
/// alone allows 160 MB/s at 10,000 applies/s, per replica. Output past it
/// is dropped and counted.
pub const PLUGIN_OUTPUT_BYTES_PER_SECOND: usize = 64 * 1024;

/// Bytes of plugin output a node forwards at once before the rate applies
/// (the token bucket's size): a few full calls of debugging output pass.
pub const PLUGIN_OUTPUT_BURST_BYTES: usize = 256 * 1024;

/// At most one warning that plugin output was dropped per this interval
/// (the counter counts every byte).
pub const PLUGIN_OUTPUT_DROPPED_WARNING_INTERVAL: Duration = Duration::from_secs(10);

const _: () = assert!(PLUGIN_OUTPUT_BURST_BYTES >= PLUGIN_OUTPUT_BYTES_PER_CALL_MAX);
const _: () = assert!(PLUGIN_OUTPUT_BURST_BYTES >= PLUGIN_OUTPUT_BYTES_PER_SECOND);

/// Deploy attempts remembered in the replicated plugin history.
pub const PLUGIN_HISTORY_RECORDS_MAX: usize = 64;

/// Previous plugin versions kept (bytes included) for rollback.
pub const PLUGIN_VERSIONS_RETAINED: usize = 2;

/// The plugin runtime journals every entry applied since its last base
/// snapshot, so that it can rebuild a trapped instance by replay. It takes a
/// new base once the journal holds this many times the base's size...
pub const REPLAY_JOURNAL_BASE_MULTIPLE: usize = 2;

/// ...but never before the journal holds this many bytes (small states)...
pub const REPLAY_JOURNAL_BYTES_MIN: usize = 1024 * 1024;

/// ...and always once it holds this many.
pub const REPLAY_JOURNAL_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What one journaled entry costs beyond its command bytes (position and
/// vector header), so many tiny commands still count against the budget.
pub const REPLAY_JOURNAL_ENTRY_OVERHEAD_BYTES: usize = 48;

/// Deploy entries queued for compiling ahead of apply; more are compiled at
/// apply time instead.
pub const PRECOMPILE_QUEUE_DEPTH: usize = 4;

/// Cache prunes a compiled plugin's artifact outlives before its deploy
/// applies: each applied deploy prunes once, and a lagging follower may
/// have the whole precompile queue compiled ahead of it.
pub const LOADED_ARTIFACT_PRUNES_KEPT: usize = PRECOMPILE_QUEUE_DEPTH + 1;

/// Jobs queued for the plugin worker thread before callers wait.
pub const PLUGIN_QUEUE_DEPTH: usize = 1024;

/// Journaled entries the plugin's reader instance replays per step while the
/// worker is idle; a job that arrives meanwhile waits for one step at most.
pub const READER_CATCH_UP_SLICE_ENTRIES: usize = 256;

/// The bounds applied to every plugin call. Configurable per node, but every
/// replica of a cluster must use the same values or replicas may disagree on
/// which entries run out of fuel; the defaults are what a cluster should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Fuel for one `apply` or `query` call.
    pub fuel_per_call: u64,
    /// Fuel for one `snapshot` or `restore` call.
    pub fuel_per_bulk_call: u64,
    /// Bytes all linear memories of one instance may total.
    pub memory_bytes_max: usize,
    /// Largest response from `apply` or `query`, in bytes.
    pub response_bytes_max: usize,
    /// Largest snapshot, in bytes.
    pub snapshot_bytes_max: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            fuel_per_call: PLUGIN_FUEL_PER_CALL,
            fuel_per_bulk_call: PLUGIN_FUEL_PER_BULK_CALL,
            memory_bytes_max: PLUGIN_MEMORY_BYTES_MAX,
            response_bytes_max: RESPONSE_BYTES_MAX,
            snapshot_bytes_max: SNAPSHOT_BYTES_MAX,
        }
    }
}

// ---- The plugin store (`store` interface of wit/fsm.wit) -------------------

/// Longest store key, in bytes (the contract's; the SDK's `KEY_BYTES_MAX`).
pub const STORE_KEY_BYTES_MAX: usize = 4096;

/// Longest store value, in bytes (the SDK's `VALUE_BYTES_MAX`).
pub const STORE_VALUE_BYTES_MAX: usize = 1024 * 1024;

/// Most entries one store scan returns (the SDK's `SCAN_ENTRIES_MAX`).
pub const STORE_SCAN_ENTRIES_MAX: u32 = 1024;

/// Key and value bytes one store scan returns at most, beyond its first
/// entry (the SDK's `SCAN_BYTES_MAX`).
pub const STORE_SCAN_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Key and value bytes one plugin call may write to the store (overwrites
/// counted again); more traps the call, dropping its writes. An entry's
/// writes wait in host memory until committed, outside the plugin's memory
/// cap, so this bounds what one entry can make every replica hold.
pub const STORE_CALL_WRITE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Fuel every store call costs, about a hundred wasm instructions' worth of
/// a B-tree lookup.
pub const STORE_FUEL_PER_CALL: u64 = 1_000;

/// Fuel per entry a scan returns beyond the first.
pub const STORE_FUEL_PER_ENTRY: u64 = 200;

/// Fuel per key or value byte a store call moves.
pub const STORE_FUEL_PER_BYTE: u64 = 1;

/// Keys written between durable commits of a store kept in memory: redb
/// frees pages for reuse only at a durable commit.
pub const STORE_DURABLE_COMMIT_EVERY_WRITES: u64 = 4096;

/// A store plugin's state file is checkpointed (made durable with the rest
/// of the state, so a restart resumes there) once this many entries, this
/// many store bytes written or this much time have gone by since the last
/// checkpoint; a restart replays about that much. Each costs an fsync and
/// the plugin's `snapshot` of its in-memory part.
pub const STORE_CHECKPOINT_EVERY_ENTRIES: u64 = 20_000;
pub const STORE_CHECKPOINT_EVERY_BYTES: u64 = 64 * 1024 * 1024;
pub const STORE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// The interval stretches to this multiple of the last checkpoint's time, so
/// a large host state (sessions) costs a bounded share of the time.
pub const STORE_CHECKPOINT_COST_MULTIPLE: u32 = 20;

const _: () = assert!(STORE_KEY_BYTES_MAX + STORE_VALUE_BYTES_MAX <= RESPONSE_BYTES_MAX);
const _: () = assert!(STORE_VALUE_BYTES_MAX <= STORE_SCAN_BYTES_MAX);
const _: () = assert!(STORE_KEY_BYTES_MAX + STORE_VALUE_BYTES_MAX <= STORE_CALL_WRITE_BYTES_MAX);
