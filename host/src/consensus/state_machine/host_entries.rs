//! Applying a change of cluster settings: checked against the current ones,
//! refused alike everywhere, or in force from this entry on every replica.

use std::io;

use super::{StateMachineStore, effective_limits, set_limits};
use crate::consensus::digest::{Applied, AppliedDigest};
use crate::consensus::settings::{
    ClusterSettings, PROTOCOL_LEVEL_LEGACY, PROTOCOL_LEVEL_SIGNERS, PROTOCOL_LEVEL_SUPPORTED,
    SettingsChange,
};
use crate::consensus::trusted_signers;

impl StateMachineStore {
    /// Apply `change` at entry `index`: the settings after it, or why every
    /// replica refused it. An `io::Error` stops the node (a level it does
    /// not support).
    pub(super) async fn apply_settings(
        &mut self,
        change: &SettingsChange,
        index: u64,
        term: u64,
    ) -> io::Result<Result<ClusterSettings, String>> {
        let (settings, signers) =
            match trusted_signers::after(&self.host.settings, &self.host.signers, change) {
                Ok(changed) => changed,
                Err(reason) => {
                    self.host
                        .digest
                        .apply(index, term, Applied::Host(b"settings refused"));
                    return Ok(Err(reason));
                }
            };
        if settings.protocol_level > PROTOCOL_LEVEL_SUPPORTED {
            // Applying past this entry would guess at entries this
            // binary cannot read: stop here, the same on every run.
            return Err(io::Error::other(format!(
                "the cluster moved to protocol level {} at entry {index}; this clusterhost ({}) supports \
                 up to {PROTOCOL_LEVEL_SUPPORTED}: upgrade this node's binary",
                settings.protocol_level,
                env!("CARGO_PKG_VERSION")
            )));
        }
        if self.host.settings.protocol_level == PROTOCOL_LEVEL_LEGACY
            && settings.protocol_level > PROTOCOL_LEVEL_LEGACY
        {
            // Replicas of a legacy cluster may have started their
            // digests at different points (one restored an old
            // snapshot): every one starts afresh at this entry.
            self.host.digest = AppliedDigest::default();
        }
        self.host.settings = settings;
        self.host.signers = signers;
        set_limits(&self.plugin, effective_limits(&settings, &self.flag_limits)).await?;
        // Below the signers' level the digest folds what binaries without
        // signers fold, so replicas of both agree during an upgrade.
        let encoded = if settings.protocol_level < PROTOCOL_LEVEL_SIGNERS {
            postcard::to_stdvec(&settings)
        } else {
            postcard::to_stdvec(&(&settings, &self.host.signers))
        }
        .map_err(io::Error::other)?;
        self.host.digest.apply(index, term, Applied::Host(&encoded));
        tracing::info!(
            index,
            "cluster settings changed:\n{settings}{} = {:?}",
            trusted_signers::SETTING_NAME,
            self.host.signers.to_hex()
        );
        // Visible before the proposer hears back.
        self.publish_replicated();
        Ok(Ok(settings))
    }
}
