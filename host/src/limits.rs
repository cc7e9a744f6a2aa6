//! Every bound the host enforces and every timing it keeps, in one place,
//! with its unit in its name.
//!
//! Defaults live here as constants; the ones a user may change are carried in
//! [`PluginLimits`] and `node::NodeConfig`, validated once at startup
//! (`NodeConfig::validate`). Relationships between limits are checked at
//! compile time. Bounds the public API's two sides share are defined by the
//! client crate and re-exported here.

use std::time::Duration;

pub use clusterhost_client::limits::{
    CLIENT_GRPC_MESSAGE_BYTES_MAX, CLIENT_GRPC_RESPONSE_BYTES_MAX, COMMAND_BYTES_MAX,
    DEPLOY_TIMEOUT, PLUGIN_UPLOAD_CHUNK_BYTES, QUERY_BYTES_MAX, REQUEST_TIMEOUT,
};

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

/// Jobs queued for the plugin worker thread before callers wait.
pub const PLUGIN_QUEUE_DEPTH: usize = 1024;

/// Journaled entries the plugin's reader instance replays per step while the
/// worker is idle; a job that arrives meanwhile waits for one step at most.
pub const READER_CATCH_UP_SLICE_ENTRIES: usize = 256;

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

// ---- Serving clients -------------------------------------------------------

/// Longest pause between attempts to reach a leader while a request waits
/// for one (a leader change wakes it sooner).
pub const LEADER_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// A voter that acknowledged a leader heartbeat within this window counts
/// as alive for `health`.
pub const HEALTH_CONTACT_WINDOW: Duration = Duration::from_secs(3);

// ---- Security ----------------------------------------------------------------

/// Longest name in a certificate made by `clusterhost certs` (node or
/// client name; also its file name), in bytes.
pub const CERT_NAME_BYTES_MAX: usize = 64;

// ---- Membership --------------------------------------------------------------

/// How often the membership loop gossips this node's state and, on the
/// leader, reconciles Raft membership with gossip.
pub const RECONCILE_INTERVAL: Duration = Duration::from_millis(500);

/// Longest the autopilot waits for a TLS handshake with a gossiped address
/// to read the certificate presented there (a black-holed address must not
/// hold the membership loop long).
pub const IDENTITY_DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// A certificate read at an address is read again after this long (a
/// node replaced at the same address shows its new certificate).
pub const IDENTITY_RECHECK_AFTER: Duration = Duration::from_secs(60);

/// An address that gave no certificate is dialed again after this long.
pub const IDENTITY_RETRY_AFTER: Duration = Duration::from_secs(2);

/// A gossip entry outside the membership that is not alive (not yet, or
/// no longer) still contends for its address and name this long after it
/// was first seen or last alive: a joining node's first entry is often not
/// alive yet, and a fake id at its address must not win that race.
pub const IDENTITY_CONTENDER_MEMORY: Duration = Duration::from_secs(60);

/// Most identity dials under way at once; further addresses wait for a
/// later round (gossip can name many addresses, and each dial may take
/// [`IDENTITY_DIAL_TIMEOUT`]).
pub const IDENTITY_DIALS_IN_FLIGHT_MAX: usize = 16;

/// Longest a single membership change may take before the loop moves on.
pub const MEMBERSHIP_CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a leadership transfer an operator asked for may take.
pub const LEADER_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping leader waits for its successor to take over before
/// it stops anyway (a healthy successor needs about one election timeout;
/// one that just went away never answers).
pub const STEP_DOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// A learner within this many entries of the leader counts as caught up
/// for promotion to voter.
pub const PROMOTION_LAG_ENTRIES_MAX: u64 = 100;

/// Most voters a cluster may be configured for (`--voter-cap`,
/// `--min-voters`).
pub const VOTERS_MAX: u64 = 9;

/// Default most voters.
pub const VOTER_CAP_DEFAULT: u64 = 5;

/// Default time a learner must be healthy and caught up before it votes
/// (`--stabilization`, as the flag's default is written).
pub const STABILIZATION_DEFAULT: &str = "5s";

/// [`STABILIZATION_DEFAULT`] as a duration (for nodes started as a library).
pub const STABILIZATION_DEFAULT_TIME: Duration = Duration::from_secs(5);

/// Default time a member must be dead before the leader may remove it
/// (`--dead-grace`, as the flag's default is written).
pub const DEAD_GRACE_DEFAULT: &str = "5m";

/// [`DEAD_GRACE_DEFAULT`] as a duration (for nodes started as a library).
pub const DEAD_GRACE_DEFAULT_TIME: Duration = Duration::from_secs(5 * 60);

// ---- Gossip --------------------------------------------------------------------

/// How often a node gossips with a peer.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(250);

/// How long a dead node's gossip state is kept before it is forgotten.
pub const GOSSIP_DEAD_NODE_FORGET_AFTER: Duration = Duration::from_secs(3600);

/// phi-accrual threshold above which a node is considered dead.
pub const GOSSIP_PHI_THRESHOLD: f64 = 8.0;

/// Heartbeat intervals the failure detector remembers.
pub const GOSSIP_FAILURE_DETECTOR_WINDOW: usize = 1_000;

/// Heartbeat gaps longer than this are not learned from.
pub const GOSSIP_FAILURE_DETECTOR_MAX_INTERVAL: Duration = Duration::from_secs(10);

/// Largest gossip datagram, sealed, in bytes: the most a UDP datagram
/// carries over IPv4 (chitchat fills its datagrams up to this much too, so
/// a full one no longer fits once sealed and is skipped for that round).
pub const GOSSIP_DATAGRAM_BYTES_MAX: usize = 65_507;

/// Most bytes one gossip datagram's compressed blocks may expand to before
/// the datagram is refused unread: a 64 KiB datagram of tiny zstd blocks
/// would otherwise expand to gigabytes. Deltas chitchat sends stay within
/// one datagram and compress a few times at most.
pub const GOSSIP_DECOMPRESSED_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most peers sealed gossip keeps a loopback relay socket for at once
/// (the oldest is replaced beyond this).
pub const GOSSIP_RELAY_PEERS_MAX: usize = 256;

/// Most keys in a gossip keyring: the primary and older ones still
/// accepted while a rotation is rolled out.
pub const GOSSIP_KEYS_MAX: usize = 8;

/// Most gossip members that are not Raft members (joining, or never
/// added) the membership loop considers at once; more are ignored and
/// counted (`gossip_members{liveness="ignored"}`).
pub const GOSSIP_UNKNOWN_MEMBERS_MAX: usize = 64;

/// Most such members the membership loop remembers (when first seen, when
/// last alive); new ones beyond it are ignored without being remembered.
pub const GOSSIP_UNKNOWN_MEMBERS_TRACKED_MAX: usize = 1_024;

/// How long a gossip member that is not a Raft member may be silent (not
/// alive to the failure detector) before it is no longer considered.
/// chitchat keeps its state for [`GOSSIP_DEAD_NODE_FORGET_AFTER`]; this is
/// how long it can matter. Well beyond the failure detector's few seconds,
/// so a joining node that is briefly unreachable keeps its place.
pub const GOSSIP_UNKNOWN_MEMBER_SILENT_EXPIRY: Duration = Duration::from_secs(60);

const _: () = assert!(GOSSIP_UNKNOWN_MEMBERS_MAX >= VOTERS_MAX as usize);
const _: () = assert!(GOSSIP_UNKNOWN_MEMBERS_TRACKED_MAX >= GOSSIP_UNKNOWN_MEMBERS_MAX);
const _: () = assert!(
    GOSSIP_UNKNOWN_MEMBER_SILENT_EXPIRY.as_secs() < GOSSIP_DEAD_NODE_FORGET_AFTER.as_secs()
);
const _: () = assert!(PLUGIN_FUEL_PER_CALL <= PLUGIN_FUEL_PER_BULK_CALL);
const _: () = assert!(RESPONSE_BYTES_MAX < RAFT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(COMMAND_BYTES_MAX < RAFT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(RAFT_APPEND_ENTRIES_BYTES_MAX < RAFT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(RAFT_SNAPSHOT_CHUNK_BYTES < RAFT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(COMMAND_BYTES_MAX < RAFT_APPEND_ENTRIES_BYTES_MAX);
const _: () = assert!(COMMAND_BYTES_MAX <= REPLAY_JOURNAL_BYTES_MAX);
const _: () = assert!(STATE_QUOTA_BYTES_DEFAULT < SNAPSHOT_BYTES_MAX as u64);
const _: () = assert!(
    STATE_QUOTA_BYTES_DEFAULT + SESSIONS_RETAINED_BYTES_MAX as u64 <= SNAPSHOT_BYTES_MAX as u64
);
const _: () = assert!(SESSION_TIMEOUT_MIN.as_millis() <= SESSION_TIMEOUT_DEFAULT.as_millis());
const _: () = assert!(SESSION_TIMEOUT_DEFAULT.as_millis() <= SESSION_TIMEOUT_MAX.as_millis());
const _: () = assert!(SESSION_RESPONSE_BYTES_KEPT_MAX <= SESSIONS_RETAINED_BYTES_MAX);
const _: () = assert!(REPLAY_JOURNAL_BYTES_MIN <= REPLAY_JOURNAL_BYTES_MAX);
const _: () = assert!(PLUGIN_MEMORY_BYTES_MAX as u64 <= PLUGIN_MEMORY_MIB_FLAG_MAX * 1024 * 1024);
const _: () =
    assert!(RAFT_HEARTBEAT_INTERVAL.as_millis() * 3 <= RAFT_ELECTION_TIMEOUT_MIN.as_millis());
const _: () =
    assert!(RAFT_ELECTION_TIMEOUT_MIN.as_millis() < RAFT_ELECTION_TIMEOUT_MAX.as_millis());
const _: () = assert!(LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT < SNAPSHOT_EVERY_ENTRIES_DEFAULT);
const _: () = assert!(LEADER_RETRY_INTERVAL.as_millis() < REQUEST_TIMEOUT.as_millis());
const _: () = assert!(HEALTH_CONTACT_WINDOW.as_millis() > RAFT_ELECTION_TIMEOUT_MAX.as_millis());
const _: () = assert!(VOTER_CAP_DEFAULT <= VOTERS_MAX);
const _: () = assert!(CHECKPOINTS_GOSSIPED <= CHECKPOINTS_KEPT);
const _: () = assert!(STEP_DOWN_TIMEOUT.as_millis() > 2 * RAFT_ELECTION_TIMEOUT_MAX.as_millis());

// ---- Forwarded commands ----------------------------------------------------

/// Most commands a follower sends the leader in one `ForwardBatch` call:
/// enough to carry everything that arrives during one leader round trip at
/// the load one node serves, few enough that each batch stays small.
pub const FORWARD_BATCH_COMMANDS_MAX: usize = 64;

/// Bytes a forwarded command's encoding adds to its command bytes in a
/// batch at most (field tags, length prefixes, the session stamp's three
/// varints): counted with each command so a batch's size is bounded.
pub const FORWARD_COMMAND_OVERHEAD_BYTES: usize = 64;

/// Most bytes of commands (with their overhead) one batch carries; a single
/// larger command still goes, alone. Room for the largest command, and the
/// whole batch fits the leader's request size limit.
pub const FORWARD_BATCH_BYTES_MAX: usize = COMMAND_BYTES_MAX + FORWARD_COMMAND_OVERHEAD_BYTES;

/// Batches in flight to one leader at a time: a command arriving with a
/// slot free leaves at once (no added latency for one client); the others
/// queue and leave together when the batch in flight comes back (one slot
/// made larger batches, and fewer calls, than two in a 64-client bench;
/// measured again with writes through a follower at 1-64 clients, two
/// alternating runs each: two slots gave no consistent gain in throughput
/// or p50, though a command queued behind a batch waits for all of it).
pub const FORWARD_BATCHES_IN_FLIGHT_MAX: usize = 1;

/// Longest a follower waits for every answer of a forwarded batch: as long
/// as a single forwarded call may take (its channel's timeout); commands
/// still unanswered then have an unknown outcome.
pub const FORWARD_BATCH_TIMEOUT: Duration = Duration::from_secs(
    DEPLOY_TIMEOUT.as_secs() + clusterhost_client::limits::CLIENT_GRACE.as_secs(),
);

/// Longest the leader keeps a forwarded batch's stream of answers open: as
/// long as the follower waits for them ([`FORWARD_BATCH_TIMEOUT`]), no
/// longer, so a caller that never reads cannot hold the answers for ever.
/// Commands already proposed still apply; the caller hears "outcome
/// unknown" for those it was not told about.
pub const FORWARD_BATCH_STREAM_TIMEOUT: Duration = FORWARD_BATCH_TIMEOUT;

/// Most bytes of answers the leader holds ready for one batch's caller
/// before the caller's transport takes them: room for a few of the largest
/// answers (a reading follower takes each as its connection allows).
pub const FORWARD_BATCH_ANSWERS_WAITING_BYTES_MAX: usize = 4 * RESPONSE_BYTES_MAX;

/// Longest the leader waits, with [`FORWARD_BATCH_ANSWERS_WAITING_BYTES_MAX`]
/// bytes of answers waiting, for the caller to take one; then the stream
/// ends (a follower reads its answers as they come: it stalls only when
/// it is stuck itself).
pub const FORWARD_BATCH_CALLER_STALL_MAX: Duration = REQUEST_TIMEOUT;

/// Most bytes of commands (with their overhead) queued on a follower for
/// one leader while a batch is in flight; a command arriving when the queue
/// is full (after commands whose clients went away are dropped) is sent in
/// a call of its own, so a slow leader cannot make the queue grow without
/// bound.
pub const FORWARD_LANE_QUEUED_BYTES_MAX: usize = 8 * FORWARD_BATCH_BYTES_MAX;

/// How long a leader that answered a batch with `unimplemented` gets each
/// command in a call of its own before batches are tried again (a safety
/// net: below [`crate::consensus::settings::PROTOCOL_LEVEL_FORWARD_BATCHES`]
/// no batch is sent, and a member without the method cannot run at it).
pub const FORWARD_BATCH_RETRY_AFTER: Duration = Duration::from_secs(30);

const _: () = assert!(FORWARD_BATCH_TIMEOUT.as_secs() > REQUEST_TIMEOUT.as_secs());
const _: () =
    assert!(FORWARD_BATCH_STREAM_TIMEOUT.as_millis() <= FORWARD_BATCH_TIMEOUT.as_millis());
const _: () =
    assert!(FORWARD_BATCH_CALLER_STALL_MAX.as_millis() < FORWARD_BATCH_STREAM_TIMEOUT.as_millis());
const _: () = assert!(
    FORWARD_BATCH_ANSWERS_WAITING_BYTES_MAX >= RESPONSE_BYTES_MAX + FORWARD_COMMAND_OVERHEAD_BYTES
);
const _: () = assert!(FORWARD_BATCH_ANSWERS_WAITING_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(FORWARD_LANE_QUEUED_BYTES_MAX >= FORWARD_BATCH_BYTES_MAX);
const _: () = assert!(FORWARD_BATCH_BYTES_MAX + 1024 < CLIENT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(FORWARD_BATCH_COMMANDS_MAX <= u32::MAX as usize);
const _: () = assert!(FORWARD_BATCHES_IN_FLIGHT_MAX >= 1);
const _: () = assert!(FORWARD_BATCH_COMMANDS_MAX >= 1);

// ---- Backups --------------------------------------------------------------

/// Bytes of a backup file per streamed chunk.
pub const BACKUP_CHUNK_BYTES: usize = 1024 * 1024;

/// Largest backup file accepted: the largest snapshot plus its header.
pub const BACKUP_BYTES_MAX: usize = RAFT_SNAPSHOT_BYTES_MAX + 1024;

const _: () = assert!(BACKUP_CHUNK_BYTES < CLIENT_GRPC_RESPONSE_BYTES_MAX);

// ---- The ops listener (metrics, health, status page) ------------------------

/// A node is ready (`GET /readyz`) only while it has applied within this
/// many entries of what it knows is committed: a load balancer should not
/// send reads to a replica that is far behind.
pub const READY_APPLY_LAG_ENTRIES_MAX: u64 = 1_000;

/// Connections the ops listener serves at once; more wait to be accepted.
pub const OPS_HTTP_CONNECTIONS_MAX: usize = 64;

/// How long the ops listener waits for a request's headers before closing
/// the connection (a slow or idle client must not hold a slot).
pub const OPS_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the status page's rate history takes a sample.
pub const STATUS_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples the status page's rate history keeps: 10 minutes at the interval.
pub const STATUS_SAMPLES_KEPT: usize = 120;

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

// ---- Bounded server resources (issue 13) ----------------------------------

/// Concurrent HTTP/2 streams (calls) one connection to the gRPC port may
/// hold open; more are refused by the protocol. Clients multiplex all their
/// calls over one connection, so this is generous for them, and it stops one
/// connection from opening calls without end.
pub const GRPC_STREAMS_PER_CONNECTION_MAX: u32 = 256;

/// Longest any one call may run on the server before it is cancelled with
/// `cancelled`/`deadline exceeded`: the longest legitimate call (a snapshot
/// transfer at the slowest link allowed) with room to spare. A client's own
/// shorter `grpc-timeout` still applies.
pub const GRPC_CALL_TIMEOUT: Duration =
    Duration::from_secs(RAFT_INSTALL_SNAPSHOT_TIMEOUT.as_secs() + 60);

/// How often the server pings an HTTP/2 connection to learn whether its
/// peer is still there...
pub const GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// ...and how long it waits for the answer before closing the connection
/// (and with it every call the dead peer held).
pub const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// TCP keepalive on accepted connections: a peer that vanished without a
/// FIN is noticed by the kernel too.
pub const GRPC_TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// How long a connection to the gRPC port may take to complete its TLS
/// handshake before it is closed.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest block of request headers (metadata) accepted, in bytes.
pub const GRPC_HEADER_LIST_BYTES_MAX: u32 = 16 * 1024;

/// Largest gRPC reflection request, in bytes (a symbol or file name).
pub const REFLECTION_REQUEST_BYTES_MAX: usize = 64 * 1024;

/// Plugin uploads (`DeployPlugin`) a node receives at once; each buffers up
/// to [`PLUGIN_BYTES_MAX`] in memory, so more are refused with `resource
/// exhausted` before their bytes are read.
pub const DEPLOY_UPLOADS_MAX: usize = 2;

/// Plugin compilations a node runs at once for uploads being validated and
/// for precompiling appended deploys; more wait. Compiling is CPU-bound and
/// already parallel inside, so one at a time keeps the node responsive.
pub const PLUGIN_COMPILES_MAX: usize = 1;

/// Plugin compilations a node runs at once to apply the log (a deploy entry,
/// a snapshot's plugin). Apart from [`PLUGIN_COMPILES_MAX`], so applying
/// never waits behind uploads that anyone can start; the log applies one
/// entry at a time, so one is enough.
pub const PLUGIN_APPLY_COMPILES_MAX: usize = 1;

/// Writes of plugin stdout/stderr forwarded to the log per call (each is
/// one log record); later writes in the call are dropped and counted, like
/// bytes past [`PLUGIN_OUTPUT_BYTES_PER_CALL_MAX`].
pub const PLUGIN_OUTPUT_WRITES_PER_CALL_MAX: usize = 64;

const _: () = assert!(GRPC_CALL_TIMEOUT.as_secs() > DEPLOY_TIMEOUT.as_secs());
const _: () = assert!(GRPC_CALL_TIMEOUT.as_secs() > RAFT_INSTALL_SNAPSHOT_TIMEOUT.as_secs());
const _: () = assert!(GRPC_KEEPALIVE_INTERVAL.as_secs() < GRPC_KEEPALIVE_TIMEOUT.as_secs());
const _: () =
    assert!(DEPLOY_UPLOADS_MAX >= 1 && PLUGIN_COMPILES_MAX >= 1 && PLUGIN_APPLY_COMPILES_MAX >= 1);

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
