//! Every bound the host enforces, in one place, with its unit in its name.
//!
//! Defaults live here as constants; the ones a user may change are carried in
//! [`PluginLimits`] and [`crate::node::NodeConfig`] and validated once at startup.
//! Relationships between limits are checked at compile time.

/// Fuel one plugin call may burn before it is stopped. Fuel counts wasm
/// instructions, so the same call with the same input stops at the same point
/// on every machine: it is the deterministic bound on runaway plugins.
pub const PLUGIN_FUEL_PER_CALL: u64 = 1_000_000_000;

/// Fuel for `restore` and `snapshot`, which walk the whole state and so may
/// legitimately need much more than one `apply`.
pub const PLUGIN_FUEL_PER_BULK_CALL: u64 = 50_000_000_000;

/// Largest linear memory one plugin instance may grow to, in bytes.
pub const PLUGIN_MEMORY_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Largest command a client may propose, in bytes.
pub const COMMAND_BYTES_MAX: usize = 1024 * 1024;

/// Largest query request, in bytes.
pub const QUERY_BYTES_MAX: usize = 1024 * 1024;

/// Largest response a plugin may return from `apply` or `query`, in bytes.
/// A larger response fails the call identically on every replica.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest plugin snapshot, in bytes.
pub const SNAPSHOT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Largest plugin component accepted, in bytes.
pub const PLUGIN_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes of plugin stdout/stderr forwarded to the log per call; the rest is
/// dropped (and counted) so a chatty plugin cannot flood the host.
pub const PLUGIN_OUTPUT_BYTES_PER_CALL_MAX: usize = 16 * 1024;

/// Deploy attempts remembered in the replicated plugin history.
pub const PLUGIN_HISTORY_RECORDS_MAX: usize = 64;

/// Previous plugin versions kept (bytes included) for rollback.
pub const PLUGIN_VERSIONS_RETAINED: usize = 2;

/// Bytes per chunk when a plugin is uploaded.
pub const PLUGIN_UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

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

/// Largest gRPC message on the client (Cluster) service, in bytes: a command
/// plus framing.
pub const CLIENT_GRPC_MESSAGE_BYTES_MAX: usize = COMMAND_BYTES_MAX + 64 * 1024;

/// Largest gRPC message on the internal Raft service: a batch of entries or a
/// whole snapshot with the plugin inside.
pub const RAFT_GRPC_MESSAGE_BYTES_MAX: usize = SNAPSHOT_BYTES_MAX + PLUGIN_BYTES_MAX + 1024 * 1024;

/// Entries appended to the Raft log between automatic snapshots (default).
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 10_000;

/// Entries kept in the log behind a snapshot, so slightly lagging followers
/// catch up by log rather than by snapshot.
pub const LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT: u64 = 1_000;

/// Deploy entries queued for compiling ahead of apply; more are compiled at
/// apply time instead.
pub const PRECOMPILE_QUEUE_DEPTH: usize = 4;

/// Jobs queued for the plugin worker thread before callers wait.
pub const PLUGIN_QUEUE_DEPTH: usize = 1024;

/// How long a client request waits for a leader or a result, in milliseconds.
pub const CLIENT_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// A learner within this many entries of the leader counts as caught up
/// for promotion to voter.
pub const PROMOTION_LAG_ENTRIES_MAX: u64 = 100;

/// Raft heartbeat interval, in milliseconds.
pub const RAFT_HEARTBEAT_INTERVAL_MS: u64 = 150;

/// Raft election timeout range, in milliseconds.
pub const RAFT_ELECTION_TIMEOUT_MIN_MS: u64 = 600;
/// Upper end of the election timeout range, in milliseconds.
pub const RAFT_ELECTION_TIMEOUT_MAX_MS: u64 = 1_200;

/// How long sending a whole snapshot (plugin included) to a peer may take,
/// in milliseconds.
pub const RAFT_INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 60_000;

/// Log changes the log writer folds into one transaction (one fsync) at
/// most; bounds the time one group keeps later appends waiting.
pub const LOG_GROUP_COMMIT_JOBS_MAX: usize = 1024;

/// Entries per AppendEntries request.
pub const RAFT_APPEND_ENTRIES_MAX: u64 = 512;

const _: () = assert!(PLUGIN_FUEL_PER_CALL <= PLUGIN_FUEL_PER_BULK_CALL);
const _: () = assert!(COMMAND_BYTES_MAX < CLIENT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(QUERY_BYTES_MAX < CLIENT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(RESPONSE_BYTES_MAX < RAFT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(SNAPSHOT_BYTES_MAX + PLUGIN_BYTES_MAX < RAFT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(COMMAND_BYTES_MAX <= REPLAY_JOURNAL_BYTES_MAX);
const _: () = assert!(REPLAY_JOURNAL_BYTES_MIN <= REPLAY_JOURNAL_BYTES_MAX);
const _: () = assert!(RAFT_HEARTBEAT_INTERVAL_MS * 3 <= RAFT_ELECTION_TIMEOUT_MIN_MS);
const _: () = assert!(RAFT_ELECTION_TIMEOUT_MIN_MS < RAFT_ELECTION_TIMEOUT_MAX_MS);
const _: () = assert!(LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT < SNAPSHOT_EVERY_ENTRIES_DEFAULT);

/// The bounds applied to every plugin call. Configurable per node, but every
/// replica of a cluster must use the same values or replicas may disagree on
/// which entries run out of fuel; the defaults are what a cluster should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Fuel for one `apply` or `query` call.
    pub fuel_per_call: u64,
    /// Fuel for one `snapshot` or `restore` call.
    pub fuel_per_bulk_call: u64,
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes_max: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            fuel_per_call: PLUGIN_FUEL_PER_CALL,
            fuel_per_bulk_call: PLUGIN_FUEL_PER_BULK_CALL,
            memory_bytes_max: PLUGIN_MEMORY_BYTES_MAX,
        }
    }
}
