//! Serving clients, security, membership and gossip.

use std::time::Duration;

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
