//! Every bound the host enforces and every timing it keeps, in one place,
//! with its unit in its name.
//!
//! Defaults live here as constants; the ones a user may change are carried in
//! [`PluginLimits`] and `node::NodeConfig`, validated once at startup
//! (`NodeConfig::validate`). Relationships between limits are checked at
//! compile time. Bounds the public API's two sides share are defined by the
//! client crate and re-exported here.

pub use clusterhost_client::limits::{
    CLIENT_GRPC_MESSAGE_BYTES_MAX, CLIENT_GRPC_RESPONSE_BYTES_MAX, COMMAND_BYTES_MAX,
    DEPLOY_TIMEOUT, PLUGIN_UPLOAD_CHUNK_BYTES, QUERY_BYTES_MAX, REQUEST_TIMEOUT,
};

mod cluster;
mod forwarding;
mod plugin;
mod raft;
mod server;

pub use cluster::*;
pub use forwarding::*;
pub use plugin::*;
pub use raft::*;
pub use server::*;

// ---- Relationships across the groups ---------------------------------------

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
