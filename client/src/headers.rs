//! Metadata keys and values both sides of the API agree on, so a client can
//! tell what an error status means for its command.

/// On an error whose command may or may not have been applied; value
/// [`OUTCOME_UNKNOWN`].
pub const OUTCOME: &str = "x-clusterhost-outcome";

/// The value of [`OUTCOME`]: the command may or may not have been applied.
pub const OUTCOME_UNKNOWN: &str = "unknown";

/// On a refused session command, naming the refusal: one of
/// [`SESSION_NOT_OPEN`], [`SESSION_ACKNOWLEDGED`], [`SESSION_OUTSTANDING`],
/// [`SESSION_NOT_KEPT`], [`SESSION_INVALID`], [`SESSION_MISMATCH`]. The
/// refused attempt applied nothing; for `acknowledged` and `not-kept` an
/// earlier attempt with the same stamp was applied, once.
pub const SESSION: &str = "x-clusterhost-session";

/// The session expired or never existed.
pub const SESSION_NOT_OPEN: &str = "not-open";
/// The client already acknowledged this sequence's answer.
pub const SESSION_ACKNOWLEDGED: &str = "acknowledged";
/// Too many commands of the session await acknowledgement.
pub const SESSION_OUTSTANDING: &str = "outstanding";
/// Applied once before, but its answer was too large to keep.
pub const SESSION_NOT_KEPT: &str = "not-kept";
/// The stamp contradicts itself.
pub const SESSION_INVALID: &str = "invalid";
/// This sequence was applied with a different command.
pub const SESSION_MISMATCH: &str = "mismatch";

/// The value of `status` metadata key `key`, if present and text.
pub fn value<'a>(status: &'a tonic::Status, key: &str) -> Option<&'a str> {
    status
        .metadata()
        .get(key)
        .and_then(|value| value.to_str().ok())
}
