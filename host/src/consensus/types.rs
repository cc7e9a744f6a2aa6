//! The Raft type configuration: what an entry carries, what applying one
//! returns, and what a member is. The rest of `consensus` names these
//! aliases, never openraft's generics, so an openraft upgrade touches this
//! file first.

use std::fmt;

use openraft::alias;

use super::alarms::Alarm;
use super::sessions::{SessionRefusal, SessionStamp};
#[cfg(doc)]
use super::settings::PROTOCOL_LEVEL_NAMES;
use super::settings::{ClusterSettings, PROTOCOL_LEVEL_SESSIONS, SettingsChange};
use crate::plugin::ApplyOutcome;

/// A proposal in the replicated log.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Request {
    /// A command for the plugin, stamped with the leader's wall-clock time
    /// when it was proposed (the only time the plugin ever sees).
    Command {
        /// Leader wall-clock time, ms since the Unix epoch.
        time_ms: u64,
        /// The command bytes, as the client sent them.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Switch the cluster to a plugin: every replica switches when this entry
    /// applies, carrying the running plugin's state over.
    Deploy {
        /// Leader wall-clock time, ms since the Unix epoch.
        time_ms: u64,
        /// The component bytes (validated by the leader before proposing).
        #[serde(with = "serde_bytes")]
        plugin: Vec<u8>,
    },
    /// A change of cluster settings, in force from this entry on every
    /// replica (or refused on every replica alike).
    Settings(SettingsChange),
    /// An alarm raised (or cleared) by the leader.
    Alarm(Alarm),
    /// Open a client session; its id is this entry's index.
    OpenSession {
        /// Leader wall-clock time, ms since the Unix epoch.
        time_ms: u64,
        /// How long the session may stay idle, by log time.
        timeout_ms: u64,
    },
    /// A command for the plugin within a client session: applied once,
    /// however often it is retried.
    SessionCommand {
        /// Leader wall-clock time, ms since the Unix epoch.
        time_ms: u64,
        /// The session and the command's place in it.
        session: SessionStamp,
        /// The command bytes, as the client sent them.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    // New kinds of entries go last: entries already in logs are decoded by
    // their position in this list.
}

impl Request {
    /// The protocol level a cluster must run at before this kind of entry
    /// may be proposed (a binary of a lower level could not apply it).
    /// Settings may be proposed at any level: the entry that raises a
    /// legacy cluster's level is one (the API checks that every member
    /// supports the new level first).
    pub fn required_level(&self) -> u32 {
        match self {
            Request::Command { .. } | Request::Deploy { .. } | Request::Settings(_) => 0,
            Request::Alarm(_) => 1,
            Request::OpenSession { .. } | Request::SessionCommand { .. } => PROTOCOL_LEVEL_SESSIONS,
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Command { time_ms, bytes } => {
                write!(formatter, "Command({} bytes @{time_ms})", bytes.len())
            }
            Request::Deploy { time_ms, plugin } => {
                write!(formatter, "Deploy({} bytes @{time_ms})", plugin.len())
            }
            Request::Settings(settings) => write!(formatter, "Settings({settings:?})"),
            Request::Alarm(alarm) => write!(formatter, "Alarm({alarm:?})"),
            Request::OpenSession {
                time_ms,
                timeout_ms,
            } => {
                write!(formatter, "OpenSession(timeout {timeout_ms} ms @{time_ms})")
            }
            Request::SessionCommand {
                time_ms,
                session,
                bytes,
            } => write!(
                formatter,
                "SessionCommand({}/{}, {} bytes @{time_ms})",
                session.client_id,
                session.sequence,
                bytes.len()
            ),
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, formatter)
    }
}

/// What applying an entry produced, sent to the client that proposed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Response {
    /// The plugin's outcome for a command.
    Command(ApplyOutcome),
    /// The outcome of a deploy, or why the cluster kept the old plugin.
    Deploy(Result<DeployReceipt, String>),
    /// The settings after a change, or why it did not apply.
    Settings(Result<ClusterSettings, String>),
    /// A host entry (blank, membership): nothing to report.
    Host,
    /// A session opened: its id and the timeout it got.
    SessionOpened {
        /// The session's id (the entry's index).
        client_id: u64,
        /// Its timeout, by log time.
        timeout_ms: u64,
    },
    /// A session command applied before: its kept outcome.
    Replayed {
        /// The entry it was applied at.
        index: u64,
        /// Its outcome then.
        outcome: ApplyOutcome,
    },
    /// A session command that was not applied, and why.
    SessionRefused(SessionRefusal),
}

/// A successful deploy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeployReceipt {
    /// The cluster version the plugin became.
    pub version: u64,
    /// sha256 of the plugin, hex.
    pub digest: String,
    /// Log index at which every replica switched.
    pub index: u64,
}

/// A cluster member as recorded in the Raft membership.
///
/// Encoded as one string, so that a record without a name is byte for byte
/// what binaries from before names wrote (postcard has no optional fields:
/// a second field would misread every older entry). A name is appended
/// after [`MEMBER_NAME_SEPARATOR`], which no address contains; only a
/// cluster at [`PROTOCOL_LEVEL_NAMES`] writes one, so no binary that would
/// read it as part of the address is left in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Address of the member's gRPC endpoint, as other nodes reach it.
    pub rpc_addr: String,
    /// The node name its certificate carries, as the leader verified it
    /// when it added the member (`None`: no TLS, or a record written
    /// before names were recorded).
    pub name: Option<String>,
}

/// Between a member's address and its name in the encoded record.
pub const MEMBER_NAME_SEPARATOR: char = '\u{0}';

/// A member record that must not be written: an address (or name) with a
/// control character. A NUL in an address would be read back as the
/// separator, turning the rest into a recorded name; other control
/// characters would forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a member's {field} {value:?} holds a control character: refused")]
pub struct ControlCharacter {
    /// `address` or `name`.
    pub field: &'static str,
    /// The text refused.
    pub value: String,
}

/// Refuse `value` (a member's `field`) if it holds a control character.
pub fn check_printable(field: &'static str, value: &str) -> Result<(), ControlCharacter> {
    if value.chars().any(char::is_control) {
        return Err(ControlCharacter {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

impl Member {
    /// A record without a name.
    pub fn at(rpc_addr: impl Into<String>) -> Self {
        Self {
            rpc_addr: rpc_addr.into(),
            name: None,
        }
    }

    /// Refuse a record whose address or name holds a control character
    /// (see [`ControlCharacter`]); checked before any record is proposed.
    pub fn check(&self) -> Result<(), ControlCharacter> {
        check_printable("address", &self.rpc_addr)?;
        match &self.name {
            Some(name) => check_printable("name", name),
            None => Ok(()),
        }
    }

    fn encoded(&self) -> String {
        match &self.name {
            Some(name) => format!("{}{MEMBER_NAME_SEPARATOR}{name}", self.rpc_addr),
            None => self.rpc_addr.clone(),
        }
    }

    fn decoded(text: &str) -> Self {
        match text.split_once(MEMBER_NAME_SEPARATOR) {
            Some((rpc_addr, name)) => Self {
                rpc_addr: rpc_addr.to_string(),
                name: Some(name.to_string()),
            },
            None => Self::at(text),
        }
    }
}

impl serde::Serialize for Member {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encoded())
    }
}

impl<'de> serde::Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::decoded(&text))
    }
}

impl fmt::Display for Member {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.rpc_addr)?;
        if let Some(name) = &self.name {
            write!(formatter, " ({name})")?;
        }
        Ok(())
    }
}

/// Node identifiers are random 64-bit numbers chosen once per data dir.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// clusterhost's Raft type configuration.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
);

/// A log entry.
pub type Entry = alias::EntryOf<TypeConfig>;
/// What a log entry carries.
pub type Payload = openraft::EntryPayload<Request, NodeId, Member>;
/// A log position (term, leader, index).
pub type LogId = alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = alias::VoteOf<TypeConfig>;
/// The membership as stored with the log position it came from.
pub type StoredMembership = alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = alias::SnapshotMetaOf<TypeConfig>;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A member as binaries before names encoded it.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct LegacyMember {
        rpc_addr: String,
    }

    // Goal: records written before names decode unchanged, a record without
    // a name is written exactly as before (older binaries read it), and a
    // name survives the log and snapshots.
    #[test]
    fn member_records_stay_compatible_and_carry_names() {
        let legacy = postcard::to_stdvec(&LegacyMember {
            rpc_addr: "10.0.0.1:7400".into(),
        })
        .expect("encode");
        let read: Member = postcard::from_bytes(&legacy).expect("decode");
        assert_eq!(read, Member::at("10.0.0.1:7400"));
        assert_eq!(postcard::to_stdvec(&read).expect("encode"), legacy);
        let named = Member {
            rpc_addr: "10.0.0.1:7400".into(),
            name: Some("n1".into()),
        };
        let bytes = postcard::to_stdvec(&named).expect("encode");
        assert_eq!(
            postcard::from_bytes::<Member>(&bytes).expect("decode"),
            named
        );
        let nodes = BTreeMap::from([(1_u64, named.clone()), (2, Member::at("b:1"))]);
        let bytes = postcard::to_stdvec(&nodes).expect("encode");
        let read: BTreeMap<u64, Member> = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(read, nodes);
    }

    // Goal: an address with a NUL (which would be read back as a name) or
    // another control character is refused before it is recorded.
    #[test]
    fn control_characters_in_a_record_are_refused() {
        assert_eq!(Member::at("10.0.0.1:7400").check(), Ok(()));
        let smuggled = Member::at("10.0.0.1:7400\u{0}n1");
        let refused = smuggled.check().expect_err("a NUL in the address");
        assert_eq!(refused.field, "address");
        assert!(Member::at("10.0.0.1:7400\nforged").check().is_err());
        let named = Member {
            rpc_addr: "10.0.0.1:7400".into(),
            name: Some("n1\u{1b}[31m".into()),
        };
        assert_eq!(named.check().expect_err("escape in a name").field, "name");
    }
}
