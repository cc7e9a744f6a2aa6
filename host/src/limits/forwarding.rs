//! Commands a follower forwards to the leader.

use std::time::Duration;

use super::*;

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
/// ends and the answers waiting are dropped (a follower reads its answers
/// as they come: it stalls only when it is stuck itself).
pub const FORWARD_BATCH_CALLER_STALL_MAX: Duration = REQUEST_TIMEOUT;

/// Most bytes of commands (with their overhead) queued on a follower for
/// one leader while a batch is in flight; a command arriving when the queue
/// is full (after commands whose clients went away are dropped) is sent in
/// a call of its own, so a slow leader cannot make the queue grow without
/// bound.
pub const FORWARD_LANE_QUEUED_BYTES_MAX: usize = 8 * FORWARD_BATCH_BYTES_MAX;

/// How long a leader that refused the batch method (`unimplemented`, or
/// `permission denied` from an older binary's role check) gets each
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
