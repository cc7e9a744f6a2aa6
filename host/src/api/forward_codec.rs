//! The per-command answers of a forwarded batch, both ways, without I/O:
//! the leader turns each command's outcome into a [`proto::ForwardedAnswer`],
//! the follower turns it back into exactly what a call of its own would
//! have returned (the same status code, message, details and headers, so
//! "not the leader", session refusals and "outcome unknown" read as before),
//! and decides what the commands the leader never answered get.

use bytes::Bytes;
use clusterhost_client::ClientError;
use clusterhost_client::proto::{self, forwarded_answer};
use tonic::metadata::{KeyAndValueRef, MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Status};

use super::leader::outcome_unknown;

/// What a follower's forwarded command gets from its batch.
#[derive(Debug)]
pub enum Forwarded {
    /// The leader's answer, or the call's failure, as a call of its own
    /// would have ended.
    Answer(Result<proto::ApplyResponse, ClientError>),
    /// The command goes in no batch (the leader takes none, or the queue
    /// to it is full): nothing was sent; send it with a call of its own.
    SendAlone,
}

/// How a batch call ended once its stream of answers stopped.
#[derive(Debug)]
pub enum BatchEnd {
    /// The leader closed the stream.
    Finished,
    /// The call failed before any answer could stream: refused (by the
    /// leader, before it ran anything) or not sent or broken (by this
    /// side's transport, with the transport error as the source).
    Refused(Status),
    /// The call failed once its answers had started to stream.
    Failed(Status),
    /// The answers did not all come in time.
    TimedOut,
}

/// The leader's answer for the command at `position`.
pub fn encode_answer(
    position: usize,
    outcome: Result<proto::ApplyResponse, Status>,
) -> proto::ForwardedAnswer {
    let outcome = match outcome {
        Ok(response) => forwarded_answer::Outcome::Applied(response),
        Err(status) => forwarded_answer::Outcome::Failed(encode_status(&status)),
    };
    proto::ForwardedAnswer {
        // A batch holds at most FORWARD_BATCH_COMMANDS_MAX commands.
        position: u32::try_from(position).unwrap_or(u32::MAX),
        outcome: Some(outcome),
    }
}

/// An answer as the follower delivers it: to the command at the returned
/// position. An answer without an outcome says nothing of whether the
/// command was applied: its outcome is unknown.
pub fn decode_answer(
    answer: proto::ForwardedAnswer,
) -> (usize, Result<proto::ApplyResponse, ClientError>) {
    let position = usize::try_from(answer.position).unwrap_or(usize::MAX);
    let result = match answer.outcome {
        Some(forwarded_answer::Outcome::Applied(response)) => Ok(response),
        Some(forwarded_answer::Outcome::Failed(status)) => {
            Err(ClientError::Status(decode_status(status)))
        }
        None => Err(ClientError::Status(outcome_unknown(
            "the leader's answer named no outcome",
        ))),
    };
    (position, result)
}

/// Why a leader refused a whole batch before running any of it: each
/// command then goes in a call of its own.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It takes no batches: it lacks the method (`unimplemented`), or,
    /// with TLS, its role check does not know the method and refuses it
    /// (`permission denied`). Batches to it stop for a while
    /// ([`super::forward_gate::Refusals`]).
    NoBatches,
    /// This batch broke the leader's limits on one (too many commands,
    /// too many bytes): the next batch may not.
    BatchLimits,
}

/// Whether the batch that ended with `end` was refused whole by the
/// leader before it ran anything; `answered_any`: some command of the
/// batch was answered. Only a status the leader sent at the call's start
/// counts (nothing was answered, and no transport error is behind it):
/// then nothing was proposed, and sending each command alone applies none
/// twice. Batches go only at a protocol level every member supports
/// ([`super::forward_gate`]), so this is a safety net.
pub fn refusal(end: &BatchEnd, answered_any: bool) -> Option<Refusal> {
    let BatchEnd::Refused(status) = end else {
        return None;
    };
    if answered_any || std::error::Error::source(status).is_some() {
        return None;
    }
    match status.code() {
        Code::Unimplemented | Code::PermissionDenied => Some(Refusal::NoBatches),
        // The leader's checks of the batch and of its message size.
        Code::InvalidArgument | Code::OutOfRange => Some(Refusal::BatchLimits),
        _ => None,
    }
}

/// What a command the leader did not answer gets when the batch ended
/// with `end`; `answered_any`: some command of the batch was answered.
pub fn unanswered(end: &BatchEnd, answered_any: bool) -> Forwarded {
    if refusal(end, answered_any).is_some() {
        return Forwarded::SendAlone;
    }
    match end {
        // Every command sees the call's failure as its own call would
        // have: not reached (retried), refused, or broken mid-call
        // (outcome unknown); the leader's retry rules classify it.
        BatchEnd::Refused(status) | BatchEnd::Failed(status) => {
            Forwarded::Answer(Err(ClientError::Status(status.clone())))
        }
        BatchEnd::Finished => Forwarded::Answer(Err(ClientError::Status(outcome_unknown(
            "the leader ended the batch without answering this command",
        )))),
        BatchEnd::TimedOut => Forwarded::Answer(Err(ClientError::Status(outcome_unknown(
            "the leader did not answer in time",
        )))),
    }
}

/// `status` with its code, message, details and ASCII metadata.
pub fn encode_status(status: &Status) -> proto::ForwardedStatus {
    let headers = status
        .metadata()
        .iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) => Some(proto::ForwardedHeader {
                key: key.as_str().to_string(),
                value: value.to_str().ok()?.to_string(),
            }),
            KeyAndValueRef::Binary(..) => None,
        })
        .collect();
    proto::ForwardedStatus {
        code: status.code() as i32,
        message: status.message().to_string(),
        details: status.details().to_vec(),
        headers,
    }
}

/// The status [`encode_status`] described (headers that are not valid
/// metadata are left out).
pub fn decode_status(status: proto::ForwardedStatus) -> Status {
    let mut metadata = MetadataMap::new();
    for header in status.headers {
        let key = MetadataKey::from_bytes(header.key.as_bytes());
        let value = MetadataValue::try_from(header.value.as_str());
        if let (Ok(key), Ok(value)) = (key, value) {
            metadata.append(key, value);
        }
    }
    Status::with_details_and_metadata(
        Code::from_i32(status.code),
        status.message,
        Bytes::from(status.details),
        metadata,
    )
}

#[cfg(test)]
mod tests {
    //! Goal: every per-command outcome reaches the follower as a call of
    //! its own would have delivered it, and unanswered commands never read
    //! as "nothing was applied" unless nothing can have been.
    use super::*;
    use crate::api::leader::{NOT_LEADER_HEADER, not_leader};
    use clusterhost_client::headers::{OUTCOME, OUTCOME_UNKNOWN, SESSION, SESSION_MISMATCH};

    fn failed(answer: proto::ForwardedAnswer) -> Status {
        match decode_answer(answer) {
            (_, Err(ClientError::Status(status))) => status,
            other => panic!("expected a status, got {other:?}"),
        }
    }

    fn round_trip(status: Status) -> Status {
        failed(encode_answer(3, Err(status)))
    }

    #[test]
    fn an_applied_command_keeps_its_position_and_response() {
        let response = proto::ApplyResponse {
            index: 7,
            result: Some(proto::apply_response::Result::Rejected("no".into())),
            replayed: true,
            leader_addr: String::new(),
        };
        let (position, result) = decode_answer(encode_answer(5, Ok(response.clone())));
        assert_eq!(position, 5);
        assert_eq!(result.expect("applied"), response);
    }

    #[test]
    fn not_leader_stays_a_retryable_not_leader() {
        let status = round_trip(not_leader("this node is no longer the leader"));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.metadata().contains_key(NOT_LEADER_HEADER));
        assert_eq!(status.message(), "this node is no longer the leader");
    }

    #[test]
    fn session_refusals_and_unknown_outcomes_keep_code_and_headers() {
        let mut refused = Status::with_details(Code::FailedPrecondition, "mismatch", "d".into());
        refused
            .metadata_mut()
            .insert(SESSION, MetadataValue::from_static(SESSION_MISMATCH));
        let status = round_trip(refused);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.details(), b"d");
        assert_eq!(
            status.metadata().get(SESSION).and_then(|v| v.to_str().ok()),
            Some(SESSION_MISMATCH)
        );
        let status = round_trip(outcome_unknown("timed out"));
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(
            status.metadata().get(OUTCOME).and_then(|v| v.to_str().ok()),
            Some(OUTCOME_UNKNOWN)
        );
    }

    #[test]
    fn an_answer_without_outcome_is_unknown() {
        let status = failed(proto::ForwardedAnswer {
            position: 0,
            outcome: None,
        });
        assert_eq!(status.code(), Code::Unknown);
        assert!(status.metadata().contains_key(OUTCOME));
    }

    fn is_answer(forwarded: &Forwarded) -> bool {
        matches!(forwarded, Forwarded::Answer(Err(ClientError::Status(_))))
    }

    #[test]
    fn a_leader_without_batches_sends_each_command_alone() {
        let lacking = Status::unimplemented("no such method");
        // With TLS, an older leader's role check refuses a method it does
        // not know before it is routed.
        let unknown_to_roles = Status::permission_denied(
            "permission denied: unknown method /clusterhost.v1.Cluster/ForwardBatch",
        );
        for status in [lacking, unknown_to_roles] {
            let end = BatchEnd::Refused(status.clone());
            assert_eq!(refusal(&end, false), Some(Refusal::NoBatches));
            assert!(matches!(unanswered(&end, false), Forwarded::SendAlone));
            // Once anything was answered the method exists: never resend.
            assert_eq!(refusal(&end, true), None);
            assert!(is_answer(&unanswered(&end, true)));
            // Said after answers started to stream: not a refusal.
            assert!(is_answer(&unanswered(&BatchEnd::Failed(status), false)));
        }
    }

    #[test]
    fn a_batch_over_the_leaders_limits_sends_each_command_alone() {
        let too_many = Status::invalid_argument("a forwarded batch holds at most 64 commands");
        let too_large = Status::out_of_range("decoded message length too large");
        for status in [too_many, too_large] {
            let end = BatchEnd::Refused(status);
            // Alone, without stopping batches to that leader.
            assert_eq!(refusal(&end, false), Some(Refusal::BatchLimits));
            assert!(matches!(unanswered(&end, false), Forwarded::SendAlone));
        }
    }

    #[test]
    fn other_refusals_and_transport_failures_are_each_commands_answer() {
        // Whatever its words (no message is read to decide).
        let others = [
            Status::unavailable("this node is no longer the leader"),
            Status::resource_exhausted("unimplemented"),
            Status::unknown("permission denied"),
        ];
        for status in others {
            assert!(is_answer(&unanswered(&BatchEnd::Refused(status), false)));
        }
        // Made by this side's transport, not said by the leader.
        for code in [
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::InvalidArgument,
        ] {
            let mut status = Status::new(code, "from the transport");
            status.set_source(std::sync::Arc::new(std::io::Error::other("reset")));
            let end = BatchEnd::Refused(status);
            assert_eq!(refusal(&end, false), None);
            assert!(is_answer(&unanswered(&end, false)));
        }
    }

    #[test]
    fn a_stream_closed_early_or_late_leaves_the_rest_unknown_never_unavailable() {
        for end in [BatchEnd::Finished, BatchEnd::TimedOut] {
            let Forwarded::Answer(Err(ClientError::Status(status))) = unanswered(&end, true) else {
                panic!("expected an error status");
            };
            assert_eq!(status.code(), Code::Unknown);
            assert!(status.metadata().contains_key(OUTCOME));
        }
    }

    #[test]
    fn a_failed_call_passes_its_status_to_every_command_unchanged() {
        let broken = Status::from_error(Box::new(std::io::Error::other("reset")));
        let Forwarded::Answer(Err(ClientError::Status(status))) =
            unanswered(&BatchEnd::Failed(broken), false)
        else {
            panic!("expected an error status");
        };
        // The source stays, so the runner reads it as broken mid-call.
        assert!(std::error::Error::source(&status).is_some());
    }
}
