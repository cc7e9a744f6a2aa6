//! Cluster settings: everything that can change the outcome of applying an
//! entry, kept in the replicated state so every replica uses the same
//! values at the same index. Pure data and checks; the state machine
//! applies them.
//!
//! | setting | why it must agree on every replica |
//! |---|---|
//! | `fuel_per_call` | an `apply` that runs out of fuel fails on a replica with less |
//! | `fuel_per_bulk_call` | a `restore` during a deploy fails likewise |
//! | `memory_bytes_max` | an allocation past the cap traps |
//! | `response_bytes_max` | a larger response fails the entry |
//! | `snapshot_bytes_max` | a larger snapshot fails a deploy's handover |
//! | `command_bytes_max` | which commands the cluster accepts at all |
//! | `state_quota_bytes` | when the cluster stops taking writes |
//! | `protocol_level` | which kinds of entries and features may be used |
//! | `plugin_signers` | which deploys apply (kept beside these: [`super::trusted_signers`]) |
//!
//! Node flags with the same names only seed a new cluster; afterwards the
//! cluster's values win (`clusterhost config get|set`).

use std::fmt;

use crate::limits::{
    COMMAND_BYTES_MAX, PLUGIN_FUEL_PER_BULK_CALL, PLUGIN_FUEL_PER_CALL, PLUGIN_MEMORY_BYTES_MAX,
    PluginLimits, RESPONSE_BYTES_MAX, SNAPSHOT_BYTES_MAX, STATE_QUOTA_BYTES_DEFAULT,
};

/// The protocol level this binary supports: the highest level a cluster of
/// such binaries may run at.
///
/// - Level 0: clusters from before levels existed (commands and deploys).
/// - Level 1: cluster settings, applied-digest alarms, versioned snapshots.
///   A cluster created by this binary starts here; one upgraded from level
///   0 moves here with `clusterhost config set protocol_level 1` once every
///   node runs a binary that supports it.
/// - Level 2: client sessions.
/// - Level 3: the `plugin_signers` setting, checked when a deploy applies.
/// - Level 4: members' verified node names in the Raft membership record
///   (see [`super::types::Member`]), and followers forward client commands
///   to the leader in `ForwardBatch` calls (no new entry kind: every member
///   can answer one).
pub const PROTOCOL_LEVEL_SUPPORTED: u32 = 4;

/// The level from which client sessions (exactly-once writes) may be used.
pub const PROTOCOL_LEVEL_SESSIONS: u32 = 2;

/// The level from which the cluster may hold trusted plugin signers.
pub const PROTOCOL_LEVEL_SIGNERS: u32 = 3;

/// The level from which membership records may carry node names: a binary
/// below it would read a name as part of the member's address.
pub const PROTOCOL_LEVEL_NAMES: u32 = 4;

/// The level from which every member answers `ForwardBatch`, so followers
/// may forward commands in batches.
pub const PROTOCOL_LEVEL_FORWARD_BATCHES: u32 = 4;

/// The level of a cluster whose log never set one.
pub const PROTOCOL_LEVEL_LEGACY: u32 = 0;

/// The cluster-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterSettings {
    /// Fuel for one `apply` or `query` call.
    pub fuel_per_call: u64,
    /// Fuel for one `snapshot` or `restore` call.
    pub fuel_per_bulk_call: u64,
    /// Memory one plugin instance may use, in bytes.
    pub memory_bytes_max: u64,
    /// Largest response from `apply` or `query`, in bytes.
    pub response_bytes_max: u64,
    /// Largest plugin snapshot, in bytes.
    pub snapshot_bytes_max: u64,
    /// Largest command the cluster accepts, in bytes.
    pub command_bytes_max: u64,
    /// Writes are refused once the plugin state is this large, in bytes.
    pub state_quota_bytes: u64,
    /// The protocol level the cluster runs at.
    pub protocol_level: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            fuel_per_call: PLUGIN_FUEL_PER_CALL,
            fuel_per_bulk_call: PLUGIN_FUEL_PER_BULK_CALL,
            memory_bytes_max: PLUGIN_MEMORY_BYTES_MAX as u64,
            response_bytes_max: RESPONSE_BYTES_MAX as u64,
            snapshot_bytes_max: SNAPSHOT_BYTES_MAX as u64,
            command_bytes_max: COMMAND_BYTES_MAX as u64,
            state_quota_bytes: STATE_QUOTA_BYTES_DEFAULT,
            protocol_level: PROTOCOL_LEVEL_LEGACY,
        }
    }
}

/// A change of settings, as an entry carries it. Checked when it applies,
/// on every replica alike, against the settings in force there and then.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SettingsChange {
    /// The settings a new cluster starts with (from the bootstrapping
    /// node's flags); ignored once settings were ever set.
    Initial(ClusterSettings),
    /// One setting set to a value.
    Set {
        /// The setting's name.
        name: String,
        /// Its new value, as given.
        value: String,
    },
    /// [`SettingsChange::Initial`] with the plugin signers the
    /// bootstrapping node's `--plugin-signers` names (protocol level 3).
    InitialWithSigners {
        /// The settings.
        settings: ClusterSettings,
        /// The keys deployed plugins must be signed by.
        signers: super::trusted_signers::TrustedSigners,
    },
    // New kinds of changes go last: entries already in logs are decoded by
    // their position in this list.
}

impl ClusterSettings {
    /// The settings after `change`, or why it does not apply (nothing
    /// changes then). Pure: every replica reaches the same answer.
    pub fn after(&self, change: &SettingsChange) -> Result<ClusterSettings, String> {
        match change {
            SettingsChange::Initial(initial)
            | SettingsChange::InitialWithSigners {
                settings: initial, ..
            } => {
                if *self != ClusterSettings::default() {
                    return Err("the cluster's settings are already set".to_string());
                }
                initial.check().map_err(|error| error.to_string())?;
                Ok(*initial)
            }
            SettingsChange::Set { name, value } => {
                self.with(name, value).map_err(|error| error.to_string())
            }
        }
    }
}

/// One setting, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `fuel_per_call`.
    FuelPerCall,
    /// `fuel_per_bulk_call`.
    FuelPerBulkCall,
    /// `memory_bytes_max`.
    MemoryBytesMax,
    /// `response_bytes_max`.
    ResponseBytesMax,
    /// `snapshot_bytes_max`.
    SnapshotBytesMax,
    /// `command_bytes_max`.
    CommandBytesMax,
    /// `state_quota_bytes`.
    StateQuotaBytes,
    /// `protocol_level`.
    ProtocolLevel,
}

impl Setting {
    /// Every setting, in the order `config get` lists them.
    pub const ALL: [Setting; 8] = [
        Setting::FuelPerCall,
        Setting::FuelPerBulkCall,
        Setting::MemoryBytesMax,
        Setting::ResponseBytesMax,
        Setting::SnapshotBytesMax,
        Setting::CommandBytesMax,
        Setting::StateQuotaBytes,
        Setting::ProtocolLevel,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Setting::FuelPerCall => "fuel_per_call",
            Setting::FuelPerBulkCall => "fuel_per_bulk_call",
            Setting::MemoryBytesMax => "memory_bytes_max",
            Setting::ResponseBytesMax => "response_bytes_max",
            Setting::SnapshotBytesMax => "snapshot_bytes_max",
            Setting::CommandBytesMax => "command_bytes_max",
            Setting::StateQuotaBytes => "state_quota_bytes",
            Setting::ProtocolLevel => "protocol_level",
        }
    }

    /// The setting called `name`.
    pub fn named(name: &str) -> Option<Setting> {
        Setting::ALL
            .into_iter()
            .find(|setting| setting.name() == name)
    }

    /// The values it may take.
    pub fn range(self) -> (u64, u64) {
        match self {
            Setting::FuelPerCall | Setting::FuelPerBulkCall => (1_000, u64::MAX / 2),
            Setting::MemoryBytesMax => (1024 * 1024, 4 * 1024 * 1024 * 1024),
            Setting::ResponseBytesMax => (1024, RESPONSE_BYTES_MAX as u64),
            Setting::SnapshotBytesMax => (1024, SNAPSHOT_BYTES_MAX as u64),
            Setting::CommandBytesMax => (1024, COMMAND_BYTES_MAX as u64),
            Setting::StateQuotaBytes => (1024, SNAPSHOT_BYTES_MAX as u64),
            Setting::ProtocolLevel => (
                u64::from(PROTOCOL_LEVEL_LEGACY),
                u64::from(PROTOCOL_LEVEL_SUPPORTED),
            ),
        }
    }
}

/// Why a change was refused. Nothing changes then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// No setting has that name.
    #[error(
        "there is no cluster setting `{0}` (settings: {names}, {signers})",
        names = Setting::ALL.map(Setting::name).join(", "),
        signers = super::trusted_signers::SETTING_NAME
    )]
    Unknown(String),
    /// The value is not a number in range.
    #[error("{setting} must be a number from {min} to {max}, not `{value}`")]
    OutOfRange {
        /// The setting.
        setting: &'static str,
        /// What was asked for.
        value: String,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// The combination does not make sense.
    #[error("{0}")]
    Inconsistent(String),
}

impl ClusterSettings {
    /// The value of `setting`.
    pub fn get(&self, setting: Setting) -> u64 {
        match setting {
            Setting::FuelPerCall => self.fuel_per_call,
            Setting::FuelPerBulkCall => self.fuel_per_bulk_call,
            Setting::MemoryBytesMax => self.memory_bytes_max,
            Setting::ResponseBytesMax => self.response_bytes_max,
            Setting::SnapshotBytesMax => self.snapshot_bytes_max,
            Setting::CommandBytesMax => self.command_bytes_max,
            Setting::StateQuotaBytes => self.state_quota_bytes,
            Setting::ProtocolLevel => u64::from(self.protocol_level),
        }
    }

    /// These settings with `name` set to `value`, checked: in range, and
    /// consistent with each other.
    pub fn with(&self, name: &str, value: &str) -> Result<ClusterSettings, SettingsError> {
        let setting =
            Setting::named(name).ok_or_else(|| SettingsError::Unknown(name.to_string()))?;
        let (min, max) = setting.range();
        let number: u64 = value
            .trim()
            .replace('_', "")
            .parse()
            .ok()
            .filter(|number| (min..=max).contains(number))
            .ok_or_else(|| SettingsError::OutOfRange {
                setting: setting.name(),
                value: value.to_string(),
                min,
                max,
            })?;
        if self.protocol_level == PROTOCOL_LEVEL_LEGACY && setting != Setting::ProtocolLevel {
            return Err(SettingsError::Inconsistent(format!(
                "cluster settings need protocol level 1; this cluster runs at {PROTOCOL_LEVEL_LEGACY}. \
                 Once every node runs a clusterhost that supports it: clusterhost config set protocol_level 1"
            )));
        }
        let mut changed = *self;
        match setting {
            Setting::FuelPerCall => changed.fuel_per_call = number,
            Setting::FuelPerBulkCall => changed.fuel_per_bulk_call = number,
            Setting::MemoryBytesMax => changed.memory_bytes_max = number,
            Setting::ResponseBytesMax => changed.response_bytes_max = number,
            Setting::SnapshotBytesMax => changed.snapshot_bytes_max = number,
            Setting::CommandBytesMax => changed.command_bytes_max = number,
            Setting::StateQuotaBytes => changed.state_quota_bytes = number,
            Setting::ProtocolLevel => {
                if number < u64::from(self.protocol_level) {
                    return Err(SettingsError::Inconsistent(format!(
                        "protocol_level cannot go down (it is {}): entries of the higher level may already be in the log",
                        self.protocol_level
                    )));
                }
                changed.protocol_level = number as u32;
            }
        }
        changed.check()?;
        Ok(changed)
    }

    /// Refuse combinations that cannot work.
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.fuel_per_bulk_call < self.fuel_per_call {
            return Err(SettingsError::Inconsistent(format!(
                "fuel_per_bulk_call ({}) must be at least fuel_per_call ({}): a snapshot or restore may need what one apply does",
                self.fuel_per_bulk_call, self.fuel_per_call
            )));
        }
        if self.state_quota_bytes > self.snapshot_bytes_max {
            return Err(SettingsError::Inconsistent(format!(
                "state_quota_bytes ({}) must not exceed snapshot_bytes_max ({}): a state past the snapshot limit can no longer be snapshotted",
                self.state_quota_bytes, self.snapshot_bytes_max
            )));
        }
        Ok(())
    }

    /// The bounds every plugin call runs under.
    pub fn plugin_limits(&self) -> PluginLimits {
        let bytes = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        PluginLimits {
            fuel_per_call: self.fuel_per_call,
            fuel_per_bulk_call: self.fuel_per_bulk_call,
            memory_bytes_max: bytes(self.memory_bytes_max),
            response_bytes_max: bytes(self.response_bytes_max),
            snapshot_bytes_max: bytes(self.snapshot_bytes_max),
        }
    }

    /// The settings a new cluster starts with, from the bootstrapping
    /// node's flags.
    pub fn from_flags(limits: &PluginLimits) -> Self {
        Self {
            fuel_per_call: limits.fuel_per_call,
            fuel_per_bulk_call: limits.fuel_per_bulk_call,
            memory_bytes_max: limits.memory_bytes_max as u64,
            protocol_level: PROTOCOL_LEVEL_SUPPORTED,
            ..Self::default()
        }
    }

    /// For each flag given to this node that names a different value than
    /// the cluster's, a warning saying which value is used and how to
    /// change it cluster-wide.
    pub fn warnings_for(&self, flags: &[(&'static str, Setting, u64)]) -> Vec<String> {
        flags
            .iter()
            .filter(|(_, setting, value)| self.get(*setting) != *value)
            .map(|(flag, setting, value)| {
                format!(
                    "{flag} {value} differs from the cluster's {name} = {cluster}; this node uses the cluster's value \
                     (every replica must). To change it for the whole cluster: clusterhost config set {name} {value}",
                    name = setting.name(),
                    cluster = self.get(*setting),
                )
            })
            .collect()
    }
}

impl fmt::Display for ClusterSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for setting in Setting::ALL {
            writeln!(formatter, "{} = {}", setting.name(), self.get(setting))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> ClusterSettings {
        ClusterSettings {
            protocol_level: PROTOCOL_LEVEL_SUPPORTED,
            ..ClusterSettings::default()
        }
    }

    #[test]
    fn a_legacy_cluster_must_raise_its_level_before_other_settings() {
        let legacy = ClusterSettings::default();
        let error = legacy.with("fuel_per_call", "20000").expect_err("level 0");
        assert!(
            error.to_string().contains("config set protocol_level 1"),
            "{error}"
        );
        let raised = legacy.with("protocol_level", "1").expect("raise");
        assert_eq!(raised.protocol_level, 1);
        assert!(raised.with("protocol_level", "0").is_err(), "never down");
    }

    #[test]
    fn a_setting_changes_only_within_its_range() {
        let settings = current();
        let changed = settings.with("fuel_per_call", "20_000").expect("in range");
        assert_eq!(changed.fuel_per_call, 20_000);
        assert_eq!(changed.fuel_per_bulk_call, settings.fuel_per_bulk_call);
        assert!(matches!(
            settings.with("fuel_per_call", "12"),
            Err(SettingsError::OutOfRange { min: 1_000, .. })
        ));
        assert!(matches!(
            settings.with("fuel_per_call", "lots"),
            Err(SettingsError::OutOfRange { .. })
        ));
        assert!(matches!(
            settings.with("fuel", "1"),
            Err(SettingsError::Unknown(_))
        ));
    }

    #[test]
    fn inconsistent_combinations_are_refused() {
        let settings = current();
        let error = settings
            .with("fuel_per_bulk_call", "5000")
            .expect_err("below per-call fuel");
        assert!(
            error.to_string().contains("at least fuel_per_call"),
            "{error}"
        );
        let small = settings.with("snapshot_bytes_max", "4096");
        assert!(small.is_err(), "the quota would exceed the snapshot limit");
    }

    #[test]
    fn flags_that_differ_are_named_with_the_fix() {
        let settings = ClusterSettings::default();
        let warnings = settings.warnings_for(&[
            ("--plugin-fuel", Setting::FuelPerCall, 20_000),
            (
                "--plugin-bulk-fuel",
                Setting::FuelPerBulkCall,
                PLUGIN_FUEL_PER_BULK_CALL,
            ),
        ]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("--plugin-fuel 20000 differs"),
            "{}",
            warnings[0]
        );
        assert!(warnings[0].contains("clusterhost config set fuel_per_call 20000"));
    }
}
