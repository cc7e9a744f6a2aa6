//! Backups, the ops listener, and the gRPC server's resource bounds.

use std::time::Duration;

use super::*;

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

/// How long a stopping node waits for the gRPC server's connections to
/// close once it stopped accepting (each finishes the calls it has open);
/// then the rest are cut, and the server gets as long again to end. A peer
/// that keeps a call open (an upload that never ends, a stream it never
/// reads) must not hold shutdown until the call's own timeout.
pub const SERVER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
const _: () = assert!(SERVER_DRAIN_TIMEOUT.as_secs() < GRPC_CALL_TIMEOUT.as_secs());
const _: () =
    assert!(DEPLOY_UPLOADS_MAX >= 1 && PLUGIN_COMPILES_MAX >= 1 && PLUGIN_APPLY_COMPILES_MAX >= 1);
