//! Refuses gossip datagrams that chitchat 0.13 would accept yet `assert!`
//! on (pure). chitchat's decoder lets a node delta carry a `SetMaxVersion`
//! below the version of a key-value before it; applying that delta trips
//! `assert!(node_delta.max_version >= self.max_version)` and the panic ends
//! the gossip task for good. chitchat does not expose its wire types, so
//! this reads its wire format (0.13: magic, protocol version, message type,
//! digest, a block stream of delta operations) just far enough to check
//! each node delta, and refuses anything it cannot read: chitchat would
//! refuse that too. Decompressed bytes are bounded
//! ([`GOSSIP_DECOMPRESSED_BYTES_MAX`]), so a datagram of tiny zstd blocks
//! cannot make the node allocate gigabytes either.

use crate::limits::GOSSIP_DECOMPRESSED_BYTES_MAX;

const MAGIC: u16 = 45_139;
const MESSAGE_SYN: u8 = 0;
const MESSAGE_SYN_ACK: u8 = 1;
const MESSAGE_ACK: u8 = 2;
const MESSAGE_BAD_CLUSTER: u8 = 3;
const PROTOCOL_V0: u8 = 0;
const PROTOCOL_V1: u8 = 1;
const BLOCK_END: u8 = 0;
const BLOCK_COMPRESSED: u8 = 1;
const BLOCK_PLAIN: u8 = 2;
const OP_NODE: u8 = 0;
const OP_KEY_VALUE: u8 = 1;
const OP_SET_MAX_VERSION: u8 = 2;
/// Bytes of one zstd block once decompressed, as chitchat bounds it.
const BLOCK_DECOMPRESSED_BYTES_MAX: usize = u16::MAX as usize;

/// Why a datagram is not handed to chitchat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireRefusal {
    /// Not a chitchat 0.13 message, or cut short.
    #[error("malformed gossip message: {0}")]
    Malformed(&'static str),
    /// A node delta whose max version is below one of its own key-values'
    /// (chitchat would panic applying it).
    #[error("gossip delta with max version {max_version} below a key-value's {key_version}")]
    MaxVersionBelowKeyValue {
        /// What the delta claims.
        max_version: u64,
        /// The key-value version above it.
        key_version: u64,
    },
    /// The compressed blocks expand beyond [`GOSSIP_DECOMPRESSED_BYTES_MAX`].
    #[error("gossip message decompresses beyond {GOSSIP_DECOMPRESSED_BYTES_MAX} bytes")]
    TooLarge,
}

/// Whether chitchat may be handed `datagram` (an opened one).
pub fn check(datagram: &[u8]) -> Result<(), WireRefusal> {
    let mut reader = Reader(datagram);
    if reader.u16()? != MAGIC {
        return Err(WireRefusal::Malformed("magic number"));
    }
    let protocol = reader.u8()?;
    if protocol != PROTOCOL_V0 && protocol != PROTOCOL_V1 {
        return Err(WireRefusal::Malformed("protocol version"));
    }
    match reader.u8()? {
        MESSAGE_SYN | MESSAGE_BAD_CLUSTER => Ok(()),
        MESSAGE_SYN_ACK => {
            skip_digest(&mut reader, protocol)?;
            check_delta(&mut reader)
        }
        MESSAGE_ACK => check_delta(&mut reader),
        _ => Err(WireRefusal::Malformed("message type")),
    }
}

fn skip_digest(reader: &mut Reader<'_>, protocol: u8) -> Result<(), WireRefusal> {
    if protocol == PROTOCOL_V1 {
        // A block stream; its content cannot trip an assert, so it is only
        // stepped over.
        loop {
            match reader.u8()? {
                BLOCK_END => return Ok(()),
                BLOCK_COMPRESSED | BLOCK_PLAIN => {
                    let length = usize::from(reader.u16()?);
                    reader.take(length)?;
                }
                _ => return Err(WireRefusal::Malformed("digest block type")),
            }
        }
    }
    for _ in 0..reader.u16()? {
        skip_chitchat_id(reader)?;
        // Heartbeat, last GC version, max version.
        reader.take(3 * 8)?;
    }
    Ok(())
}

fn check_delta(reader: &mut Reader<'_>) -> Result<(), WireRefusal> {
    let operations = decompress_stream(reader)?;
    let mut ops = Reader(&operations);
    // The highest key-value version and the max version of the node delta
    // being read, as chitchat's delta builder tracks them.
    let mut current: Option<(u64, u64)> = None;
    while !ops.0.is_empty() {
        match ops.u8()? {
            OP_NODE => {
                skip_chitchat_id(&mut ops)?;
                // Last GC version, from version (excluded).
                ops.take(2 * 8)?;
                current = Some((0, 0));
            }
            OP_KEY_VALUE => {
                let (_, max_version) = current
                    .as_mut()
                    .ok_or(WireRefusal::Malformed("key-value before node"))?;
                skip_str(&mut ops)?;
                skip_str(&mut ops)?;
                let version = ops.u64()?;
                ops.u8()?; // deletion status
                if version <= *max_version {
                    return Err(WireRefusal::Malformed("key-value versions not increasing"));
                }
                current = Some((version, version));
            }
            OP_SET_MAX_VERSION => {
                let (key_version, max_version) = current
                    .as_mut()
                    .ok_or(WireRefusal::Malformed("max version before node"))?;
                let claimed = ops.u64()?;
                if claimed < *key_version {
                    return Err(WireRefusal::MaxVersionBelowKeyValue {
                        max_version: claimed,
                        key_version: *key_version,
                    });
                }
                *max_version = claimed;
            }
            _ => return Err(WireRefusal::Malformed("delta operation")),
        }
    }
    Ok(())
}

fn decompress_stream(reader: &mut Reader<'_>) -> Result<Vec<u8>, WireRefusal> {
    let mut operations = Vec::new();
    loop {
        let block_type = reader.u8()?;
        if block_type == BLOCK_END {
            return Ok(operations);
        }
        let length = usize::from(reader.u16()?);
        let block = reader.take(length)?;
        match block_type {
            BLOCK_PLAIN => operations.extend_from_slice(block),
            BLOCK_COMPRESSED => {
                let plain = zstd::bulk::decompress(block, BLOCK_DECOMPRESSED_BYTES_MAX)
                    .map_err(|_| WireRefusal::Malformed("compressed block"))?;
                operations.extend_from_slice(&plain);
            }
            _ => return Err(WireRefusal::Malformed("delta block type")),
        }
        if operations.len() > GOSSIP_DECOMPRESSED_BYTES_MAX {
            return Err(WireRefusal::TooLarge);
        }
    }
}

fn skip_chitchat_id(reader: &mut Reader<'_>) -> Result<(), WireRefusal> {
    skip_str(reader)?;
    reader.take(8)?; // generation
    let address_bytes = match reader.u8()? {
        4 => 4,
        6 => 16,
        _ => return Err(WireRefusal::Malformed("address family")),
    };
    reader.take(address_bytes + 2).map(|_| ())
}

fn skip_str(reader: &mut Reader<'_>) -> Result<(), WireRefusal> {
    let length = usize::from(reader.u16()?);
    let bytes = reader.take(length)?;
    std::str::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| WireRefusal::Malformed("string not UTF-8"))
}

/// Little-endian reads off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], WireRefusal> {
        if self.0.len() < length {
            return Err(WireRefusal::Malformed("cut short"));
        }
        let (head, rest) = self.0.split_at(length);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireRefusal> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireRefusal> {
        let bytes = self.take(2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u64(&mut self) -> Result<u64, WireRefusal> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ack whose single node delta holds `ops` (after the node op).
    fn ack(ops: &[u8], compressed: bool) -> Vec<u8> {
        let mut stream = vec![OP_NODE];
        stream.extend(2u16.to_le_bytes());
        stream.extend(b"n9");
        stream.extend(7u64.to_le_bytes());
        stream.extend([4, 127, 0, 0, 1, 0x1f, 0x90]);
        stream.extend([0u8; 16]);
        stream.extend(ops);
        let mut datagram = MAGIC.to_le_bytes().to_vec();
        datagram.extend([PROTOCOL_V1, MESSAGE_ACK]);
        let block = if compressed {
            zstd::bulk::compress(&stream, 3).expect("compress")
        } else {
            stream
        };
        datagram.push(if compressed {
            BLOCK_COMPRESSED
        } else {
            BLOCK_PLAIN
        });
        datagram.extend(u16::try_from(block.len()).expect("small").to_le_bytes());
        datagram.extend(block);
        datagram.push(BLOCK_END);
        datagram
    }

    fn key_value(version: u64) -> Vec<u8> {
        let mut op = vec![OP_KEY_VALUE, 1, 0, b'k', 1, 0, b'v'];
        op.extend(version.to_le_bytes());
        op.push(0);
        op
    }

    fn set_max(version: u64) -> Vec<u8> {
        let mut op = vec![OP_SET_MAX_VERSION];
        op.extend(version.to_le_bytes());
        op
    }

    #[test]
    fn a_max_version_below_a_key_value_is_refused_compressed_or_not() {
        let ops = [key_value(10), set_max(5)].concat();
        for compressed in [false, true] {
            assert_eq!(
                check(&ack(&ops, compressed)),
                Err(WireRefusal::MaxVersionBelowKeyValue {
                    max_version: 5,
                    key_version: 10
                })
            );
        }
    }

    #[test]
    fn ordinary_deltas_pass() {
        assert_eq!(check(&ack(&[], false)), Ok(()));
        assert_eq!(check(&ack(&set_max(5), true)), Ok(()));
        let ops = [key_value(3), key_value(10), set_max(12)].concat();
        assert_eq!(check(&ack(&ops, true)), Ok(()));
    }

    #[test]
    fn malformed_and_truncated_messages_are_refused() {
        let good = ack(&key_value(3), false);
        for length in 0..good.len() {
            assert!(check(&good[..length]).is_err(), "length {length}");
        }
        let decreasing = [key_value(10), key_value(4)].concat();
        assert!(check(&ack(&decreasing, false)).is_err());
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        assert_eq!(
            check(&bad_magic),
            Err(WireRefusal::Malformed("magic number"))
        );
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let zeros = vec![0u8; BLOCK_DECOMPRESSED_BYTES_MAX];
        let block = zstd::bulk::compress(&zeros, 19).expect("compress");
        let mut datagram = MAGIC.to_le_bytes().to_vec();
        datagram.extend([PROTOCOL_V1, MESSAGE_ACK]);
        while datagram.len() + block.len() + 4 < 60_000 {
            datagram.push(BLOCK_COMPRESSED);
            datagram.extend(u16::try_from(block.len()).expect("small").to_le_bytes());
            datagram.extend(&block);
        }
        datagram.push(BLOCK_END);
        assert_eq!(check(&datagram), Err(WireRefusal::TooLarge));
    }
}
