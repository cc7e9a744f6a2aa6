//! The cluster setting `plugin_signers`: the ed25519 keys a deployed plugin
//! must be signed by (none: any plugin). It is replicated, not a node flag,
//! because the apply of a deploy entry checks it: replicas trusting
//! different keys would keep different plugins and diverge. Pure data and
//! checks; the state machine applies them.

use super::settings::{ClusterSettings, PROTOCOL_LEVEL_SIGNERS, SettingsChange};
use crate::security::signing::{self, Signer, SigningError};

/// The setting's name, as `clusterhost config set` takes it.
pub const SETTING_NAME: &str = "plugin_signers";

/// Most keys the setting holds: every deploy checks against all of them,
/// and every snapshot carries them.
pub const PLUGIN_SIGNERS_MAX: usize = 64;

/// The keys a deployed plugin must be signed by; empty: any plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrustedSigners(Vec<Signer>);

impl TrustedSigners {
    /// The setting holding `keys` (sorted, without repeats, so the same
    /// keys fold into the digest alike), or why it cannot.
    pub fn new(mut keys: Vec<Signer>) -> Result<Self, String> {
        keys.sort_unstable();
        keys.dedup();
        if keys.len() > PLUGIN_SIGNERS_MAX {
            return Err(format!(
                "{SETTING_NAME} holds at most {PLUGIN_SIGNERS_MAX} keys, not {}",
                keys.len()
            ));
        }
        Ok(Self(keys))
    }

    /// The setting from a signers file's text (one hex key a line, `#`
    /// comments; no keys: any plugin).
    pub fn parse(text: &str) -> Result<Self, String> {
        let keys = signing::parse_signers(text).map_err(|error| error.to_string())?;
        Self::new(keys)
    }

    /// Whether any plugin may be deployed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys, hex.
    pub fn to_hex(&self) -> Vec<String> {
        self.0.iter().map(hex::encode).collect()
    }

    /// The keys as a signers file's text (what a settings entry carries).
    pub fn to_text(&self) -> String {
        self.to_hex().join("\n")
    }

    /// Whether `plugin` may be deployed: signed by one of the keys, or any
    /// plugin when there are none.
    pub fn verify(&self, plugin: &[u8]) -> Result<(), SigningError> {
        if self.is_empty() {
            return Ok(());
        }
        signing::verify(plugin, &self.0)
    }
}

/// The change that starts a new cluster: its settings and, when the
/// bootstrapping node has `--plugin-signers`, its signers. Without signers
/// it is the entry binaries before `plugin_signers` also read.
pub fn initial_change(settings: ClusterSettings, signers: TrustedSigners) -> SettingsChange {
    if signers.is_empty() {
        SettingsChange::Initial(settings)
    } else {
        SettingsChange::InitialWithSigners { settings, signers }
    }
}

/// The settings and signers after `change`, or why it does not apply
/// (nothing changes then). Pure: every replica reaches the same answer.
pub fn after(
    settings: &ClusterSettings,
    signers: &TrustedSigners,
    change: &SettingsChange,
) -> Result<(ClusterSettings, TrustedSigners), String> {
    match change {
        SettingsChange::Set { name, value } if name == SETTING_NAME => {
            check_level(settings)?;
            Ok((*settings, TrustedSigners::parse(value)?))
        }
        SettingsChange::InitialWithSigners {
            signers: initial, ..
        } => {
            let settings = settings.after(change)?;
            check_level(&settings)?;
            Ok((settings, TrustedSigners::new(initial.0.clone())?))
        }
        _ => Ok((settings.after(change)?, signers.clone())),
    }
}

/// The keys a deploy is checked against before it is proposed: the
/// cluster's from protocol level 3 on; below it, where the cluster cannot
/// hold any, this node's `--plugin-signers`, as before the setting existed.
pub fn for_proposals(
    settings: &ClusterSettings,
    cluster: &TrustedSigners,
    flag: Option<&TrustedSigners>,
) -> TrustedSigners {
    match flag {
        Some(flag) if settings.protocol_level < PROTOCOL_LEVEL_SIGNERS => flag.clone(),
        _ => cluster.clone(),
    }
}

/// A warning when this node's `--plugin-signers` is not what the cluster
/// checks, naming the fix.
pub fn flag_warning(
    settings: &ClusterSettings,
    cluster: &TrustedSigners,
    flag: Option<&TrustedSigners>,
) -> Option<String> {
    let flag = flag?;
    if settings.protocol_level < PROTOCOL_LEVEL_SIGNERS {
        return Some(format!(
            "--plugin-signers is checked by this node alone while the cluster runs at protocol level {}: \
             once every node supports it, clusterhost config set protocol_level {PROTOCOL_LEVEL_SIGNERS} \
             and clusterhost config set {SETTING_NAME} FILE make every replica check it",
            settings.protocol_level
        ));
    }
    (flag != cluster).then(|| {
        format!(
            "--plugin-signers differs from the cluster's {SETTING_NAME} ({} keys); this node checks the \
             cluster's (every replica must). To change it for the whole cluster: clusterhost config set \
             {SETTING_NAME} FILE",
            cluster.0.len()
        )
    })
}

/// Refuse signers in a cluster whose binaries may not all know them.
pub fn check_level(settings: &ClusterSettings) -> Result<(), String> {
    if settings.protocol_level < PROTOCOL_LEVEL_SIGNERS {
        return Err(format!(
            "{SETTING_NAME} needs protocol level {PROTOCOL_LEVEL_SIGNERS}; this cluster runs at {}. Once every \
             node runs a clusterhost that supports it: clusterhost config set protocol_level {PROTOCOL_LEVEL_SIGNERS}",
            settings.protocol_level
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::settings::PROTOCOL_LEVEL_SUPPORTED;

    fn key() -> (String, String) {
        signing::generate_key().expect("key")
    }

    fn current() -> ClusterSettings {
        ClusterSettings {
            protocol_level: PROTOCOL_LEVEL_SIGNERS,
            ..ClusterSettings::default()
        }
    }

    #[test]
    fn no_signers_trust_any_plugin_and_some_only_theirs() {
        let (private, public) = key();
        let plugin = b"\0asm\x0d\0\x01\0component".to_vec();
        assert_eq!(TrustedSigners::default().verify(&plugin), Ok(()));
        let signers = TrustedSigners::parse(&format!("# ops\n{public}\n")).expect("parse");
        assert_eq!(signers.verify(&plugin), Err(SigningError::Unsigned));
        let signed = signing::sign(&plugin, &private).expect("sign");
        assert_eq!(signers.verify(&signed), Ok(()));
        let (other, _) = key();
        let foreign = signing::sign(&plugin, &other).expect("sign");
        assert!(matches!(
            signers.verify(&foreign),
            Err(SigningError::UnknownSigner(_))
        ));
    }

    #[test]
    fn the_setting_is_canonical_and_bounded() {
        let (_, a) = key();
        let (_, b) = key();
        let one = TrustedSigners::parse(&format!("{a}\n{b}\n{a}")).expect("parse");
        let other = TrustedSigners::parse(&format!("{b}\n{a}")).expect("parse");
        assert_eq!(one, other, "order and repeats do not matter");
        assert_eq!(TrustedSigners::parse(&one.to_text()), Ok(one));
        let many = (0..=PLUGIN_SIGNERS_MAX)
            .map(|byte| [byte as u8; 32])
            .collect();
        let error = TrustedSigners::new(many).expect_err("too many");
        assert!(error.contains("at most 64"), "{error}");
        assert!(TrustedSigners::parse("nothex").is_err());
    }

    #[test]
    fn signers_are_set_through_the_log_only_at_their_level() {
        let (_, public) = key();
        let set = SettingsChange::Set {
            name: SETTING_NAME.to_string(),
            value: public.clone(),
        };
        let empty = TrustedSigners::default();
        let (settings, signers) = after(&current(), &empty, &set).expect("set");
        assert_eq!(settings, current());
        assert_eq!(signers.to_hex(), vec![public]);
        let older = ClusterSettings {
            protocol_level: PROTOCOL_LEVEL_SIGNERS - 1,
            ..current()
        };
        let error = after(&older, &empty, &set).expect_err("level");
        assert!(error.contains("config set protocol_level 3"), "{error}");
        // Other settings leave the signers as they are.
        let fuel = SettingsChange::Set {
            name: "fuel_per_call".to_string(),
            value: "20000".to_string(),
        };
        let (settings, kept) = after(&current(), &signers, &fuel).expect("fuel");
        assert_eq!((settings.fuel_per_call, kept), (20_000, signers));
    }

    #[test]
    fn the_flag_decides_only_below_the_signers_level() {
        let flag = TrustedSigners::new(vec![[1; 32]]).expect("flag");
        let cluster = TrustedSigners::new(vec![[2; 32]]).expect("cluster");
        let older = ClusterSettings {
            protocol_level: PROTOCOL_LEVEL_SIGNERS - 1,
            ..current()
        };
        let empty = TrustedSigners::default();
        assert_eq!(for_proposals(&older, &empty, Some(&flag)), flag);
        assert_eq!(for_proposals(&current(), &cluster, Some(&flag)), cluster);
        assert_eq!(for_proposals(&current(), &empty, Some(&flag)), empty);
        let warning = flag_warning(&older, &empty, Some(&flag)).expect("level");
        assert!(warning.contains("config set protocol_level 3"), "{warning}");
        let warning = flag_warning(&current(), &cluster, Some(&flag)).expect("differs");
        assert!(
            warning.contains("config set plugin_signers FILE"),
            "{warning}"
        );
        assert_eq!(flag_warning(&current(), &flag, Some(&flag)), None);
        assert_eq!(flag_warning(&current(), &cluster, None), None);
    }

    #[test]
    fn a_new_cluster_starts_with_its_seed_signers_once() {
        let (_, public) = key();
        let seed = TrustedSigners::parse(&public).expect("parse");
        let flags = ClusterSettings {
            protocol_level: PROTOCOL_LEVEL_SUPPORTED,
            ..ClusterSettings::default()
        };
        assert_eq!(
            initial_change(flags, TrustedSigners::default()),
            SettingsChange::Initial(flags)
        );
        let initial = initial_change(flags, seed.clone());
        let empty = TrustedSigners::default();
        let started = after(&ClusterSettings::default(), &empty, &initial).expect("initial");
        assert_eq!(started, (flags, seed));
        assert!(after(&started.0, &empty, &initial).is_err(), "only once");
    }
}
