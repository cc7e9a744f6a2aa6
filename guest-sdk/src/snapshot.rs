//! Versioned, canonical JSON snapshots: the format the crate documentation
//! recommends (a version tag from the first release, read before anything
//! else; entries in key order; non-canonical input refused), with the error
//! messages operators see when a swap is refused.
//!
//! A plugin describes its format family once and uses it in `restore`:
//!
//! ```
//! use clusterhost_sdk::snapshot::VersionedJson;
//! use serde::Deserialize;
//! use std::collections::BTreeMap;
//!
//! /// Version 1 wrote `[key, value]` pairs.
//! const SNAPSHOT_VERSION: u32 = 1;
//! const SNAPSHOT: VersionedJson = VersionedJson::new("kv", SNAPSHOT_VERSION);
//!
//! #[derive(Deserialize)]
//! struct Snapshot {
//!     entries: Vec<(String, String)>,
//! }
//!
//! fn restore(snapshot: &[u8]) -> Result<BTreeMap<String, String>, String> {
//!     // The tag first: a newer format's entries would not parse here.
//!     let version = SNAPSHOT.read_version(snapshot)?;
//!     if version != SNAPSHOT_VERSION {
//!         return Err(SNAPSHOT.unsupported(version));
//!     }
//!     let snapshot: Snapshot = SNAPSHOT.decode(snapshot)?;
//!     SNAPSHOT.map_from_ascending(snapshot.entries)
//! }
//!
//! assert_eq!(restore(br#"{"version":1,"entries":[["a","1"]]}"#).unwrap()["a"], "1");
//! assert_eq!(
//!     restore(br#"{"version":2,"entries":[["a","1",7]]}"#),
//!     Err("snapshot version 2 is newer than this plugin understands".to_string())
//! );
//! assert_eq!(
//!     restore(br#"{"version":1,"entries":[["b","1"],["a","2"]]}"#),
//!     Err(r#"kv snapshot keys not strictly ascending at "a""#.to_string())
//! );
//! ```

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// A plugin's family of JSON snapshot formats, `{"version":N,...}`: the name
/// its errors use and the newest version it understands (the one it writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionedJson {
    name: &'static str,
    newest: u32,
}

/// Just the version tag, so it is read before the rest of the snapshot,
/// whose layout depends on it. serde names this type in type errors
/// (`expected struct SnapshotHeader`), which reach `restore`'s error message:
/// renaming it changes what operators see.
#[derive(Deserialize)]
struct SnapshotHeader {
    version: u32,
}

impl VersionedJson {
    /// The format family of the plugin `name` (as in "malformed kv
    /// snapshot"), whose newest version is `newest`.
    pub const fn new(name: &'static str, newest: u32) -> Self {
        VersionedJson { name, newest }
    }

    /// Read only the version tag. Refuses a snapshot without a readable tag
    /// (`malformed NAME snapshot: …`) and one newer than this plugin
    /// (`snapshot version N is newer than this plugin understands`, the
    /// error an operator can act on: the host keeps the running version).
    /// Every version up to the newest is returned; `restore` decodes the
    /// ones it knows and answers [`unsupported`](Self::unsupported) to the
    /// rest.
    // Inline so serde_json's parser is instantiated in the plugin crate,
    // next to the plugin's own uses of it: compiled here it would be a second
    // copy of that machinery in the component (about 10 KB for kv).
    #[inline]
    pub fn read_version(self, snapshot: &[u8]) -> Result<u32, String> {
        let header: SnapshotHeader = self.decode(snapshot)?;
        if header.version > self.newest {
            return Err(format!(
                "snapshot version {} is newer than this plugin understands",
                header.version
            ));
        }
        Ok(header.version)
    }

    /// Decode the whole snapshot as `T`, the layout of the version
    /// [`read_version`](Self::read_version) returned; `malformed NAME
    /// snapshot: …` if it does not fit.
    pub fn decode<T: DeserializeOwned>(self, snapshot: &[u8]) -> Result<T, String> {
        serde_json::from_slice(snapshot)
            .map_err(|error| format!("malformed {} snapshot: {error}", self.name))
    }

    /// The error for a version this plugin never wrote (older than any it
    /// knows): `unsupported NAME snapshot version N`.
    pub fn unsupported(self, version: u32) -> String {
        format!("unsupported {} snapshot version {version}", self.name)
    }

    /// Build a map from snapshot entries, which a canonical snapshot lists
    /// in strictly ascending key order (as iterating a `BTreeMap` gives
    /// them). Out-of-order or duplicate keys mean the bytes did not come
    /// from this plugin, so they are refused (`NAME snapshot keys not
    /// strictly ascending at KEY`), not normalized.
    pub fn map_from_ascending<K, V>(self, entries: Vec<(K, V)>) -> Result<BTreeMap<K, V>, String>
    where
        K: Ord + Debug,
    {
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
            return Err(format!(
                "{} snapshot keys not strictly ascending at {:?}",
                self.name, pair[1].0
            ));
        }
        Ok(entries.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the tag is read before the layout, newer and unknown versions
    //! are refused with their own messages, and non-canonical entries are
    //! refused; every message is pinned, since operators read them.
    use super::*;

    const FORMAT: VersionedJson = VersionedJson::new("demo", 2);

    #[test]
    fn reads_the_tag_whatever_the_rest_holds() {
        assert_eq!(FORMAT.read_version(br#"{"version":2,"x":[1]}"#), Ok(2));
        assert_eq!(FORMAT.read_version(br#"{"other":null,"version":0}"#), Ok(0));
        assert_eq!(FORMAT.read_version(br#"{"version":1}"#), Ok(1));
    }

    #[test]
    fn refuses_newer_and_malformed_tags() {
        let cases: [(&[u8], &str); 6] = [
            (
                br#"{"version":3,"entries":"anything"}"#,
                "snapshot version 3 is newer than this plugin understands",
            ),
            (
                b"",
                "malformed demo snapshot: EOF while parsing a value at line 1 column 0",
            ),
            (
                b"5",
                "malformed demo snapshot: invalid type: integer `5`, \
                 expected struct SnapshotHeader at line 1 column 1",
            ),
            (
                b"{}",
                "malformed demo snapshot: missing field `version` at line 1 column 2",
            ),
            (
                br#"{"version":-1}"#,
                "malformed demo snapshot: invalid value: integer `-1`, \
                 expected u32 at line 1 column 13",
            ),
            (
                br#"{"version":1} x"#,
                "malformed demo snapshot: trailing characters at line 1 column 15",
            ),
        ];
        for (snapshot, expected) in cases {
            assert_eq!(FORMAT.read_version(snapshot), Err(expected.to_string()));
        }
    }

    #[test]
    fn decodes_a_layout_or_names_the_problem() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Layout {
            entries: Vec<(String, u64)>,
        }
        assert_eq!(
            FORMAT.decode(br#"{"version":2,"entries":[["a",1]]}"#),
            Ok(Layout {
                entries: vec![("a".to_string(), 1)]
            })
        );
        assert_eq!(
            FORMAT.decode::<Layout>(br#"{"version":2}"#),
            Err("malformed demo snapshot: missing field `entries` at line 1 column 13".to_string())
        );
        assert_eq!(FORMAT.unsupported(0), "unsupported demo snapshot version 0");
    }

    #[test]
    fn maps_only_strictly_ascending_entries() {
        let map = FORMAT
            .map_from_ascending(vec![("a", 1), ("b", 2), ("c", 3)])
            .unwrap();
        assert_eq!(map, BTreeMap::from([("a", 1), ("b", 2), ("c", 3)]));
        assert_eq!(
            FORMAT.map_from_ascending(Vec::<(String, ())>::new()),
            Ok(BTreeMap::new())
        );
        assert_eq!(
            FORMAT.map_from_ascending(vec![("a", 1), ("c", 2), ("b", 3)]),
            Err(r#"demo snapshot keys not strictly ascending at "b""#.to_string())
        );
        assert_eq!(
            FORMAT.map_from_ascending(vec![("a", 1), ("a", 2)]),
            Err(r#"demo snapshot keys not strictly ascending at "a""#.to_string())
        );
    }
}
