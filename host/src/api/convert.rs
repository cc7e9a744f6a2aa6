//! Conversions between what the node computes and the public API's
//! messages and status codes, in one place.

use clusterhost_client::headers;
use clusterhost_client::proto::{self, apply_response};
use tonic::Status;

use super::leader::{Attempt, not_leader, outcome_unknown};
use crate::consensus::plugin_history::PluginHistory;
use crate::consensus::sessions::{SessionRefusal, SessionStamp};
use crate::consensus::settings::{ClusterSettings, Setting};
use crate::consensus::trusted_signers::TrustedSigners;
use crate::consensus::{CommandAnswer, DeployError, DeployReceipt, ProposeError};
use crate::membership::operations::OperationError;
use crate::plugin::{ApplyError, ApplyOutcome};

/// A command's outcome at `index`, as the client sees it.
pub fn apply_response(index: u64, outcome: ApplyOutcome) -> proto::ApplyResponse {
    let result = match outcome {
        Ok(bytes) => apply_response::Result::Ok(bytes),
        Err(ApplyError::Rejected(message)) => apply_response::Result::Rejected(message),
        Err(ApplyError::Fault(fault)) => apply_response::Result::Fault(fault.to_string()),
    };
    proto::ApplyResponse {
        index,
        result: Some(result),
        replayed: false,
        leader_addr: String::new(),
    }
}

/// A session command's answer, as the client sees it.
pub fn command_answer(answer: CommandAnswer) -> Result<proto::ApplyResponse, Status> {
    match answer {
        CommandAnswer::Applied { index, outcome } => Ok(apply_response(index, outcome)),
        CommandAnswer::Replayed { index, outcome } => Ok(proto::ApplyResponse {
            replayed: true,
            ..apply_response(index, outcome)
        }),
        CommandAnswer::Refused(refusal) => Err(session_refusal(refusal)),
    }
}

/// A session stamp from the API.
pub fn session_stamp(stamp: proto::SessionStamp) -> SessionStamp {
    SessionStamp {
        client_id: stamp.client_id,
        sequence: stamp.sequence,
        first_outstanding: stamp.first_outstanding,
    }
}

/// Metadata key on an error about a session, naming what is wrong.
pub const SESSION_HEADER: &str = headers::SESSION;

/// A refused session command as a status, with [`SESSION_HEADER`] saying
/// which refusal it is. None of them applied anything.
pub fn session_refusal(refusal: SessionRefusal) -> Status {
    let (mut status, name) = match refusal {
        SessionRefusal::NotOpen => (
            Status::not_found(refusal.message()),
            headers::SESSION_NOT_OPEN,
        ),
        SessionRefusal::Acknowledged => (
            Status::failed_precondition(refusal.message()),
            headers::SESSION_ACKNOWLEDGED,
        ),
        SessionRefusal::TooManyOutstanding => (
            Status::resource_exhausted(refusal.message()),
            headers::SESSION_OUTSTANDING,
        ),
        SessionRefusal::ResponseNotKept => (
            Status::already_exists(refusal.message()),
            headers::SESSION_NOT_KEPT,
        ),
        SessionRefusal::Invalid => (
            Status::invalid_argument(refusal.message()),
            headers::SESSION_INVALID,
        ),
        SessionRefusal::Mismatch => (
            Status::invalid_argument(refusal.message()),
            headers::SESSION_MISMATCH,
        ),
    };
    status.metadata_mut().insert(
        SESSION_HEADER,
        tonic::metadata::MetadataValue::from_static(name),
    );
    status
}

/// Why a command produced no response, as a status (not-leader is retried
/// before it gets here).
pub fn propose_status(error: ProposeError) -> Status {
    match error {
        ProposeError::NotLeader => not_leader("this node is no longer the leader"),
        ProposeError::Ambiguous(reason) => outcome_unknown(&reason),
        ProposeError::Refused(message) => Status::failed_precondition(message),
    }
}

/// A deploy receipt as the API answers it.
pub fn deploy_response(receipt: DeployReceipt) -> proto::DeployResponse {
    proto::DeployResponse {
        version: receipt.version,
        digest: receipt.digest,
        index: receipt.index,
    }
}

/// A failed deploy proposal as an attempt's outcome.
pub fn deploy_attempt(error: DeployError) -> Attempt {
    match error {
        DeployError::NotLeader => Attempt::NotLeader,
        DeployError::Failed(_) => Attempt::Final(Status::failed_precondition(error.to_string())),
        DeployError::Unavailable(message) => Attempt::Final(Status::unavailable(message)),
    }
}

/// A refused membership operation as a status.
pub fn operation_status(error: OperationError) -> Status {
    match error {
        OperationError::UnknownNode(_) => Status::not_found(error.to_string()),
        OperationError::Invalid(message) => Status::invalid_argument(message),
        OperationError::Unavailable(message) => Status::unavailable(message),
    }
}

/// The cluster settings as the API answers them.
pub fn settings_response(
    settings: &ClusterSettings,
    signers: &TrustedSigners,
    index: u64,
) -> proto::SettingsResponse {
    proto::SettingsResponse {
        settings: Setting::ALL
            .into_iter()
            .map(|setting| proto::ClusterSetting {
                name: setting.name().to_string(),
                value: settings.get(setting),
            })
            .collect(),
        index,
        plugin_signers: signers.to_hex(),
    }
}

/// The replicated deploy history as the API answers it.
pub fn history_response(history: PluginHistory) -> proto::PluginHistoryResponse {
    proto::PluginHistoryResponse {
        cluster_version: history.cluster_version,
        records: history
            .records
            .into_iter()
            .map(|record| proto::DeployRecord {
                version: record.version,
                digest: record.digest,
                size_bytes: record.size_bytes,
                index: record.index,
                time_ms: record.time_ms,
                failure: record.failure.unwrap_or_default(),
            })
            .collect(),
    }
}
