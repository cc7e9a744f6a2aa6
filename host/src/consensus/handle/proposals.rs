//! Typed proposals: each kind of entry, stamped and proposed on the leader
//! through [`Consensus::propose`], with its response unpacked.

use std::time::Duration;

use super::{CommandAnswer, Consensus, DeployError, ProposeError, now_ms};
use crate::consensus::alarms::Alarm;
use crate::consensus::sessions::SessionStamp;
use crate::consensus::settings::{ClusterSettings, SettingsChange};
use crate::consensus::types::{DeployReceipt, Request, Response};
use crate::limits::{DEPLOY_TIMEOUT, REQUEST_TIMEOUT};
use crate::plugin::ApplyOutcome;

impl Consensus {
    /// Propose a client command, stamped with this leader's clock (the only
    /// time the plugin ever sees), and wait for the plugin's outcome.
    pub async fn propose_command(
        &self,
        bytes: Vec<u8>,
    ) -> Result<(u64, ApplyOutcome), ProposeError> {
        let request = Request::Command {
            time_ms: now_ms(),
            bytes,
        };
        let proposed = self.propose(request, REQUEST_TIMEOUT).await?;
        match proposed.response {
            Response::Command(outcome) => Ok((proposed.index, outcome)),
            other => Err(ProposeError::Refused(format!(
                "unexpected response to a command: {other:?}"
            ))),
        }
    }

    /// Open a client session (on the leader): its id and timeout.
    pub async fn open_session(&self, timeout: Duration) -> Result<(u64, u64), ProposeError> {
        let request = Request::OpenSession {
            time_ms: now_ms(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        match self.propose(request, REQUEST_TIMEOUT).await?.response {
            Response::SessionOpened {
                client_id,
                timeout_ms,
            } => Ok((client_id, timeout_ms)),
            other => Err(ProposeError::Refused(format!(
                "unexpected response to opening a session: {other:?}"
            ))),
        }
    }

    /// Propose a command within a client session (on the leader): applied
    /// once however often it is retried.
    pub async fn propose_session_command(
        &self,
        session: SessionStamp,
        bytes: Vec<u8>,
    ) -> Result<CommandAnswer, ProposeError> {
        let request = Request::SessionCommand {
            time_ms: now_ms(),
            session,
            bytes,
        };
        let proposed = self.propose(request, REQUEST_TIMEOUT).await?;
        match proposed.response {
            Response::Command(outcome) => Ok(CommandAnswer::Applied {
                index: proposed.index,
                outcome,
            }),
            Response::Replayed { index, outcome } => Ok(CommandAnswer::Replayed { index, outcome }),
            Response::SessionRefused(refusal) => Ok(CommandAnswer::Refused(refusal)),
            other => Err(ProposeError::Refused(format!(
                "unexpected response to a session command: {other:?}"
            ))),
        }
    }

    /// Propose switching the cluster to `plugin` (already validated) and
    /// wait for the outcome every replica reached.
    pub async fn propose_deploy(&self, plugin: Vec<u8>) -> Result<DeployReceipt, DeployError> {
        let request = Request::Deploy {
            time_ms: now_ms(),
            plugin,
        };
        let proposed =
            self.propose(request, DEPLOY_TIMEOUT)
                .await
                .map_err(|error| match error {
                    ProposeError::NotLeader => DeployError::NotLeader,
                    ProposeError::Ambiguous(reason) => DeployError::Unavailable(format!(
                        "the deploy's outcome is unknown ({reason}): see `clusterhost plugin list`"
                    )),
                    other => DeployError::Unavailable(other.to_string()),
                })?;
        match proposed.response {
            Response::Deploy(Ok(receipt)) => Ok(receipt),
            Response::Deploy(Err(reason)) => Err(DeployError::Failed(reason)),
            other => Err(DeployError::Unavailable(format!(
                "unexpected response to a deploy: {other:?}"
            ))),
        }
    }

    /// Propose a change of cluster settings (on the leader): the index it
    /// applied at, and the settings after it or why it was refused there.
    pub async fn propose_settings(
        &self,
        change: SettingsChange,
    ) -> Result<(u64, Result<ClusterSettings, String>), ProposeError> {
        let proposed = self
            .propose(Request::Settings(change), REQUEST_TIMEOUT)
            .await?;
        match proposed.response {
            Response::Settings(outcome) => Ok((proposed.index, outcome)),
            other => Err(ProposeError::Refused(format!(
                "unexpected response to a settings change: {other:?}"
            ))),
        }
    }

    /// Raise (or clear) an alarm through the log (on the leader).
    pub async fn propose_alarm(&self, alarm: Alarm) -> Result<u64, ProposeError> {
        Ok(self
            .propose(Request::Alarm(alarm), REQUEST_TIMEOUT)
            .await?
            .index)
    }
}
