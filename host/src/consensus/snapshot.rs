//! What a Raft snapshot carries — the plugin itself and its state, so a node
//! restoring a snapshot can always run it, whatever it ran before, and the
//! host's replicated state — how it is encoded, and how it is kept in the
//! node's snapshot file.
//!
//! Encoding: a 4-byte tag, the format version (u16, little endian), then
//! postcard. Every change of layout gets a new version, and every older one
//! stays readable; bodies without the tag are the first format (before
//! versions), which had only the plugin and its deploy history. A cluster
//! writes the format of its protocol level (0: the first, 1: the second,
//! before client sessions, 2: the third, before plugin signers), so
//! binaries of that level can read it (a rolling upgrade, or a roll back
//! before the level is raised).

use std::io;
use std::path::Path;

use super::alarms::Alarms;
use super::digest::AppliedDigest;
use super::host_state::HostState;
use super::plugin_history::PluginHistory;
use super::sessions::Sessions;
use super::settings::{
    ClusterSettings, PROTOCOL_LEVEL_LEGACY, PROTOCOL_LEVEL_SESSIONS, PROTOCOL_LEVEL_SIGNERS,
    PROTOCOL_LEVEL_SUPPORTED,
};
use super::types::SnapshotMeta;
use crate::plugin::EntryPosition;
use crate::storage::{Saved, SnapshotFile};

/// Marks a versioned encoding.
pub(crate) const FORMAT_TAG: &[u8; 4] = b"CHSB";
/// The format this binary writes.
pub const SNAPSHOT_FORMAT: u16 = 4;
/// The format of protocol level 1: host state without client sessions.
const SNAPSHOT_FORMAT_BEFORE_SESSIONS: u16 = 2;
/// The format of protocol level 2: host state without plugin signers.
const SNAPSHOT_FORMAT_BEFORE_SIGNERS: u16 = 3;

/// The body of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotBody {
    /// The running plugin and its state; `None` before any plugin is deployed.
    pub plugin: Option<PluginState>,
    /// The host's replicated state.
    pub host: HostState,
}

/// The first format's body: before settings, digest and alarms.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotBodyV1 {
    plugin: Option<PluginState>,
    history: PluginHistory,
}

impl From<&SnapshotBody> for SnapshotBodyV1 {
    fn from(body: &SnapshotBody) -> Self {
        Self {
            plugin: body.plugin.clone(),
            history: body.host.history.clone(),
        }
    }
}

impl From<SnapshotBodyV1> for SnapshotBody {
    fn from(v1: SnapshotBodyV1) -> Self {
        Self {
            plugin: v1.plugin,
            host: HostState {
                history: v1.history,
                ..HostState::default()
            },
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSnapshotV1 {
    meta: SnapshotMeta,
    body: SnapshotBodyV1,
}

/// The second format's host state (protocol level 1): before sessions.
/// Encoded from borrows, so writing it copies no plugin state.
#[derive(serde::Serialize)]
struct HostStateV2Ref<'a> {
    history: &'a PluginHistory,
    settings: &'a ClusterSettings,
    digest: &'a AppliedDigest,
    alarms: &'a Alarms,
}

#[derive(serde::Serialize)]
struct SnapshotBodyV2Ref<'a> {
    plugin: &'a Option<PluginState>,
    host: HostStateV2Ref<'a>,
}

impl<'a> From<&'a SnapshotBody> for SnapshotBodyV2Ref<'a> {
    fn from(body: &'a SnapshotBody) -> Self {
        Self {
            plugin: &body.plugin,
            host: HostStateV2Ref {
                history: &body.host.history,
                settings: &body.host.settings,
                digest: &body.host.digest,
                alarms: &body.host.alarms,
            },
        }
    }
}

#[derive(serde::Serialize)]
struct StoredSnapshotV2Ref<'a> {
    meta: &'a SnapshotMeta,
    body: SnapshotBodyV2Ref<'a>,
}

#[derive(serde::Deserialize)]
struct HostStateV2 {
    history: PluginHistory,
    settings: ClusterSettings,
    digest: AppliedDigest,
    alarms: Alarms,
}

#[derive(serde::Deserialize)]
struct SnapshotBodyV2 {
    plugin: Option<PluginState>,
    host: HostStateV2,
}

impl From<SnapshotBodyV2> for SnapshotBody {
    fn from(v2: SnapshotBodyV2) -> Self {
        Self {
            plugin: v2.plugin,
            host: HostState {
                history: v2.host.history,
                settings: v2.host.settings,
                digest: v2.host.digest,
                alarms: v2.host.alarms,
                ..HostState::default()
            },
        }
    }
}

#[derive(serde::Deserialize)]
struct StoredSnapshotV2 {
    meta: SnapshotMeta,
    body: SnapshotBodyV2,
}

/// The third format's host state (protocol level 2): before signers.
#[derive(serde::Serialize)]
struct HostStateV3Ref<'a> {
    history: &'a PluginHistory,
    settings: &'a ClusterSettings,
    digest: &'a AppliedDigest,
    alarms: &'a Alarms,
    sessions: &'a Sessions,
}

#[derive(serde::Serialize)]
struct SnapshotBodyV3Ref<'a> {
    plugin: &'a Option<PluginState>,
    host: HostStateV3Ref<'a>,
}

impl<'a> From<&'a SnapshotBody> for SnapshotBodyV3Ref<'a> {
    fn from(body: &'a SnapshotBody) -> Self {
        let host = &body.host;
        Self {
            plugin: &body.plugin,
            host: HostStateV3Ref {
                history: &host.history,
                settings: &host.settings,
                digest: &host.digest,
                alarms: &host.alarms,
                sessions: &host.sessions,
            },
        }
    }
}

#[derive(serde::Serialize)]
struct StoredSnapshotV3Ref<'a> {
    meta: &'a SnapshotMeta,
    body: SnapshotBodyV3Ref<'a>,
}

#[derive(serde::Deserialize)]
struct HostStateV3 {
    history: PluginHistory,
    settings: ClusterSettings,
    digest: AppliedDigest,
    alarms: Alarms,
    sessions: Sessions,
}

#[derive(serde::Deserialize)]
struct SnapshotBodyV3 {
    plugin: Option<PluginState>,
    host: HostStateV3,
}

impl From<SnapshotBodyV3> for SnapshotBody {
    fn from(v3: SnapshotBodyV3) -> Self {
        let host = v3.host;
        Self {
            plugin: v3.plugin,
            host: HostState {
                history: host.history,
                settings: host.settings,
                digest: host.digest,
                alarms: host.alarms,
                sessions: host.sessions,
                ..HostState::default()
            },
        }
    }
}

#[derive(serde::Deserialize)]
struct StoredSnapshotV3 {
    meta: SnapshotMeta,
    body: SnapshotBodyV3,
}

/// The format a body's cluster writes, by its protocol level.
fn format_for(body: &SnapshotBody) -> u16 {
    match body.host.settings.protocol_level {
        PROTOCOL_LEVEL_LEGACY => 1,
        level if level < PROTOCOL_LEVEL_SESSIONS => SNAPSHOT_FORMAT_BEFORE_SESSIONS,
        level if level < PROTOCOL_LEVEL_SIGNERS => SNAPSHOT_FORMAT_BEFORE_SIGNERS,
        _ => SNAPSHOT_FORMAT,
    }
}

/// `value` in a tagged format.
fn encode_tagged<T: serde::Serialize>(format: u16, value: &T) -> io::Result<Vec<u8>> {
    let mut bytes = FORMAT_TAG.to_vec();
    bytes.extend_from_slice(&format.to_le_bytes());
    postcard::to_extend(value, bytes).map_err(io::Error::other)
}

/// A snapshot body in the format its cluster's protocol level calls for.
pub fn encode_body(body: &SnapshotBody) -> io::Result<Vec<u8>> {
    match format_for(body) {
        1 => postcard::to_stdvec(&SnapshotBodyV1::from(body)).map_err(io::Error::other),
        SNAPSHOT_FORMAT_BEFORE_SESSIONS => encode_tagged(
            SNAPSHOT_FORMAT_BEFORE_SESSIONS,
            &SnapshotBodyV2Ref::from(body),
        ),
        SNAPSHOT_FORMAT_BEFORE_SIGNERS => encode_tagged(
            SNAPSHOT_FORMAT_BEFORE_SIGNERS,
            &SnapshotBodyV3Ref::from(body),
        ),
        _ => encode_tagged(SNAPSHOT_FORMAT, body),
    }
}

/// A stored snapshot in the format its cluster's protocol level calls for.
pub fn encode_stored(stored: &StoredSnapshot) -> io::Result<Vec<u8>> {
    match format_for(&stored.body) {
        1 => {
            let v1 = StoredSnapshotV1 {
                meta: stored.meta.clone(),
                body: SnapshotBodyV1::from(&stored.body),
            };
            postcard::to_stdvec(&v1).map_err(io::Error::other)
        }
        SNAPSHOT_FORMAT_BEFORE_SESSIONS => {
            let v2 = StoredSnapshotV2Ref {
                meta: &stored.meta,
                body: SnapshotBodyV2Ref::from(&stored.body),
            };
            encode_tagged(SNAPSHOT_FORMAT_BEFORE_SESSIONS, &v2)
        }
        SNAPSHOT_FORMAT_BEFORE_SIGNERS => {
            let v3 = StoredSnapshotV3Ref {
                meta: &stored.meta,
                body: SnapshotBodyV3Ref::from(&stored.body),
            };
            encode_tagged(SNAPSHOT_FORMAT_BEFORE_SIGNERS, &v3)
        }
        _ => encode_tagged(SNAPSHOT_FORMAT, stored),
    }
}

/// A stored snapshot in the format this binary writes, whatever the
/// cluster's level: for the node's own files, never sent to another node.
pub fn encode_current(stored: &StoredSnapshot) -> io::Result<Vec<u8>> {
    encode_tagged(SNAPSHOT_FORMAT, stored)
}

/// Split `bytes` into the format they were written in and their postcard.
fn format_of(bytes: &[u8]) -> io::Result<(u16, &[u8])> {
    let Some(rest) = bytes.strip_prefix(FORMAT_TAG) else {
        return Ok((1, bytes));
    };
    let (version, rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| invalid("truncated format version"))?;
    Ok((u16::from_le_bytes(*version), rest))
}

/// A snapshot body in any format this binary reads.
pub fn decode_body(bytes: &[u8]) -> io::Result<SnapshotBody> {
    match format_of(bytes)? {
        (1, rest) => from_postcard::<SnapshotBodyV1>(rest).map(SnapshotBody::from),
        (SNAPSHOT_FORMAT_BEFORE_SESSIONS, rest) => {
            from_postcard::<SnapshotBodyV2>(rest).map(SnapshotBody::from)
        }
        (SNAPSHOT_FORMAT_BEFORE_SIGNERS, rest) => {
            from_postcard::<SnapshotBodyV3>(rest).map(SnapshotBody::from)
        }
        (SNAPSHOT_FORMAT, rest) => from_postcard(rest),
        (version, _) => Err(newer_format(version)),
    }
}

/// A stored snapshot in any format this binary reads, of a cluster at a
/// protocol level it supports ([`refuse_unsupported_level`]).
pub fn decode_stored(bytes: &[u8]) -> io::Result<StoredSnapshot> {
    let stored = decode_stored_any_level(bytes)?;
    refuse_unsupported_level(&stored.body)?;
    Ok(stored)
}

fn decode_stored_any_level(bytes: &[u8]) -> io::Result<StoredSnapshot> {
    match format_of(bytes)? {
        (1, rest) => from_postcard::<StoredSnapshotV1>(rest).map(|v1| StoredSnapshot {
            meta: v1.meta,
            body: v1.body.into(),
        }),
        (SNAPSHOT_FORMAT_BEFORE_SESSIONS, rest) => {
            from_postcard::<StoredSnapshotV2>(rest).map(|v2| StoredSnapshot {
                meta: v2.meta,
                body: v2.body.into(),
            })
        }
        (SNAPSHOT_FORMAT_BEFORE_SIGNERS, rest) => {
            from_postcard::<StoredSnapshotV3>(rest).map(|v3| StoredSnapshot {
                meta: v3.meta,
                body: v3.body.into(),
            })
        }
        (SNAPSHOT_FORMAT, rest) => from_postcard(rest),
        (version, _) => Err(newer_format(version)),
    }
}

fn from_postcard<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|error| invalid(&error.to_string()))
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed snapshot: {reason}"),
    )
}

/// Refuse `body` if its cluster runs at a protocol level above the one
/// this binary supports: running on from it would guess at entries and
/// rules this binary does not know, as applying the settings entry that
/// raised the level would (which stops the node). The error is of kind
/// [`io::ErrorKind::Unsupported`], so callers can tell it from damage.
pub fn refuse_unsupported_level(body: &SnapshotBody) -> io::Result<()> {
    let level = body.host.settings.protocol_level;
    if level <= PROTOCOL_LEVEL_SUPPORTED {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "the snapshot is of a cluster at protocol level {level}; this clusterhost ({}) \
             supports up to {PROTOCOL_LEVEL_SUPPORTED}: upgrade this node's binary",
            env!("CARGO_PKG_VERSION")
        ),
    ))
}

/// Why `body` cannot be the state at `meta`'s last log entry, if it
/// cannot: its plugin state includes an entry past that one. No node of
/// this binary writes such a snapshot; installing one would make the next
/// entry's apply go backwards.
pub fn position_refusal(meta: &SnapshotMeta, body: &SnapshotBody) -> Option<String> {
    let applied = body.plugin.as_ref()?.position?.index;
    let last = meta.last_log_id.map_or(0, |log_id| log_id.index);
    (applied > last).then(|| {
        format!("the snapshot's plugin state includes entry {applied}, past its last entry {last}")
    })
}

fn newer_format(version: u16) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the snapshot is in format {version}, newer than the {SNAPSHOT_FORMAT} this clusterhost reads; \
             upgrade this node's binary"
        ),
    )
}

/// A plugin and the state it had at a log position.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginState {
    /// The component bytes.
    #[serde(with = "serde_bytes")]
    pub code: Vec<u8>,
    /// The last command entry the state includes (`None`: none applied yet).
    pub position: Option<EntryPosition>,
    /// What the plugin's `snapshot` returned.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PluginState")
            .field("code_bytes", &self.code.len())
            .field("position", &self.position)
            .field("state_bytes", &self.state.len())
            .finish()
    }
}

/// A snapshot as stored and sent: Raft metadata plus the body.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StoredSnapshot {
    /// Last log id and membership the snapshot includes.
    pub meta: SnapshotMeta,
    /// The plugin and its state.
    pub body: SnapshotBody,
}

impl StoredSnapshot {
    /// The log index the snapshot includes (0: none).
    pub fn index(&self) -> u64 {
        self.meta
            .last_log_id
            .as_ref()
            .map_or(0, |log_id| log_id.index)
    }
}

/// The node's newest snapshot file, holding [`StoredSnapshot`]s.
#[derive(Debug, Clone)]
pub struct Snapshots {
    file: SnapshotFile,
}

impl Snapshots {
    /// The snapshots in `directory`.
    pub fn open(directory: &Path) -> io::Result<Self> {
        Ok(Self {
            file: SnapshotFile::open(directory)?,
        })
    }

    /// Store `snapshot` as the newest, unless a newer one is already stored.
    pub fn save(&self, snapshot: &StoredSnapshot) -> io::Result<()> {
        let body = encode_stored(snapshot)?;
        match self.file.save(snapshot.index(), &body)? {
            Saved::Current => {}
            Saved::KeptNewer { current_index } => tracing::info!(
                index = snapshot.index(),
                current_index,
                "kept the newer snapshot already stored"
            ),
        }
        Ok(())
    }

    /// The newest snapshot, verified.
    pub fn load(&self) -> io::Result<Option<StoredSnapshot>> {
        let Some(body) = self.file.load()? else {
            return Ok(None);
        };
        decode_stored(&body).map(Some)
    }

    /// Size of the stored file, if any.
    pub fn size_bytes(&self) -> Option<u64> {
        self.file.size_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a snapshot whose plugin state includes an entry past its last
    // log entry (no node writes one) is refused on arrival.
    #[test]
    fn a_plugin_state_past_the_snapshots_last_entry_is_refused() {
        use crate::consensus::types::TypeConfig;
        let at = |index: u64| EntryPosition {
            index,
            term: 1,
            time_ms: 0,
        };
        let body = |position: Option<EntryPosition>| SnapshotBody {
            plugin: Some(PluginState {
                code: b"plugin".to_vec(),
                position,
                state: Vec::new(),
            }),
            ..SnapshotBody::default()
        };
        let meta = |index: Option<u64>| SnapshotMeta {
            last_log_id: index.map(|index| openraft::testing::log_id::<TypeConfig>(1, 1, index)),
            ..SnapshotMeta::default()
        };
        assert_eq!(position_refusal(&meta(Some(10)), &body(Some(at(10)))), None);
        assert_eq!(position_refusal(&meta(Some(10)), &body(None)), None);
        assert_eq!(
            position_refusal(&meta(None), &SnapshotBody::default()),
            None
        );
        let refused = position_refusal(&meta(Some(10)), &body(Some(at(11)))).expect("refused");
        assert!(
            refused.contains("entry 11, past its last entry 10"),
            "{refused}"
        );
        assert!(position_refusal(&meta(None), &body(Some(at(1)))).is_some());
    }

    // Goal: a snapshot written before formats were versioned still reads,
    // with default settings and an empty digest.
    #[test]
    fn the_first_format_still_reads() {
        #[derive(serde::Serialize)]
        struct OldBody {
            plugin: Option<PluginState>,
            history: PluginHistory,
        }
        let history = PluginHistory {
            cluster_version: 3,
            ..PluginHistory::default()
        };
        let old = postcard::to_stdvec(&OldBody {
            plugin: None,
            history: history.clone(),
        })
        .expect("encode");
        let body = decode_body(&old).expect("the first format reads");
        assert_eq!(body.host.history, history);
        assert_eq!(
            body.host,
            HostState {
                history,
                ..HostState::default()
            }
        );
    }

    #[test]
    fn a_level_0_cluster_writes_the_first_format() {
        let body = SnapshotBody::default();
        let bytes = encode_body(&body).expect("encode");
        assert!(
            !bytes.starts_with(FORMAT_TAG),
            "untagged: binaries before versions read it"
        );
        assert_eq!(decode_body(&bytes).expect("decode"), body);
    }

    #[test]
    fn a_level_1_cluster_writes_the_format_before_sessions() {
        let mut body = SnapshotBody::default();
        body.host.settings.protocol_level = 1;
        let bytes = encode_body(&body).expect("encode");
        assert_eq!(format_of(&bytes).expect("tagged").0, 2);
        assert_eq!(decode_body(&bytes).expect("decode"), body);
    }

    fn with_a_session(level: u32) -> SnapshotBody {
        let mut body = SnapshotBody::default();
        body.host.settings.protocol_level = level;
        body.host.sessions.advance_clock(1_000);
        body.host
            .sessions
            .open(5, std::time::Duration::from_secs(60));
        body
    }

    #[test]
    fn a_level_2_cluster_writes_the_format_before_signers() {
        let body = with_a_session(PROTOCOL_LEVEL_SESSIONS);
        let bytes = encode_body(&body).expect("encode");
        assert_eq!(format_of(&bytes).expect("tagged").0, 3);
        assert_eq!(decode_body(&bytes).expect("decode"), body);
    }

    #[test]
    fn the_current_format_round_trips_and_a_newer_one_is_refused() {
        let mut body = with_a_session(PROTOCOL_LEVEL_SIGNERS);
        body.host.signers =
            super::super::trusted_signers::TrustedSigners::new(vec![[7; 32]]).expect("signers");
        let bytes = encode_body(&body).expect("encode");
        assert_eq!(format_of(&bytes).expect("tagged").0, SNAPSHOT_FORMAT);
        assert_eq!(decode_body(&bytes).expect("decode"), body);
        let mut newer = bytes.clone();
        newer[4] = 99;
        let error = decode_body(&newer).expect_err("newer");
        assert!(error.to_string().contains("format 99, newer"), "{error}");
    }

    #[test]
    fn a_snapshot_above_the_supported_level_is_refused() {
        let mut stored = StoredSnapshot::default();
        stored.body.host.settings.protocol_level = PROTOCOL_LEVEL_SUPPORTED;
        let bytes = encode_stored(&stored).expect("encode");
        assert_eq!(decode_stored(&bytes).expect("decode").body, stored.body);
        stored.body.host.settings.protocol_level = PROTOCOL_LEVEL_SUPPORTED + 1;
        let bytes = encode_stored(&stored).expect("encode");
        let error = decode_stored(&bytes).expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
        let expected = format!("protocol level {}", PROTOCOL_LEVEL_SUPPORTED + 1);
        assert!(error.to_string().contains(&expected), "{error}");
        assert!(
            error.to_string().contains("upgrade this node's binary"),
            "{error}"
        );
    }
}
