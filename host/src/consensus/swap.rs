//! Switching the cluster to a new plugin when a deploy entry applies: the
//! decisions, as pure functions. The state machine takes the steps (compile,
//! take the running plugin's state, restore it into the new one) and asks
//! these what each outcome means. Every replica reaches the same answers at
//! the same index.

use super::plugin_history::{DeployRecord, PluginHistory};
use super::types::DeployReceipt;
use crate::plugin::{EntryPosition, PluginSnapshot, RestoreError, SavedState};

/// Position used for a plugin that has applied nothing yet.
pub const GENESIS_POSITION: EntryPosition = EntryPosition {
    index: 0,
    term: 0,
    time_ms: 0,
};

/// What a deploy entry calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The plugin already runs: nothing changes (and nothing is compiled).
    AlreadyRunning(DeployReceipt),
    /// Compile it, hand the running state over, switch.
    Switch,
}

/// Decide what the deploy of `incoming` (a digest) at `index` does while
/// `running` runs.
pub fn plan(running: Option<&str>, incoming: &str, history: &PluginHistory, index: u64) -> Plan {
    if running == Some(incoming) {
        return Plan::AlreadyRunning(DeployReceipt {
            version: history.cluster_version,
            digest: incoming.to_string(),
            index,
        });
    }
    Plan::Switch
}

/// The running plugin's state, ready for the new plugin's `restore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// State and the position it includes; `None`: no plugin ran before.
    pub state: Option<SavedState>,
    /// The bytes of the plugin that ran before, kept for rollback.
    pub previous: Option<Vec<u8>>,
}

/// What the running plugin's `snapshot` means for the switch: the state to
/// hand over, or why the deploy fails (the old plugin keeps running).
pub fn handover(
    snapshot: Result<Option<PluginSnapshot>, impl std::fmt::Display>,
) -> Result<Handover, String> {
    match snapshot {
        Err(fault) => Err(format!(
            "the running plugin could not hand over its state: {fault}"
        )),
        Ok(None) => Ok(Handover {
            state: None,
            previous: None,
        }),
        Ok(Some(snapshot)) => Ok(Handover {
            state: Some(SavedState {
                position: snapshot.position.unwrap_or(GENESIS_POSITION),
                bytes: snapshot.state,
                enveloped: snapshot.enveloped,
            }),
            previous: Some(snapshot.code.to_vec()),
        }),
    }
}

/// Record the deploy's outcome in `history` and say what the client gets.
/// `installed` is the new plugin's restore (or the handover's failure).
pub fn conclude(
    history: &mut PluginHistory,
    record: DeployRecord,
    previous: Option<Vec<u8>>,
    installed: Result<(), String>,
) -> Result<DeployReceipt, String> {
    match installed {
        Ok(()) => {
            let digest = record.digest.clone();
            let index = record.index;
            let version = history.record_success(record, previous);
            Ok(DeployReceipt {
                version,
                digest,
                index,
            })
        }
        Err(reason) => {
            history.record_failure(record, reason.clone());
            Err(reason)
        }
    }
}

/// Why a new plugin's `restore` refused the handed-over state, as recorded.
pub fn restore_failure(error: RestoreError) -> String {
    match error {
        RestoreError::Refused(reason) => format!("the new plugin refused the state: {reason}"),
        RestoreError::Fault(fault) => format!("the new plugin failed to take over: {fault}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u64) -> DeployRecord {
        DeployRecord {
            version: None,
            digest: "d2".to_string(),
            size_bytes: 10,
            index,
            time_ms: 5,
            failure: None,
        }
    }

    #[test]
    fn the_running_plugin_is_not_switched_again() {
        let history = PluginHistory {
            cluster_version: 3,
            ..PluginHistory::default()
        };
        assert_eq!(
            plan(Some("d2"), "d2", &history, 40),
            Plan::AlreadyRunning(DeployReceipt {
                version: 3,
                digest: "d2".to_string(),
                index: 40
            })
        );
        assert_eq!(plan(Some("d1"), "d2", &history, 40), Plan::Switch);
        assert_eq!(plan(None, "d2", &history, 40), Plan::Switch);
    }

    #[test]
    fn a_failed_handover_fails_the_deploy() {
        let reason = handover(Err("out of fuel")).expect_err("fails");
        assert!(reason.contains("could not hand over"), "{reason}");
        assert_eq!(
            handover(Ok::<_, &str>(None)),
            Ok(Handover {
                state: None,
                previous: None
            })
        );
    }

    #[test]
    fn success_bumps_the_version_and_failure_only_records() {
        let mut history = PluginHistory::default();
        let receipt = conclude(&mut history, record(7), None, Ok(())).expect("switched");
        assert_eq!(
            receipt,
            DeployReceipt {
                version: 1,
                digest: "d2".to_string(),
                index: 7
            }
        );
        let failure = conclude(
            &mut history,
            record(9),
            Some(vec![1]),
            Err(restore_failure(RestoreError::Refused("v9".to_string()))),
        );
        assert_eq!(
            failure,
            Err("the new plugin refused the state: v9".to_string())
        );
        assert_eq!(history.cluster_version, 1);
        assert_eq!(history.records.len(), 2);
        assert!(
            history.retained.is_empty(),
            "a failed deploy retains nothing"
        );
    }
}
