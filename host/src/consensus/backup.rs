//! Backup files (`clusterhost backup save|inspect|restore`): a snapshot as
//! the leader stores it — the plugin and its state, the host's replicated
//! state (deploy history, settings, applied digest), the Raft metadata —
//! with a checksum over the whole file, and the decisions that turn one
//! into the seed of a new single-node cluster. Pure: the caller reads and
//! writes the files.
//!
//! Format: 8 magic bytes, the log index and term the snapshot includes
//! and the body's length (u64 each, little endian), the sha256 of those
//! three fields and the body, then the body (an encoded
//! [`StoredSnapshot`]). Any truncated, extended or changed byte fails the
//! length or the checksum.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::snapshot::{StoredSnapshot, decode_stored, encode_stored};
use super::types::{Member, NodeId, StoredMembership};

const MAGIC: &[u8; 8] = b"CHBACK01";
const FIELD_BYTES: usize = 8;
const DIGEST_BYTES: usize = 32;
const HEADER_BYTES: usize = MAGIC.len() + 3 * FIELD_BYTES + DIGEST_BYTES;

/// Why a file is not a usable backup. Nothing is written when one is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackupError {
    /// Not a backup at all.
    #[error("not a clusterhost backup (no CHBACK01 header)")]
    NotABackup,
    /// Shorter or longer than its header says.
    #[error("the backup is {actual} bytes, but its header says {expected}: truncated or extended")]
    WrongLength {
        /// Bytes the header promises.
        expected: u64,
        /// Bytes the file has.
        actual: u64,
    },
    /// A byte changed since it was written.
    #[error("the backup's checksum does not match: the file is corrupted")]
    Checksum,
    /// The checksum matches but the body cannot be read.
    #[error("the backup's snapshot cannot be read: {0}")]
    Body(String),
}

/// What `backup inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The last log index the backup includes.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// sha256 of the plugin, hex; `None` before any deploy.
    pub plugin_digest: Option<String>,
    /// Successful deploys the history counts.
    pub cluster_version: u64,
    /// Bytes of plugin state.
    pub state_bytes: u64,
    /// The members of the cluster it came from.
    pub members: BTreeMap<NodeId, String>,
}

/// `stored` as a backup file.
pub fn encode(stored: &StoredSnapshot) -> std::io::Result<Vec<u8>> {
    let body = encode_stored(stored)?;
    let (index, term) = position(stored);
    let fields = [index, term, body.len() as u64];
    let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
    bytes.extend_from_slice(MAGIC);
    for field in fields {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.extend_from_slice(&checksum(&fields, &body));
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Verify a backup file's bytes and decode its snapshot.
pub fn decode(bytes: &[u8]) -> Result<StoredSnapshot, BackupError> {
    if bytes.len() < HEADER_BYTES || !bytes.starts_with(MAGIC) {
        return Err(BackupError::NotABackup);
    }
    let field = |n: usize| {
        let start = MAGIC.len() + n * FIELD_BYTES;
        let mut value = [0u8; FIELD_BYTES];
        value.copy_from_slice(&bytes[start..start + FIELD_BYTES]);
        u64::from_le_bytes(value)
    };
    let fields = [field(0), field(1), field(2)];
    let expected = (HEADER_BYTES as u64).saturating_add(fields[2]);
    if expected != bytes.len() as u64 {
        return Err(BackupError::WrongLength {
            expected,
            actual: bytes.len() as u64,
        });
    }
    let digest_start = MAGIC.len() + 3 * FIELD_BYTES;
    let body = &bytes[HEADER_BYTES..];
    if bytes[digest_start..HEADER_BYTES] != checksum(&fields, body) {
        return Err(BackupError::Checksum);
    }
    let stored = decode_stored(body).map_err(|error| BackupError::Body(error.to_string()))?;
    if position(&stored) != (fields[0], fields[1]) {
        return Err(BackupError::Body(
            "the header's index and term differ from the snapshot's".to_string(),
        ));
    }
    Ok(stored)
}

/// What a verified backup holds.
pub fn info(stored: &StoredSnapshot) -> BackupInfo {
    let (index, term) = position(stored);
    let plugin = stored.body.plugin.as_ref();
    BackupInfo {
        index,
        term,
        plugin_digest: plugin.map(|plugin| hex::encode(Sha256::digest(&plugin.code))),
        cluster_version: stored.body.host.history.cluster_version,
        state_bytes: plugin.map_or(0, |plugin| plugin.state.len() as u64),
        members: stored
            .meta
            .last_membership
            .membership()
            .nodes()
            .map(|(id, member)| (*id, member.rpc_addr.clone()))
            .collect(),
    }
}

/// The backup's snapshot as the seed of a new cluster whose only member
/// (and voter) is `node_id` at `rpc_addr`: state, plugin, history and
/// settings as they were; the old members are gone.
pub fn reseed(mut stored: StoredSnapshot, node_id: NodeId, rpc_addr: &str) -> StoredSnapshot {
    let member = Member::at(rpc_addr);
    // One voter that is also in the node list: valid by construction.
    let membership = openraft::Membership::new(
        vec![BTreeSet::from([node_id])],
        BTreeMap::from([(node_id, member)]),
    )
    .expect("a single voter listed as a node is a valid membership");
    stored.meta.last_membership = StoredMembership::new(stored.meta.last_log_id, membership);
    stored
}

/// The last log index and term the snapshot includes (0, 0: none).
pub fn position(stored: &StoredSnapshot) -> (u64, u64) {
    stored
        .meta
        .last_log_id
        .as_ref()
        .map_or((0, 0), |log_id| (log_id.index, log_id.leader_id.term))
}

fn checksum(fields: &[u64; 3], body: &[u8]) -> [u8; DIGEST_BYTES] {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update(field.to_le_bytes());
    }
    hasher.update(body);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::snapshot::{PluginState, SnapshotBody};
    use crate::consensus::types::{LogId, SnapshotMeta};

    fn stored() -> StoredSnapshot {
        let log_id = LogId {
            leader_id: openraft::impls::leader_id_adv::LeaderId {
                term: 4,
                node_id: 1,
            },
            index: 77,
        };
        let mut body = SnapshotBody {
            plugin: Some(PluginState {
                code: b"plugin".to_vec(),
                position: None,
                state: b"state".to_vec(),
            }),
            ..SnapshotBody::default()
        };
        body.host.settings.protocol_level = 1;
        let old = reseed(
            StoredSnapshot {
                meta: SnapshotMeta::default(),
                body,
            },
            1,
            "a:1",
        );
        StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(log_id),
                ..old.meta
            },
            body: old.body,
        }
    }

    #[test]
    fn a_backup_round_trips_and_reports_what_it_holds() {
        let bytes = encode(&stored()).expect("encode");
        let decoded = decode(&bytes).expect("decode");
        let info = info(&decoded);
        assert_eq!((info.index, info.term), (77, 4));
        assert_eq!(info.state_bytes, 5);
        assert_eq!(
            info.plugin_digest,
            Some(hex::encode(Sha256::digest(b"plugin")))
        );
        assert_eq!(info.members, BTreeMap::from([(1, "a:1".to_string())]));
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let bytes = encode(&stored()).expect("encode");
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x01;
            assert!(
                decode(&flipped).is_err(),
                "a flip at byte {at} was accepted"
            );
        }
        for length in [0, 7, HEADER_BYTES, bytes.len() - 1] {
            assert!(decode(&bytes[..length]).is_err(), "{length} bytes accepted");
        }
        let mut extended = bytes.clone();
        extended.push(0);
        assert!(matches!(
            decode(&extended),
            Err(BackupError::WrongLength { .. })
        ));
    }

    #[test]
    fn a_reseeded_snapshot_has_one_voter_and_keeps_the_state() {
        let seeded = reseed(stored(), 9, "b:2");
        let membership = seeded.meta.last_membership.membership();
        assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![9]);
        assert_eq!(position(&seeded), (77, 4));
        assert_eq!(seeded.body, stored().body);
    }
}
