//! Bounds both sides of the public API agree on. The node's own bounds live
//! in the host's `limits.rs`, which re-exports these.

use std::time::Duration;

/// Largest command a client may propose, in bytes.
pub const COMMAND_BYTES_MAX: usize = 1024 * 1024;

/// Largest query request, in bytes.
pub const QUERY_BYTES_MAX: usize = 1024 * 1024;

/// Largest gRPC message on the public `Cluster` service, in bytes: a
/// command plus framing.
pub const CLIENT_GRPC_MESSAGE_BYTES_MAX: usize = COMMAND_BYTES_MAX + 64 * 1024;

/// Largest gRPC message a client accepts in an answer (a query response or
/// a status can be larger than a request).
pub const CLIENT_GRPC_RESPONSE_BYTES_MAX: usize = 4 * CLIENT_GRPC_MESSAGE_BYTES_MAX;

/// Bytes per chunk when a plugin is uploaded.
pub const PLUGIN_UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// How long a node waits for a leader or a result before answering
/// `unavailable`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a deploy may take from proposal to applied (restore included).
pub const DEPLOY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a client waits for a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Extra time a client grants the node beyond the node's own timeout, so the
/// node's clearer error arrives first.
pub const CLIENT_GRACE: Duration = Duration::from_secs(2);

const _: () = assert!(COMMAND_BYTES_MAX < CLIENT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(QUERY_BYTES_MAX < CLIENT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(PLUGIN_UPLOAD_CHUNK_BYTES < CLIENT_GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(REQUEST_TIMEOUT.as_millis() <= DEPLOY_TIMEOUT.as_millis());
