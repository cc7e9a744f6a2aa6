//! The state file as the durable copy of a store plugin's state: at a
//! checkpoint, one durable commit holds the store and a [`Checkpoint`] of
//! everything else at the same applied index, so a node restarting after a
//! crash reopens the file ([`open`]) and replays only the entries after it.

use std::path::Path;

use super::StoreError;
use super::file::{SideRecord, StateFile, StoredMeta};
use crate::plugin::EntryPosition;

/// Opens every encoded checkpoint; a changed layout or meaning gets a new
/// one (an older checkpoint then only means a rebuild from the snapshot).
/// `ck2`: `store_bytes` is the store's size at the checkpoint (in `ck1` it
/// was the size as of the last snapshot).
const MAGIC: &[u8; 8] = b"chst-ck2";

/// What a checkpoint holds besides the store, at applied index `index`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The Raft log index of the last entry applied.
    pub index: u64,
    /// The last command the plugin applied (`None`: none yet).
    pub position: Option<EntryPosition>,
    /// The plugin's own snapshot: its in-memory part.
    #[serde(with = "serde_bytes")]
    pub plugin_part: Vec<u8>,
    /// The bytes the store takes in an envelope, at `index`.
    pub store_bytes: u64,
    /// The host's part, encoded by the consensus layer.
    #[serde(with = "serde_bytes")]
    pub host: Vec<u8>,
}

impl Checkpoint {
    /// The checkpoint as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        // Serializing plain bytes and integers into a Vec cannot fail.
        bytes.extend(postcard::to_stdvec(self).unwrap_or_default());
        bytes
    }

    /// A stored checkpoint.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| StoreError::NotResumable("no checkpoint marker".to_string()))?;
        let (checkpoint, left) = postcard::take_from_bytes(rest).map_err(|error| {
            StoreError::NotResumable(format!("its checkpoint does not decode: {error}"))
        })?;
        // Bytes left over are fields of a newer layout this binary would
        // silently drop: not this binary's checkpoint.
        if !left.is_empty() {
            return Err(StoreError::NotResumable(format!(
                "its checkpoint has {} bytes this binary does not know",
                left.len()
            )));
        }
        Ok(checkpoint)
    }
}

/// A state file that can be resumed from: its store and checkpoint agree.
pub struct Stored {
    pub file: StateFile,
    pub checkpoint: Checkpoint,
    /// The code of the plugin that ran on it.
    pub code: Vec<u8>,
    /// The checkpoint's side record.
    pub side: Vec<u8>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Stored")
            .field("index", &self.checkpoint.index)
            .field("code_bytes", &self.code.len())
            .finish()
    }
}

/// The node's state file in `dir` if it can be resumed from (`Ok(None)`:
/// there is none). An error says why one cannot be: the caller rebuilds
/// the store from the snapshot instead.
pub fn open(dir: &Path) -> Result<Option<Stored>, StoreError> {
    let Some(file) = StateFile::open_stable(dir)? else {
        return Ok(None);
    };
    let meta = file.stored_meta()?;
    let (checkpoint, code, side) = judge(meta)?;
    Ok(Some(Stored {
        file,
        checkpoint,
        code,
        side,
    }))
}

/// The checkpoint, code and side record of a file whose store is exactly
/// the store at the checkpoint; anything else is refused.
fn judge(meta: StoredMeta) -> Result<(Checkpoint, Vec<u8>, Vec<u8>), StoreError> {
    let refuse = |why: &str| StoreError::NotResumable(why.to_string());
    let bytes = meta
        .checkpoint
        .ok_or_else(|| refuse("it holds no checkpoint"))?;
    let checkpoint = Checkpoint::decode(&bytes)?;
    let code = meta.code.ok_or_else(|| refuse("it holds no plugin code"))?;
    let (digest, side) = meta.side.ok_or_else(|| refuse("it holds no side record"))?;
    if digest != SideRecord::digest_of(&side) {
        return Err(refuse("its side record does not match its digest"));
    }
    // Commits after the checkpoint made durable by a clean close: the store
    // is past the checkpoint.
    if meta.applied != Some(checkpoint.index) {
        return Err(StoreError::NotResumable(format!(
            "the store holds writes up to entry {:?}, the checkpoint is at {}",
            meta.applied, checkpoint.index
        )));
    }
    Ok((checkpoint, code, side))
}

#[cfg(test)]
mod tests {
    //! Goal: a state file is resumed from only when its checkpoint is whole
    //! and matches its store; anything else is refused, never half-used.
    use super::super::envelope::Entries;
    use super::*;

    fn checkpoint(index: u64) -> Checkpoint {
        Checkpoint {
            index,
            position: None,
            plugin_part: b"part".to_vec(),
            store_bytes: 3,
            host: b"host".to_vec(),
        }
    }

    fn side() -> SideRecord {
        SideRecord::of(b"retained".to_vec())
    }

    fn promoted_file(dir: &Path) -> StateFile {
        let mut file = StateFile::create(Some(dir)).expect("a file");
        file.fill(&Entries::NONE, b"code").expect("filled");
        file.promote().expect("promoted");
        file
    }

    fn writes(key: &str) -> super::super::Writes {
        [(key.as_bytes().to_vec(), Some(b"v".to_vec()))].into()
    }

    #[test]
    fn a_file_with_a_matching_checkpoint_is_resumed() {
        let dir = tempfile::tempdir().expect("dir");
        let mut file = promoted_file(dir.path());
        file.commit(5, &writes("a")).expect("commit");
        // The second checkpoint leaves the unchanged side record as it is.
        for index in [6, 7] {
            let encoded = checkpoint(index).encode();
            file.checkpoint(index, Some((&encoded, &side())))
                .expect("checkpoint");
        }
        drop(file);
        let stored = open(dir.path()).expect("usable").expect("a file");
        assert_eq!(stored.checkpoint, checkpoint(7));
        assert_eq!(stored.code, b"code");
        assert_eq!(stored.side, b"retained");
        let entries = StateFile::entries(&stored.file.snapshot().expect("snapshot"));
        assert_eq!(entries.expect("entries").len(), 1);
    }

    #[test]
    fn a_missing_stale_or_corrupt_checkpoint_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(open(dir.path()).expect("no file").is_none());
        // No checkpoint at all.
        drop(promoted_file(dir.path()));
        assert!(open(dir.path()).is_err());
        // Writes committed after the checkpoint (a clean close kept them).
        let mut file = promoted_file(dir.path());
        file.checkpoint(7, Some((&checkpoint(7).encode(), &side())))
            .expect("checkpoint");
        file.commit(8, &writes("b")).expect("commit");
        drop(file);
        let error = open(dir.path()).expect_err("store past the checkpoint");
        assert!(error.to_string().contains("entry Some(8)"), "{error}");
        // A checkpoint that does not decode, and one removed.
        let mut file = promoted_file(dir.path());
        let mut damaged = checkpoint(9).encode();
        damaged.truncate(damaged.len() - 2);
        file.checkpoint(9, Some((&damaged, &side())))
            .expect("checkpoint");
        drop(file);
        assert!(open(dir.path()).is_err());
        let mut file = promoted_file(dir.path());
        file.checkpoint(9, None).expect("checkpoint");
        drop(file);
        assert!(open(dir.path()).is_err());
        // Not a redb file at all.
        std::fs::write(
            dir.path().join(super::super::file::STATE_FILE_NAME),
            b"junk",
        )
        .expect("write");
        assert!(open(dir.path()).is_err());
    }

    #[test]
    fn a_checkpoint_with_fields_this_binary_does_not_know_is_refused() {
        let mut newer = checkpoint(3).encode();
        newer.extend_from_slice(b"a newer field");
        let error = Checkpoint::decode(&newer).expect_err("trailing bytes");
        assert!(error.to_string().contains("13 bytes"), "{error}");
        assert_eq!(
            Checkpoint::decode(&checkpoint(3).encode()).ok(),
            Some(checkpoint(3))
        );
    }

    #[test]
    fn a_file_changed_after_a_clean_close_is_refused_not_trusted() {
        let dir = tempfile::tempdir().expect("dir");
        let mut file = promoted_file(dir.path());
        let value = vec![0x5a_u8; 4096];
        let marked: super::super::Writes = [(b"k".to_vec(), Some(value.clone()))].into();
        file.commit(5, &marked).expect("commit");
        file.checkpoint(5, Some((&checkpoint(5).encode(), &side())))
            .expect("checkpoint");
        drop(file);
        let path = dir.path().join(super::super::file::STATE_FILE_NAME);
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes
            .windows(value.len())
            .position(|window| window == value.as_slice())
            .expect("the value is in the file");
        bytes[at + 100] ^= 0xff;
        std::fs::write(&path, bytes).expect("write");
        assert!(
            open(dir.path()).is_err(),
            "a damaged page must not be resumed"
        );
    }
}
