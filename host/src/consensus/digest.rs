//! The applied digest: a running hash of everything a replica applied, so
//! replicas can be compared. `digest_i = H(digest_{i-1}, index, term,
//! payload, outcome)`: the entry's command (or, for a deploy, the plugin's
//! digest; for host entries their kind) and what applying it produced (the
//! response bytes, or the class of failure). Deterministic, cheap (one hash
//! per entry), and carried by snapshots, so a restarted replica continues
//! the same chain.
//!
//! Replicas compare digests at checkpoints, indexes that are multiples of
//! [`CHECKPOINT_EVERY_ENTRIES`]; each keeps its latest few.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::limits::{CHECKPOINT_EVERY_ENTRIES, CHECKPOINTS_KEPT};

/// A digest value.
pub type DigestBytes = [u8; 32];

/// What went into the hash for one entry.
#[derive(Debug, Clone, Copy)]
pub enum Applied<'a> {
    /// A command and its outcome.
    Command {
        /// Leader time stamped on the entry.
        time_ms: u64,
        /// sha256 of the command bytes.
        command: &'a DigestBytes,
        /// The response, or the failure's class and text.
        outcome: Result<&'a [u8], &'a str>,
        /// sha256 of the plugin store writes the entry kept, if any: a
        /// replica whose store took different writes has another digest.
        /// (`None` adds nothing, so plugins without a store hash as before.)
        store_writes: Option<&'a DigestBytes>,
    },
    /// A deploy: the plugin's digest and the outcome.
    Deploy {
        /// sha256 of the plugin, hex.
        plugin_digest: &'a str,
        /// The new cluster version, or why the deploy failed.
        outcome: Result<u64, &'a str>,
    },
    /// A host entry (blank, membership, settings, alarm) by kind; its
    /// contents are Raft's or already covered by what it changes.
    Host(&'a [u8]),
}

/// The chain of digests a replica has applied, with its recent checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedDigest {
    /// The digest after the last applied entry.
    pub value: DigestBytes,
    /// The index it covers.
    pub index: u64,
    /// Digests at the most recent checkpoint indexes.
    pub checkpoints: BTreeMap<u64, DigestBytes>,
}

impl AppliedDigest {
    /// Fold entry `index` of `term` into the chain.
    pub fn apply(&mut self, index: u64, term: u64, applied: Applied<'_>) {
        let mut hasher = Sha256::new();
        hasher.update(self.value);
        hasher.update(index.to_le_bytes());
        hasher.update(term.to_le_bytes());
        match applied {
            Applied::Command {
                time_ms,
                command,
                outcome,
                store_writes,
            } => {
                hasher.update(b"C");
                hasher.update(time_ms.to_le_bytes());
                hasher.update(command);
                hash_outcome(&mut hasher, outcome);
                if let Some(writes) = store_writes {
                    hasher.update(b"S");
                    hasher.update(writes);
                }
            }
            Applied::Deploy {
                plugin_digest,
                outcome,
            } => {
                hasher.update(b"D");
                hash_bytes(&mut hasher, plugin_digest.as_bytes());
                match outcome {
                    Ok(version) => hash_outcome(&mut hasher, Ok(&version.to_le_bytes())),
                    Err(reason) => hash_outcome(&mut hasher, Err(reason)),
                }
            }
            Applied::Host(kind) => {
                hasher.update(b"H");
                hash_bytes(&mut hasher, kind);
            }
        }
        self.value = hasher.finalize().into();
        self.index = index;
        if index.is_multiple_of(CHECKPOINT_EVERY_ENTRIES) {
            self.checkpoints.insert(index, self.value);
            while self.checkpoints.len() > CHECKPOINTS_KEPT {
                self.checkpoints.pop_first();
            }
        }
    }

    /// The value as lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(self.value)
    }
}

/// The digest of a command's bytes, as [`Applied::Command`] takes it.
pub fn command_digest(bytes: &[u8]) -> DigestBytes {
    Sha256::digest(bytes).into()
}

fn hash_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn hash_outcome(hasher: &mut Sha256, outcome: Result<&[u8], &str>) {
    match outcome {
        Ok(bytes) => {
            hasher.update(b"o");
            hash_bytes(hasher, bytes);
        }
        Err(failure) => {
            hasher.update(b"e");
            hash_bytes(hasher, failure.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(
        bytes: &[u8],
        outcome: Result<&[u8], &str>,
        into: &mut AppliedDigest,
        index: u64,
        term: u64,
    ) {
        let command = command_digest(bytes);
        into.apply(
            index,
            term,
            Applied::Command {
                time_ms: 7,
                command: &command,
                outcome,
                store_writes: None,
            },
        );
    }

    #[test]
    fn differing_store_writes_give_differing_digests() {
        let command = command_digest(b"put x");
        let fold = |writes: Option<&DigestBytes>| {
            let mut digest = AppliedDigest::default();
            let applied = Applied::Command {
                time_ms: 7,
                command: &command,
                outcome: Ok(b"ok"),
                store_writes: writes,
            };
            digest.apply(1, 1, applied);
            digest.value
        };
        let mut without = AppliedDigest::default();
        command_into(&mut without);
        assert_eq!(
            fold(None),
            without.value,
            "no writes hash as before the store"
        );
        assert_ne!(fold(Some(&[1; 32])), fold(Some(&[2; 32])));
        assert_ne!(fold(Some(&[1; 32])), fold(None));
    }

    fn command_into(digest: &mut AppliedDigest) {
        command(b"put x", Ok(b"ok"), digest, 1, 1);
    }

    #[test]
    fn equal_histories_give_equal_digests_and_any_difference_shows() {
        let mut a = AppliedDigest::default();
        let mut b = AppliedDigest::default();
        command(b"put x", Ok(b"ok"), &mut a, 1, 1);
        command(b"put x", Ok(b"ok"), &mut b, 1, 1);
        assert_eq!(a, b);
        let mut other_command = a.clone();
        command(b"put z", Ok(b"ok"), &mut other_command, 2, 1);
        let mut other_outcome = a.clone();
        command(b"put y", Err("out of fuel"), &mut other_outcome, 2, 1);
        let mut other_term = a.clone();
        command(b"put y", Ok(b"ok"), &mut other_term, 2, 2);
        command(b"put y", Ok(b"ok"), &mut a, 2, 1);
        assert_ne!(a.value, other_command.value);
        assert_ne!(a.value, other_outcome.value);
        assert_ne!(a.value, other_term.value);
    }

    #[test]
    fn checkpoints_are_kept_at_multiples_and_bounded() {
        let mut digest = AppliedDigest::default();
        let last = CHECKPOINT_EVERY_ENTRIES * (CHECKPOINTS_KEPT as u64 + 3);
        for index in 1..=last {
            digest.apply(index, 1, Applied::Host(b"blank"));
        }
        assert_eq!(digest.checkpoints.len(), CHECKPOINTS_KEPT);
        assert_eq!(
            digest.checkpoints.last_key_value().map(|(index, _)| *index),
            Some(last)
        );
        assert!(
            digest
                .checkpoints
                .keys()
                .all(|index| index % CHECKPOINT_EVERY_ENTRIES == 0)
        );
    }
}
