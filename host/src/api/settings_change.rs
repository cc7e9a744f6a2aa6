//! Checking a `SetSetting` request before it is proposed: what entry it
//! becomes, and whether the running cluster can take it. Refusals here
//! change nothing; the apply checks the same again on every replica.

use tonic::Status;

use crate::consensus::settings::{ClusterSettings, SettingsChange};
use crate::consensus::trusted_signers::{self, TrustedSigners};

/// The entry that sets `name` to `value`, and the settings it leads to
/// (for [`behind_members`]). `plugin_signers` takes a signers file's text
/// and is proposed in canonical form.
pub fn proposal(
    current: &ClusterSettings,
    name: &str,
    value: &str,
) -> Result<(SettingsChange, ClusterSettings), Status> {
    if name == trusted_signers::SETTING_NAME {
        trusted_signers::check_level(current).map_err(Status::failed_precondition)?;
        let signers = TrustedSigners::parse(value).map_err(Status::invalid_argument)?;
        let change = SettingsChange::Set {
            name: name.to_string(),
            value: signers.to_text(),
        };
        return Ok((change, *current));
    }
    let changed = current
        .with(name, value)
        .map_err(|error| Status::invalid_argument(error.to_string()))?;
    let change = SettingsChange::Set {
        name: name.to_string(),
        value: value.to_string(),
    };
    Ok((change, changed))
}

/// Refuse settings the running cluster cannot take: a level some member
/// does not support (`supported`: each other member's id and the level it
/// announces).
pub fn behind_members(
    changed: &ClusterSettings,
    supported: impl Iterator<Item = (u64, u32)>,
) -> Result<(), Status> {
    let behind: Vec<String> = supported
        .filter(|(_, level)| *level < changed.protocol_level)
        .map(|(id, level)| format!("node {id} supports level {level}"))
        .collect();
    if behind.is_empty() {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "protocol_level {} needs every member to support it; {}: upgrade them first",
        changed.protocol_level,
        behind.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::settings::{PROTOCOL_LEVEL_SESSIONS, PROTOCOL_LEVEL_SIGNERS};

    fn at(protocol_level: u32) -> ClusterSettings {
        ClusterSettings {
            protocol_level,
            ..ClusterSettings::default()
        }
    }

    #[test]
    fn signers_are_proposed_canonical_and_only_at_their_level() {
        let key = "ab".repeat(32);
        let text = format!("# ops\n{key}\n\n{key}\n");
        let (change, changed) =
            proposal(&at(PROTOCOL_LEVEL_SIGNERS), "plugin_signers", &text).expect("proposal");
        assert_eq!(changed, at(PROTOCOL_LEVEL_SIGNERS));
        assert_eq!(
            change,
            SettingsChange::Set {
                name: "plugin_signers".to_string(),
                value: key.clone(),
            }
        );
        let refused =
            proposal(&at(PROTOCOL_LEVEL_SESSIONS), "plugin_signers", &key).expect_err("level 2");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        let bad = proposal(&at(PROTOCOL_LEVEL_SIGNERS), "plugin_signers", "zz").expect_err("hex");
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn a_level_is_refused_while_a_member_does_not_support_it() {
        let (_, changed) =
            proposal(&at(PROTOCOL_LEVEL_SESSIONS), "protocol_level", "3").expect("in range");
        assert!(behind_members(&changed, [(2, 3), (3, 3)].into_iter()).is_ok());
        let error = behind_members(&changed, [(2, 3), (3, 2)].into_iter()).expect_err("behind");
        assert!(
            error.message().contains("node 3 supports level 2"),
            "{error}"
        );
    }
}
