//! The gossip keyring: ChaCha20-Poly1305 keys every datagram is sealed
//! with. The first key seals; every key opens, so a new key can be added
//! everywhere first, made primary next, and the old one dropped last
//! (rotation without a moment in which two nodes cannot hear each other).
//! A running node swaps in the keys of its key file again on SIGHUP
//! ([`Keyring::replace_keys`]), so each of those steps needs no restart.
//!
//! Wire form of a sealed datagram: a format byte, a random 96-bit nonce,
//! then the ciphertext and its 16-byte tag. A datagram that does not open
//! under any key is never parsed.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::{PoisonError, RwLock};

use crate::limits::GOSSIP_KEYS_MAX;

/// Bytes of one key.
pub const KEY_BYTES: usize = 32;
/// The format byte of sealed datagrams.
const SEALED_FORMAT: u8 = 1;
/// Bytes a sealed datagram adds to the envelope: format, nonce, tag.
pub const SEAL_OVERHEAD_BYTES: usize = 1 + NONCE_LEN + 16;
/// Bound to every datagram, so a sealed clusterhost datagram is never
/// mistaken for anything else sealed with the same key.
const ASSOCIATED_DATA: &[u8] = b"clusterhost gossip v1";

/// Why a key file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No key at all.
    #[error("no gossip key in the file (one key per line: 64 hex digits)")]
    Empty,
    /// A line that is not a key.
    #[error("line {line}: not a gossip key (64 hex digits, from `clusterhost gossip keygen`)")]
    BadKey {
        /// 1-based line number.
        line: usize,
    },
    /// More keys than rotation needs.
    #[error("{count} gossip keys; at most {GOSSIP_KEYS_MAX}")]
    TooMany {
        /// How many were given.
        count: usize,
    },
}

/// The keys, primary first. Behind a lock so a reload can swap them while
/// the gossip relays that share this keyring keep sealing and opening.
pub struct Keyring {
    keys: RwLock<Vec<LessSafeKey>>,
    /// Each key's fingerprint, in the same order (for logs: which keys are
    /// in use, without the keys).
    fingerprints: RwLock<Vec<String>>,
    random: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Keyring({} keys)", self.len())
    }
}

impl Keyring {
    /// Parse a key file: one hex key per line, the primary first; blank
    /// lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys = Vec::new();
        let mut fingerprints = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = KeyringError::BadKey { line: number + 1 };
            let bytes = hex::decode(line).map_err(|_| bad.clone())?;
            if bytes.len() != KEY_BYTES {
                return Err(bad);
            }
            fingerprints.push(fingerprint(&bytes));
            let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| bad)?;
            keys.push(LessSafeKey::new(key));
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        if keys.len() > GOSSIP_KEYS_MAX {
            return Err(KeyringError::TooMany { count: keys.len() });
        }
        Ok(Self {
            keys: RwLock::new(keys),
            fingerprints: RwLock::new(fingerprints),
            random: SystemRandom::new(),
        })
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.keys().len()
    }

    /// Never true: a keyring has at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys().is_empty()
    }

    /// Use `newer`'s keys from now on (a reloaded key file); datagrams in
    /// flight are sealed or opened under either set, never a mix.
    pub fn replace_keys(&self, newer: Keyring) {
        let keys = newer
            .keys
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let fingerprints = newer
            .fingerprints
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
        *self
            .fingerprints
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fingerprints;
    }

    /// The fingerprints of the keys in use, primary first: safe to log.
    pub fn fingerprints(&self) -> Vec<String> {
        self.fingerprints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Vec<LessSafeKey>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new random key, as a key file line.
    pub fn generate() -> Result<String, ring::error::Unspecified> {
        let mut key = [0u8; KEY_BYTES];
        SystemRandom::new().fill(&mut key)?;
        Ok(hex::encode(key))
    }

    /// `plaintext` sealed under the primary key.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce)?;
        let mut sealed = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD_BYTES);
        sealed.push(SEALED_FORMAT);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let mut body = sealed.split_off(1 + NONCE_LEN);
        self.keys()[0].seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(ASSOCIATED_DATA),
            &mut body,
        )?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// The plaintext of `datagram`, if some key opens it.
    pub fn open(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        let (&format, rest) = datagram.split_first()?;
        if format != SEALED_FORMAT || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.keys().iter().find_map(|key| {
            let mut buffer = body.to_vec();
            let plaintext = key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(ASSOCIATED_DATA),
                    &mut buffer,
                )
                .ok()?;
            Some(plaintext.to_vec())
        })
    }
}

/// Bytes of a key's fingerprint (of its SHA-256): enough to tell keys
/// apart in logs, far too few to help guess one.
const FINGERPRINT_BYTES: usize = 8;

/// A key's fingerprint: the first bytes of the SHA-256 of a label and the
/// key, in hex.
fn fingerprint(key: &[u8]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"clusterhost gossip key fingerprint\0");
    context.update(key);
    hex::encode(&context.finish().as_ref()[..FINGERPRINT_BYTES])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(lines: &[&str]) -> Keyring {
        Keyring::parse(&lines.join("\n")).expect("keyring")
    }

    #[test]
    fn fingerprints_tell_keys_apart_follow_a_reload_and_hide_the_key() {
        let (old, new) = (Keyring::generate().unwrap(), Keyring::generate().unwrap());
        let ring = keyring(&[&old]);
        let before = ring.fingerprints();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].len(), FINGERPRINT_BYTES * 2);
        assert!(
            !old.contains(&before[0]),
            "the fingerprint is not part of the key"
        );
        ring.replace_keys(keyring(&[&new, &old]));
        let after = ring.fingerprints();
        assert_eq!(after.len(), 2);
        assert_ne!(after[0], before[0]);
        assert_eq!(after[1], before[0], "the same key, the same fingerprint");
    }

    #[test]
    fn sealed_datagrams_open_under_any_key_of_the_ring() {
        let (old, new) = (Keyring::generate().unwrap(), Keyring::generate().unwrap());
        let sender = keyring(&[&new, &old]);
        let sealed = sender.seal(b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD_BYTES);
        assert_eq!(
            keyring(&[&old, &new]).open(&sealed).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            keyring(&[&new]).open(&sealed).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            keyring(&[&old]).open(&sealed),
            None,
            "a ring without the key opened it"
        );
    }

    #[test]
    fn tampered_truncated_and_plain_datagrams_do_not_open() {
        let key = Keyring::generate().unwrap();
        let ring = keyring(&[&key]);
        let sealed = ring.seal(b"payload").unwrap();
        for index in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[index] ^= 1;
            assert_eq!(
                ring.open(&flipped),
                None,
                "byte {index} flipped still opened"
            );
        }
        assert_eq!(ring.open(&sealed[..sealed.len() - 1]), None);
        assert_eq!(ring.open(b""), None);
        assert_eq!(ring.open(b"\x00plaintext chitchat"), None);
    }

    #[test]
    fn key_files_are_checked() {
        assert_eq!(
            Keyring::parse("# nothing\n\n").unwrap_err(),
            KeyringError::Empty
        );
        assert_eq!(
            Keyring::parse("abcd").unwrap_err(),
            KeyringError::BadKey { line: 1 }
        );
        let key = Keyring::generate().unwrap();
        let many = [key.as_str(); GOSSIP_KEYS_MAX + 1].join("\n");
        assert!(matches!(
            Keyring::parse(&many).unwrap_err(),
            KeyringError::TooMany { .. }
        ));
        assert!(Keyring::parse(&format!("# primary\n{key}\n")).is_ok());
    }

    #[test]
    fn replaced_keys_seal_and_open_from_then_on() {
        let (old, new) = (Keyring::generate().unwrap(), Keyring::generate().unwrap());
        let ring = keyring(&[&old]);
        let under_old = ring.seal(b"before").unwrap();
        ring.replace_keys(keyring(&[&new, &old]));
        assert_eq!(ring.len(), 2);
        assert!(keyring(&[&new]).open(&ring.seal(b"x").unwrap()).is_some());
        assert!(
            ring.open(&under_old).is_some(),
            "the secondary key stopped opening"
        );
        ring.replace_keys(keyring(&[&new]));
        assert_eq!(ring.open(&under_old), None, "a removed key still opens");
    }
}
