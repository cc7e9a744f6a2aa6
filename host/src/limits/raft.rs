//! Bounds and timings of Raft, the log, and client sessions.

use std::time::Duration;

use super::*;

// ---- Raft and the log ------------------------------------------------------

/// Bytes of entries one AppendEntries carries at most; a larger batch is
/// sent in parts (an entry larger than this, a deploy, goes alone).
pub const RAFT_APPEND_ENTRIES_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Bytes per message when a snapshot is streamed to a peer.
pub const RAFT_SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Largest encoded snapshot a node accepts from a peer: the plugin state,
/// the running plugin and the ones retained for rollback, and the history.
pub const RAFT_SNAPSHOT_BYTES_MAX: usize =
    SNAPSHOT_BYTES_MAX + PLUGIN_BYTES_MAX * (PLUGIN_VERSIONS_RETAINED + 1) + 1024 * 1024;

/// Largest gRPC message on the internal Raft service: one entry as large as
/// a deploy (the plugin inside), with room for its framing. Batches and
/// snapshots are cut to fit.
pub const RAFT_GRPC_MESSAGE_BYTES_MAX: usize = PLUGIN_BYTES_MAX + 1024 * 1024;

/// The slowest link a transfer is given time for: a Raft RPC carrying N
/// bytes may take N / this many seconds (and at least
/// [`RAFT_RPC_TIMEOUT_MIN`]).
pub const RAFT_TRANSFER_BYTES_PER_SECOND_MIN: usize = 1024 * 1024;

/// Entries appended to the Raft log between automatic snapshots (default).
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 10_000;

/// Entries kept in the log behind a snapshot, so slightly lagging followers
/// catch up by log rather than by snapshot.
pub const LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT: u64 = 1_000;

/// Log changes the log writer folds into one transaction (one fsync) at
/// most; bounds the time one group keeps later appends waiting.
pub const LOG_GROUP_COMMIT_JOBS_MAX: usize = 1024;

/// Entries per AppendEntries request.
pub const RAFT_APPEND_ENTRIES_MAX: u64 = 512;

/// Raft heartbeat interval: three fit in the shortest election timeout, so
/// one or two lost heartbeats never start an election.
pub const RAFT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(75);

/// Raft election timeout range: lower end...
///
/// Failover costs more than one timeout: openraft's followers honour the
/// old leader's lease (the upper end) and only then wait their own timeout,
/// so a follower starts its pre-vote `MAX + random(MIN..MAX)` after the last
/// heartbeat — 700 to 900 ms here (it was 1.8 to 2.4 s at 600–1200 ms). That
/// is also the silence a busy leader must cause before it is deposed: debug
/// nodes under 45 s of 64–256 writing clients, while a release build
/// saturated both cores of the machine (write p99 0.85 s, max 1.4 s), held
/// one term throughout.
pub const RAFT_ELECTION_TIMEOUT_MIN: Duration = Duration::from_millis(250);
/// ...and upper end.
pub const RAFT_ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(450);

/// How long openraft lets a snapshot transfer run before it counts as
/// failed: enough for the largest snapshot at the slowest link we allow.
pub const RAFT_INSTALL_SNAPSHOT_TIMEOUT: Duration =
    Duration::from_secs((RAFT_SNAPSHOT_BYTES_MAX / RAFT_TRANSFER_BYTES_PER_SECOND_MIN) as u64);

/// How long a snapshot stream may go without its next chunk: a sender that
/// stalls gives up the one-at-a-time receiving slot instead of holding it
/// for the whole [`RAFT_INSTALL_SNAPSHOT_TIMEOUT`]. One chunk at the
/// slowest transfer rate a node accepts, with room to spare.
pub const RAFT_SNAPSHOT_CHUNK_IDLE_TIMEOUT: Duration = Duration::from_secs(
    (4 * RAFT_SNAPSHOT_CHUNK_BYTES / RAFT_TRANSFER_BYTES_PER_SECOND_MIN) as u64 + 10,
);

/// Shortest time a Raft RPC is given before it counts as failed: openraft's
/// own budgets (a heartbeat interval for appends) are tighter than a busy
/// but healthy peer needs.
pub const RAFT_RPC_TIMEOUT_MIN: Duration = Duration::from_secs(2);

/// How long to wait for a TCP connection to a peer's Raft service.
pub const RAFT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Replicas compare their applied digests at indexes that are multiples of
/// this many entries.
pub const CHECKPOINT_EVERY_ENTRIES: u64 = 64;

/// Checkpoints each replica keeps (and gossips the newest of).
pub const CHECKPOINTS_KEPT: usize = 16;

/// Checkpoints a node gossips (the newest).
pub const CHECKPOINTS_GOSSIPED: usize = 4;

/// How long a stopping node waits for Raft's tasks to close its log file
/// (so the data dir can be opened again in the same process).
pub const LOG_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping node waits, once Raft has stopped applying, for the
/// plugin store's final checkpoint; past it the node stops anyway and the
/// next start replays from the last checkpoint before.
pub const STORE_STOP_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for the gossip socket to close, so a node
/// restarted in the same process can bind the port again.
pub const GOSSIP_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a stopping node checks whether its log file is closed.
pub const RELEASE_POLL_INTERVAL: Duration = Duration::from_millis(10);

// ---- Client sessions (exactly-once writes) ----------------------------------

/// A session's timeout when the client names none: it expires once the log's
/// clock (leader-stamped entry times) passes its last activity by this much.
pub const SESSION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3600);

/// Shortest session timeout a client may ask for.
pub const SESSION_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// Longest session timeout a client may ask for.
pub const SESSION_TIMEOUT_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// Sessions open at once; opening one more expires the least recently active.
pub const SESSIONS_MAX: usize = 8192;

/// Commands of one session whose responses are kept (the client has not yet
/// said it received them); more are refused until the client catches up.
pub const SESSION_OUTSTANDING_MAX: usize = 1024;

/// Largest response kept for a retry; a larger one is applied and answered,
/// but a retry of it is told the response was not kept.
pub const SESSION_RESPONSE_BYTES_KEPT_MAX: usize = 16 * 1024;

/// What each kept response counts beyond its bytes (its place in the maps,
/// its index, the command's digest), so many tiny ones are bounded too.
pub const SESSION_KEPT_ENTRY_OVERHEAD_BYTES: usize = 128;

/// Response bytes kept across all sessions, overhead included (they travel
/// in every snapshot).
pub const SESSIONS_RETAINED_BYTES_MAX: usize = 32 * 1024 * 1024;
