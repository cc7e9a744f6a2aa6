//! The state a snapshot carries for a plugin that imports the store: the
//! plugin's own snapshot (its in-memory part) and every key and value of
//! the store at the same position.
//!
//! Layout: [`MAGIC`], the plugin part's length (u64 LE) and bytes, then
//! each entry as key length (u32 LE), key, value length (u32 LE), value, in
//! key order. The snapshot file around it is hashed, so this is not.

use super::{KeyValue, StoreError};

/// Opens every envelope. A plugin handed its predecessor's plain snapshot
/// (a deploy from a version without the store) gets that snapshot as is.
pub const MAGIC: &[u8; 16] = b"clusterhost-st1\0";

/// The bytes an envelope holds besides the plugin part and the entries.
pub const HEADER_BYTES: usize = MAGIC.len() + 8;

/// The bytes one entry of `key` and `value` bytes takes in an envelope.
pub fn entry_bytes(key: usize, value: usize) -> usize {
    8 + key + value
}

/// An envelope of `plugin` and `entries`.
pub fn encode(plugin: &[u8], entries: &[KeyValue]) -> Vec<u8> {
    let size = HEADER_BYTES
        + plugin.len()
        + entries
            .iter()
            .map(|(key, value)| entry_bytes(key.len(), value.len()))
            .sum::<usize>();
    let mut writer = Writer::new(plugin, size);
    for (key, value) in entries {
        writer.push(key, value);
    }
    writer.finish()
}

/// Writes an envelope entry by entry, so a store read from its table is
/// held once, as the envelope.
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// An envelope of `plugin` and no entries yet, with room for
    /// `capacity` bytes in all.
    pub fn new(plugin: &[u8], capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity.max(HEADER_BYTES + plugin.len()));
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(plugin.len() as u64).to_le_bytes());
        bytes.extend_from_slice(plugin);
        Self { bytes }
    }

    /// Add the next entry (keys in ascending order).
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        for part in [key, value] {
            // Keys and values are bounded far below 4 GiB by the limits.
            self.bytes
                .extend_from_slice(&(part.len() as u32).to_le_bytes());
            self.bytes.extend_from_slice(part);
        }
    }

    /// The envelope.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// The store entries of a decoded envelope, read in place from its bytes:
/// restoring a store of many small keys holds no second copy of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entries<'a> {
    /// The entries' encoding, checked by [`decode`].
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Entries<'a> {
    /// No entries: the store of a plain snapshot.
    pub const NONE: Entries<'static> = Entries {
        bytes: &[],
        count: 0,
    };

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let mut rest = self.bytes;
        std::iter::from_fn(move || {
            // `decode` checked every part, so none of this fails.
            let (key, after_key) = split_part(rest).ok()?;
            let (value, after_value) = split_part(after_key).ok()?;
            rest = after_value;
            Some((key, value))
        })
    }

    /// The entries as owned pairs.
    pub fn to_vec(&self) -> Vec<KeyValue> {
        self.iter()
            .map(|(key, value)| (key.to_vec(), value.to_vec()))
            .collect()
    }
}

/// What a plugin restores from the envelope `snapshot` and the store
/// entries it takes over. A plugin that does not import the store may take
/// one over only while the store is empty (a swap away from a store plugin
/// that holds keys would drop them silently), else the restore is refused
/// with this message, the same on every replica.
pub fn split_for(uses_store: bool, snapshot: &[u8]) -> Result<(&[u8], Entries<'_>), String> {
    let (plugin_part, entries) = decode(snapshot).map_err(|error| error.to_string())?;
    if !uses_store && !entries.is_empty() {
        return Err(format!(
            "the host store holds {} keys; a plugin that does not import the store cannot take them over",
            entries.len()
        ));
    }
    Ok((plugin_part, entries))
}

/// The plugin part and the store entries of an envelope, every entry
/// checked (complete, keys strictly ascending).
pub fn decode(bytes: &[u8]) -> Result<(&[u8], Entries<'_>), StoreError> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("no envelope marker"))?;
    let (length, rest) = split_length::<8>(rest)?;
    let length = usize::try_from(length).map_err(|_| malformed("plugin part too long"))?;
    if rest.len() < length {
        return Err(malformed("truncated plugin part"));
    }
    let (plugin, entries_bytes) = rest.split_at(length);
    let mut rest = entries_bytes;
    let mut count = 0;
    let mut previous: Option<&[u8]> = None;
    while !rest.is_empty() {
        let (key, after_key) = split_part(rest)?;
        let (_, after_value) = split_part(after_key)?;
        if previous.is_some_and(|previous| previous >= key) {
            return Err(malformed("keys out of order"));
        }
        previous = Some(key);
        count += 1;
        rest = after_value;
    }
    let entries = Entries {
        bytes: entries_bytes,
        count,
    };
    Ok((plugin, entries))
}

fn split_part(bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let (length, rest) = split_length::<4>(bytes)?;
    let length = length as usize;
    if rest.len() < length {
        return Err(malformed("truncated entry"));
    }
    Ok(rest.split_at(length))
}

fn split_length<const N: usize>(bytes: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let (head, rest) = bytes
        .split_first_chunk::<N>()
        .ok_or_else(|| malformed("truncated length"))?;
    let mut buffer = [0u8; 8];
    buffer[..N].copy_from_slice(head);
    Ok((u64::from_le_bytes(buffer), rest))
}

fn malformed(what: &str) -> StoreError {
    StoreError::Malformed(what.to_string())
}

#[cfg(test)]
mod tests {
    //! Goal: an envelope decodes to what was encoded, and damage is refused.
    use super::*;

    #[test]
    fn a_plugin_without_the_store_takes_over_only_an_empty_store() {
        assert!(split_for(false, b"kv state").is_err(), "not an envelope");
        let empty = encode(b"memory", &[]);
        let (part, entries) = split_for(false, &empty).expect("an empty store");
        assert_eq!((part, entries.len()), (&b"memory"[..], 0));
        let held = encode(b"memory", &[(b"k".to_vec(), b"v".to_vec())]);
        let refused = split_for(false, &held).expect_err("keys would be dropped");
        assert!(refused.contains("holds 1 keys"), "{refused}");
        let (part, entries) = split_for(true, &held).expect("a store plugin takes them");
        assert_eq!((part, entries.len()), (&b"memory"[..], 1));
    }

    #[test]
    fn envelopes_round_trip_and_refuse_damage() {
        let entries = vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), Vec::new())];
        let bytes = encode(b"memory", &entries);
        assert!(bytes.starts_with(MAGIC));
        let (plugin, decoded) = decode(&bytes).unwrap();
        assert_eq!(plugin, b"memory");
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded.to_vec(), entries);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"plain snapshot").is_err());
        let swapped = encode(b"", &[entries[1].clone(), entries[0].clone()]);
        assert!(decode(&swapped).is_err());
    }
}
