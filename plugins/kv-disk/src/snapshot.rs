//! kv_disk's in-memory part: the pairs still to migrate, and the snapshots
//! it takes over.
//!
//! - `{"version":1}`: nothing pending (what kv_disk/1 always wrote, and
//!   what this version writes once a migration is done, so a rollback to
//!   kv_disk/1 works then).
//! - `{"version":2,"pending":[[K,V],...]}`: a migration in progress; keys
//!   strictly ascending, so equal states give equal bytes.
//! - `{"version":1,"entries":[[K,V],...]}`: kv's snapshot, handed over by a
//!   deploy `kv → kv_disk`; every entry becomes pending.

use clusterhost_sdk::snapshot::VersionedJson;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Nothing pending (kv_disk/1's format; kv's carries `entries`).
const VERSION_SETTLED: u32 = 1;
/// A migration in progress.
const VERSION_MIGRATING: u32 = 2;
const SNAPSHOT: VersionedJson = VersionedJson::new("kv_disk", VERSION_MIGRATING);

/// Version 1: kv_disk/1's (no field) or kv's (`entries`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settled {
    /// Read by `read_version`; named so `deny_unknown_fields` accepts it.
    #[serde(rename = "version")]
    _version: u32,
    #[serde(default)]
    entries: Vec<(String, String)>,
}

#[derive(Serialize)]
struct SettledOut {
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Migrating {
    version: u32,
    pending: Vec<(String, String)>,
}

/// The snapshot of `pending`.
pub fn encode(pending: &BTreeMap<String, String>) -> Vec<u8> {
    // Strings and integers always serialize.
    if pending.is_empty() {
        let settled = SettledOut {
            version: VERSION_SETTLED,
        };
        return serde_json::to_vec(&settled).expect("kv_disk snapshot serializes");
    }
    let migrating = Migrating {
        version: VERSION_MIGRATING,
        pending: pending
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    };
    serde_json::to_vec(&migrating).expect("kv_disk snapshot serializes")
}

/// The pending pairs of a kv_disk snapshot, or every pair of a kv one.
pub fn decode(snapshot: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let pairs = match SNAPSHOT.read_version(snapshot)? {
        VERSION_SETTLED => SNAPSHOT.decode::<Settled>(snapshot)?.entries,
        VERSION_MIGRATING => SNAPSHOT.decode::<Migrating>(snapshot)?.pending,
        other => return Err(SNAPSHOT.unsupported(other)),
    };
    SNAPSHOT.map_from_ascending(pairs)
}

#[cfg(test)]
mod tests {
    //! Goal: both formats round-trip canonically, kv's snapshot is taken
    //! over whole, and foreign or non-canonical bytes are refused.
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn settled_and_migrating_states_round_trip() {
        assert_eq!(encode(&BTreeMap::new()), br#"{"version":1}"#);
        assert_eq!(decode(br#"{"version":1}"#), Ok(BTreeMap::new()));
        let pending = pairs(&[("a", "1"), ("b", "2")]);
        let bytes = encode(&pending);
        assert_eq!(bytes, br#"{"version":2,"pending":[["a","1"],["b","2"]]}"#);
        assert_eq!(decode(&bytes), Ok(pending));
    }

    #[test]
    fn a_kv_snapshot_is_taken_over_whole() {
        let kv = br#"{"version":1,"entries":[["a","1"],["c","3"]]}"#;
        assert_eq!(decode(kv), Ok(pairs(&[("a", "1"), ("c", "3")])));
    }

    #[test]
    fn foreign_and_non_canonical_snapshots_are_refused() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"version":3}"#, "newer than this plugin"),
            (
                br#"{"version":0}"#,
                "unsupported kv_disk snapshot version 0",
            ),
            (
                br#"{"version":2,"entries":[["a","1",3]]}"#,
                "malformed kv_disk snapshot",
            ),
            (
                br#"{"version":2,"pending":[["b","1"],["a","2"]]}"#,
                "not strictly ascending",
            ),
            (br#"{"version":1,"other":1}"#, "malformed kv_disk snapshot"),
        ];
        for (bytes, expected) in cases {
            let error = decode(bytes).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }
}
