//! A replicated, ordered key-value store: the realistic example plugin.
//!
//! Keys and values are strings; the state is a `BTreeMap`, so scans and
//! snapshots come out in key order on every replica.
//!
//! Commands (JSON, externally tagged):
//! - `{"put":{"key":K,"value":V}}` → `{"prev":V|null}`
//! - `{"delete":{"key":K}}` → `{"prev":V|null}`
//! - `{"cas":{"key":K,"expected":V|null,"value":V}}` → `{"ok":bool,"current":V|null}`:
//!   sets `value` only if the current value equals `expected` (`null` or a
//!   missing field: the key must be absent); `current` is the value after the
//!   operation.
//!
//! Queries:
//! - `{"get":{"key":K}}` → `{"value":V|null}`
//! - `{"scan":{"prefix":P,"limit":N}}` → `{"items":[[K,V],...]}` in key order;
//!   `prefix` defaults to `""` (everything), `limit` to [`SCAN_LIMIT_DEFAULT`]
//!   and may not exceed [`SCAN_LIMIT_MAX`].
//! - `"plugin_version"` → `"kv/1"`: which plugin build answers, so tests and
//!   operators can tell versions apart across a hot swap.
//!
//! Snapshot: `{"version":1,"entries":[[K,V],...]}` with keys strictly
//! ascending, so equal stores give equal bytes. `restore` reads the version
//! tag before anything else, so a snapshot from a newer plugin (`kv_v2`) is
//! refused with a clear error instead of a parse failure.

use clusterhost_sdk::scan::{self, ScanLimits};
use clusterhost_sdk::snapshot::VersionedJson;
use clusterhost_sdk::{Entry, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Items a scan returns when the query gives no limit.
pub const SCAN_LIMIT_DEFAULT: usize = 100;
/// Most items one scan may return: bounds the response size and the fuel a
/// single query burns. Larger limits are rejected, not silently clamped, so a
/// client never mistakes a clamped page for the end of the range.
pub const SCAN_LIMIT_MAX: usize = 1_000;
/// Both scan limits; building it checks at compile time that the default
/// does not exceed the maximum.
const SCAN_LIMITS: ScanLimits = ScanLimits::new(SCAN_LIMIT_DEFAULT, SCAN_LIMIT_MAX);
/// Snapshot format written by this version.
const SNAPSHOT_VERSION: u32 = 1;
/// kv's snapshot formats: the name in their errors and the newest version.
const SNAPSHOT: VersionedJson = VersionedJson::new("kv", SNAPSHOT_VERSION);
/// Answer to the `plugin_version` query.
pub const PLUGIN_VERSION: &str = "kv/1";

/// The replicated state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Kv {
    entries: BTreeMap<String, String>,
}

/// Commands that change the store.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Set `key` to `value`.
    Put { key: String, value: String },
    /// Remove `key`.
    Delete { key: String },
    /// Set `key` to `value` if its current value is `expected`.
    Cas {
        key: String,
        #[serde(default)]
        expected: Option<String>,
        value: String,
    },
}

/// Read-only requests.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Query {
    /// Read one key.
    Get { key: String },
    /// Read keys starting with `prefix`, in key order.
    Scan {
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Which plugin build answers: [`PLUGIN_VERSION`].
    PluginVersion,
}

/// Responses to commands.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// `put` and `delete`: the value before the command.
    Previous { prev: Option<String> },
    /// `cas`: whether it swapped, and the value after the command.
    Swapped { ok: bool, current: Option<String> },
}

/// Responses to queries.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum QueryResponse {
    /// `get`.
    Value { value: Option<String> },
    /// `scan`: `[key, value]` pairs in key order.
    Items { items: Vec<(String, String)> },
    /// `plugin_version`: a bare string.
    PluginVersion(&'static str),
}

/// The snapshot's canonical, versioned form.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    entries: Vec<(String, String)>,
}

impl StateMachine for Kv {
    type Command = Command;
    type Response = Response;
    type Query = Query;
    type QueryResponse = QueryResponse;

    fn apply(&mut self, _entry: &Entry, command: Command) -> Result<Response, String> {
        Ok(match command {
            Command::Put { key, value } => Response::Previous {
                prev: self.entries.insert(key, value),
            },
            Command::Delete { key } => Response::Previous {
                prev: self.entries.remove(&key),
            },
            Command::Cas {
                key,
                expected,
                value,
            } => {
                let ok = self.entries.get(&key) == expected.as_ref();
                if ok {
                    self.entries.insert(key.clone(), value);
                }
                Response::Swapped {
                    ok,
                    current: self.entries.get(&key).cloned(),
                }
            }
        })
    }

    fn query(&self, query: Query) -> Result<QueryResponse, String> {
        match query {
            Query::Get { key } => Ok(QueryResponse::Value {
                value: self.entries.get(&key).cloned(),
            }),
            Query::Scan { prefix, limit } => {
                // Refuses a limit above the maximum rather than clamping it.
                let limit = SCAN_LIMITS.resolve(limit)?;
                let items = scan::prefix(&self.entries, &prefix, limit)
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                Ok(QueryResponse::Items { items })
            }
            Query::PluginVersion => Ok(QueryResponse::PluginVersion(PLUGIN_VERSION)),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let entries = self
            .entries
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            entries,
        };
        // Strings and integers always serialize.
        serde_json::to_vec(&snapshot).expect("kv snapshot serializes")
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        // The version first: a newer format's entries would not parse here,
        // and "newer than this plugin" (refused by `read_version`) is the
        // error an operator can act on.
        let version = SNAPSHOT.read_version(snapshot)?;
        if version != SNAPSHOT_VERSION {
            return Err(SNAPSHOT.unsupported(version));
        }
        let snapshot: Snapshot = SNAPSHOT.decode(snapshot)?;
        // Out-of-order or duplicate keys are refused, not normalized: they
        // mean the bytes did not come from this plugin.
        let entries = SNAPSHOT.map_from_ascending(snapshot.entries)?;
        Ok(Kv { entries })
    }
}

clusterhost_sdk::export_state_machine!(Kv);

#[cfg(test)]
mod tests {
    //! Goal: every command and query of the wire format, scan ordering and
    //! limits, malformed input as errors, and canonical snapshots.
    use super::*;
    use clusterhost_sdk::testing::Harness;
    use serde_json::json;

    fn put(kv: &mut Harness<Kv>, key: &str, value: &str) -> serde_json::Value {
        kv.apply(&json!({"put": {"key": key, "value": value}}))
            .unwrap()
    }

    #[test]
    fn put_get_delete() {
        let mut kv = Harness::<Kv>::new();
        assert_eq!(put(&mut kv, "a", "1"), json!({"prev": null}));
        assert_eq!(put(&mut kv, "a", "2"), json!({"prev": "1"}));
        assert_eq!(
            kv.query(&json!({"get": {"key": "a"}})),
            Ok(json!({"value": "2"}))
        );
        assert_eq!(
            kv.apply(&json!({"delete": {"key": "a"}})),
            Ok(json!({"prev": "2"}))
        );
        assert_eq!(
            kv.apply(&json!({"delete": {"key": "a"}})),
            Ok(json!({"prev": null}))
        );
        assert_eq!(
            kv.query(&json!({"get": {"key": "a"}})),
            Ok(json!({"value": null}))
        );
    }

    #[test]
    fn compare_and_swap() {
        let mut kv = Harness::<Kv>::new();
        let create = json!({"cas": {"key": "k", "expected": null, "value": "v1"}});
        assert_eq!(kv.apply(&create), Ok(json!({"ok": true, "current": "v1"})));
        // The key now exists, so "must be absent" fails and reports the value.
        assert_eq!(kv.apply(&create), Ok(json!({"ok": false, "current": "v1"})));
        let wrong = json!({"cas": {"key": "k", "expected": "nope", "value": "v2"}});
        assert_eq!(kv.apply(&wrong), Ok(json!({"ok": false, "current": "v1"})));
        let right = json!({"cas": {"key": "k", "expected": "v1", "value": "v2"}});
        assert_eq!(kv.apply(&right), Ok(json!({"ok": true, "current": "v2"})));
        // A missing `expected` means "absent", like null.
        let absent = json!({"cas": {"key": "new", "value": "x"}});
        assert_eq!(kv.apply(&absent), Ok(json!({"ok": true, "current": "x"})));
        let missing = json!({"cas": {"key": "gone", "expected": "x", "value": "y"}});
        assert_eq!(
            kv.apply(&missing),
            Ok(json!({"ok": false, "current": null}))
        );
    }

    #[test]
    fn scan_is_ordered_prefixed_and_limited() {
        let mut kv = Harness::<Kv>::new();
        for key in ["b/2", "a", "b/1", "b", "c", "b/3"] {
            put(&mut kv, key, &key.to_uppercase());
        }
        assert_eq!(
            kv.query(&json!({"scan": {"prefix": "b/"}})),
            Ok(json!({"items": [["b/1", "B/1"], ["b/2", "B/2"], ["b/3", "B/3"]]}))
        );
        assert_eq!(
            kv.query(&json!({"scan": {"prefix": "b", "limit": 2}})),
            Ok(json!({"items": [["b", "B"], ["b/1", "B/1"]]}))
        );
        assert_eq!(
            kv.query(&json!({"scan": {}})),
            Ok(
                json!({"items": [["a","A"],["b","B"],["b/1","B/1"],["b/2","B/2"],["b/3","B/3"],["c","C"]]})
            )
        );
        assert_eq!(
            kv.query(&json!({"scan": {"prefix": "z"}})),
            Ok(json!({"items": []}))
        );
        let error = kv
            .query(&json!({"scan": {"limit": SCAN_LIMIT_MAX + 1}}))
            .unwrap_err();
        assert!(error.contains("exceeds the maximum"), "{error}");
    }

    #[test]
    fn scan_defaults_to_a_bounded_page() {
        let mut kv = Harness::<Kv>::new();
        for number in 0..SCAN_LIMIT_DEFAULT + 5 {
            put(&mut kv, &format!("{number:05}"), "x");
        }
        let page = kv.query(&json!({"scan": {}})).unwrap();
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(SCAN_LIMIT_DEFAULT)
        );
    }

    #[test]
    fn malformed_commands_are_rejected_without_change() {
        let mut kv = Harness::<Kv>::new();
        put(&mut kv, "a", "1");
        let bad: [&[u8]; 6] = [
            b"{\"put\":{\"key\":\"a\"}}",
            b"{\"put\":{\"key\":1,\"value\":\"x\"}}",
            b"{\"put\":{\"key\":\"a\",\"value\":\"x\",\"extra\":1}}",
            b"{\"drop\":{}}",
            b"[1,2",
            b"",
        ];
        for command in bad {
            let error = kv.apply_raw(command).unwrap_err();
            assert!(error.starts_with("malformed command"), "{error}");
        }
        assert!(
            kv.query(&json!({"get": {}}))
                .unwrap_err()
                .starts_with("malformed query")
        );
        assert_eq!(
            kv.query(&json!({"get": {"key": "a"}})),
            Ok(json!({"value": "1"}))
        );
    }

    #[test]
    fn snapshot_is_canonical_and_roundtrips() {
        let mut first = Harness::<Kv>::new();
        let mut second = Harness::<Kv>::new();
        for (key, value) in [("b", "2"), ("a", "1"), ("c", "3")] {
            put(&mut first, key, value);
        }
        for (key, value) in [("c", "3"), ("a", "1"), ("x", "0"), ("b", "2")] {
            put(&mut second, key, value);
        }
        second.apply(&json!({"delete": {"key": "x"}})).unwrap();
        assert_eq!(
            first.snapshot(),
            second.snapshot(),
            "equal states, equal bytes"
        );
        assert_eq!(
            first.snapshot(),
            br#"{"version":1,"entries":[["a","1"],["b","2"],["c","3"]]}"#
        );

        let restored = first.assert_snapshot_roundtrip_with_queries(&[
            json!({"get": {"key": "b"}}),
            json!({"scan": {"prefix": ""}}),
        ]);
        assert_eq!(&restored, first.machine());
    }

    #[test]
    fn restore_rejects_foreign_snapshots() {
        let mut kv = Harness::<Kv>::new();
        let cases: [(&[u8], &str); 6] = [
            (
                br#"{"version":2,"entries":[]}"#,
                "snapshot version 2 is newer than this plugin understands",
            ),
            // A real kv_v2 snapshot: its entries do not parse as v1 pairs, so
            // the version must be checked before them.
            (
                br#"{"version":2,"entries":[["a","1",3]]}"#,
                "snapshot version 2 is newer than this plugin understands",
            ),
            (
                br#"{"version":0,"entries":[]}"#,
                "unsupported kv snapshot version 0",
            ),
            (
                br#"{"version":1,"entries":[["b","1"],["a","2"]]}"#,
                "not strictly ascending",
            ),
            (
                br#"{"version":1,"entries":[["a","1"],["a","2"]]}"#,
                "not strictly ascending",
            ),
            (b"{", "malformed kv snapshot"),
        ];
        for (snapshot, expected) in cases {
            let error = kv.restore(snapshot).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        assert_eq!(kv.restore(br#"{"version":1,"entries":[]}"#), Ok(()));
    }

    #[test]
    fn plugin_version_names_this_build() {
        let kv = Harness::<Kv>::new();
        assert_eq!(kv.query(&"plugin_version"), Ok(json!("kv/1")));
    }
}
