//! The Raft type configuration: what an entry carries, what applying one
//! returns, and what a member is. The rest of `consensus` names these
//! aliases, never openraft's generics, so an openraft upgrade touches this
//! file first.

use std::fmt;

use openraft::alias;

use super::alarms::Alarm;
use super::sessions::{SessionRefusal, SessionStamp};
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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Address of the member's gRPC endpoint, as other nodes reach it.
    pub rpc_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.rpc_addr)
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
