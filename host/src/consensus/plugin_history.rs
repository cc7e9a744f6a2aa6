//! The replicated record of plugin deploys: the cluster version, every
//! attempt and its outcome, and the bytes of recent versions for rollback.
//! Pure data and decisions; the state machine does the I/O.

use crate::limits::{PLUGIN_HISTORY_RECORDS_MAX, PLUGIN_VERSIONS_RETAINED};

/// One deploy attempt, as every replica recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployRecord {
    /// The cluster version the plugin became (`None`: the deploy failed).
    pub version: Option<u64>,
    /// sha256 of the plugin, hex.
    pub digest: String,
    /// Size of the plugin.
    pub size_bytes: u64,
    /// Log index of the deploy entry: the switch point on every replica.
    pub index: u64,
    /// Leader time of the deploy, ms since the epoch.
    pub time_ms: u64,
    /// Why the deploy failed, identically on every replica.
    pub failure: Option<String>,
}

/// A plugin kept for rollback.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetainedPlugin {
    /// The cluster version it ran as.
    pub version: u64,
    /// Its bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for RetainedPlugin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "RetainedPlugin(v{}, {} bytes)",
            self.version,
            self.bytes.len()
        )
    }
}

/// The deploy history.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginHistory {
    /// Successful deploys so far; the first plugin is version 1.
    pub cluster_version: u64,
    /// Newest last, at most [`PLUGIN_HISTORY_RECORDS_MAX`].
    pub records: Vec<DeployRecord>,
    /// Previous versions, newest last, at most [`PLUGIN_VERSIONS_RETAINED`].
    pub retained: Vec<RetainedPlugin>,
}

impl PluginHistory {
    /// Record a successful switch from `previous` (the bytes that ran
    /// before, if any) to a new plugin; returns the new cluster version.
    pub fn record_success(&mut self, mut record: DeployRecord, previous: Option<Vec<u8>>) -> u64 {
        if let Some(bytes) = previous {
            self.retained.push(RetainedPlugin {
                version: self.cluster_version,
                bytes,
            });
            let excess = self.retained.len().saturating_sub(PLUGIN_VERSIONS_RETAINED);
            self.retained.drain(..excess);
        }
        self.cluster_version += 1;
        record.version = Some(self.cluster_version);
        record.failure = None;
        self.push(record);
        self.cluster_version
    }

    /// Record a failed deploy.
    pub fn record_failure(&mut self, mut record: DeployRecord, reason: String) {
        record.version = None;
        record.failure = Some(reason);
        self.push(record);
    }

    /// The plugin a rollback goes back to.
    pub fn rollback_target(&self) -> Option<&RetainedPlugin> {
        self.retained.last()
    }

    /// The history without plugin bytes, for reporting.
    pub fn without_bytes(&self) -> Self {
        Self {
            cluster_version: self.cluster_version,
            records: self.records.clone(),
            retained: Vec::new(),
        }
    }

    fn push(&mut self, record: DeployRecord) {
        self.records.push(record);
        let excess = self
            .records
            .len()
            .saturating_sub(PLUGIN_HISTORY_RECORDS_MAX);
        self.records.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u64) -> DeployRecord {
        DeployRecord {
            version: None,
            digest: format!("d{index}"),
            size_bytes: 1,
            index,
            time_ms: 0,
            failure: None,
        }
    }

    #[test]
    fn versions_count_successes_and_failures_change_nothing_but_the_record() {
        let mut history = PluginHistory::default();
        assert_eq!(history.record_success(record(1), None), 1);
        history.record_failure(record(2), "refused".to_string());
        assert_eq!(history.cluster_version, 1);
        assert_eq!(history.record_success(record(3), Some(vec![1])), 2);
        assert_eq!(history.records.len(), 3);
        assert_eq!(history.records[1].failure.as_deref(), Some("refused"));
        assert_eq!(
            history.rollback_target().map(|plugin| plugin.version),
            Some(1)
        );
    }

    #[test]
    fn retained_versions_and_records_are_bounded() {
        let mut history = PluginHistory::default();
        for index in 0..(PLUGIN_HISTORY_RECORDS_MAX as u64 + 5) {
            history.record_success(record(index), Some(vec![index as u8]));
        }
        assert_eq!(history.records.len(), PLUGIN_HISTORY_RECORDS_MAX);
        assert_eq!(history.retained.len(), PLUGIN_VERSIONS_RETAINED);
    }
}
