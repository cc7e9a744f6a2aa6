//! Deploy trust: plugins signed with ed25519 by a listed key. The signature
//! travels inside the component, as a custom section appended at its end
//! (wasm runtimes ignore custom sections), so uploads need no new API:
//! `[0x00, size, name length, "clusterhost-signature", public key, signature]`,
//! the signature covering every byte before that section.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// The custom section's name.
const SECTION_NAME: &[u8] = b"clusterhost-signature";
/// Bytes of an ed25519 public key.
const PUBLIC_KEY_BYTES: usize = 32;

/// A trusted signer's public key.
pub type Signer = [u8; PUBLIC_KEY_BYTES];
/// Bytes of an ed25519 signature.
const SIGNATURE_BYTES: usize = 64;
/// The section's payload: its name (with its length byte), key, signature.
const PAYLOAD_BYTES: usize = 1 + SECTION_NAME.len() + PUBLIC_KEY_BYTES + SIGNATURE_BYTES;
/// The whole section: id, size, payload. Sizes below 128 are one LEB128 byte.
const TRAILER_BYTES: usize = 2 + PAYLOAD_BYTES;
const _: () = assert!(PAYLOAD_BYTES < 128);

/// Why a plugin is not trusted, or a key not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// No signature section at the end.
    #[error("the plugin is not signed (sign it with `clusterhost plugin sign`)")]
    Unsigned,
    /// Signed by a key not in the signers file.
    #[error("the plugin is signed by {0}, which is not a listed signer")]
    UnknownSigner(String),
    /// The signature does not match the bytes.
    #[error("the plugin's signature does not match its contents")]
    BadSignature,
    /// A signers file line that is not a public key.
    #[error("signers line {line}: not an ed25519 public key (64 hex digits)")]
    BadSignerLine {
        /// 1-based line number.
        line: usize,
    },
    /// A private key file that is not a PKCS#8 ed25519 key.
    #[error("not an ed25519 private key (from `clusterhost plugin keygen`)")]
    BadPrivateKey,
}

/// A new ed25519 private key (PKCS#8, hex) and its public key (hex).
pub fn generate_key() -> Result<(String, String), SigningError> {
    let random = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&random).map_err(|_| SigningError::BadPrivateKey)?;
    let pair =
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| SigningError::BadPrivateKey)?;
    Ok((
        hex::encode(pkcs8.as_ref()),
        hex::encode(pair.public_key().as_ref()),
    ))
}

/// `plugin` (any earlier signature removed) signed with `private_key_hex`.
pub fn sign(plugin: &[u8], private_key_hex: &str) -> Result<Vec<u8>, SigningError> {
    let pkcs8 = hex::decode(private_key_hex.trim()).map_err(|_| SigningError::BadPrivateKey)?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SigningError::BadPrivateKey)?;
    let body = split(plugin).map_or(plugin, |(body, _, _)| body);
    let signature = pair.sign(body);
    let mut signed = Vec::with_capacity(body.len() + TRAILER_BYTES);
    signed.extend_from_slice(body);
    signed.extend_from_slice(&[0x00, PAYLOAD_BYTES as u8, SECTION_NAME.len() as u8]);
    signed.extend_from_slice(SECTION_NAME);
    signed.extend_from_slice(pair.public_key().as_ref());
    signed.extend_from_slice(signature.as_ref());
    Ok(signed)
}

/// Parse a signers file: one hex public key per line; `#` comments.
pub fn parse_signers(text: &str) -> Result<Vec<Signer>, SigningError> {
    let mut signers = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = SigningError::BadSignerLine { line: number + 1 };
        let key: Signer = hex::decode(line)
            .map_err(|_| bad.clone())?
            .try_into()
            .map_err(|_| bad)?;
        signers.push(key);
    }
    Ok(signers)
}

/// Whether `plugin` carries a valid signature by one of `signers`.
pub fn verify(plugin: &[u8], signers: &[Signer]) -> Result<(), SigningError> {
    let (body, public_key, signature) = split(plugin).ok_or(SigningError::Unsigned)?;
    if !signers.iter().any(|signer| signer == public_key) {
        return Err(SigningError::UnknownSigner(hex::encode(public_key)));
    }
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(body, signature)
        .map_err(|_| SigningError::BadSignature)
}

/// The signed bytes, public key and signature of a signed plugin.
fn split(plugin: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let start = plugin.len().checked_sub(TRAILER_BYTES)?;
    let (body, trailer) = plugin.split_at(start);
    let header_bytes = 3 + SECTION_NAME.len();
    let (header, rest) = trailer.split_at(header_bytes);
    let expected_start = [0x00, PAYLOAD_BYTES as u8, SECTION_NAME.len() as u8];
    if header[..3] != expected_start || &header[3..] != SECTION_NAME {
        return None;
    }
    let (public_key, signature) = rest.split_at(PUBLIC_KEY_BYTES);
    Some((body, public_key, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_signers_with_intact_bytes_pass() {
        let (private, public) = generate_key().unwrap();
        let signers = parse_signers(&format!("# ops\n{public}\n")).unwrap();
        let plugin = b"\0asm\x0d\0\x01\0component bytes".to_vec();
        let signed = sign(&plugin, &private).unwrap();
        assert_eq!(verify(&signed, &signers), Ok(()));
        assert_eq!(verify(&plugin, &signers), Err(SigningError::Unsigned));
        let (_, other) = generate_key().unwrap();
        let others = parse_signers(&other).unwrap();
        assert!(matches!(
            verify(&signed, &others),
            Err(SigningError::UnknownSigner(_))
        ));
        for index in 0..plugin.len() {
            let mut tampered = signed.clone();
            tampered[index] ^= 1;
            assert_eq!(
                verify(&tampered, &signers),
                Err(SigningError::BadSignature),
                "byte {index}"
            );
        }
        // Signing again replaces the signature instead of stacking one.
        assert_eq!(sign(&signed, &private).unwrap(), signed);
    }

    #[test]
    fn bad_key_lines_are_refused() {
        assert_eq!(
            parse_signers("abc"),
            Err(SigningError::BadSignerLine { line: 1 })
        );
        assert_eq!(sign(b"x", "00"), Err(SigningError::BadPrivateKey));
    }
}
