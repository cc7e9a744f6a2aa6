//! Goal: pin kv's whole wire format byte for byte — every response, error
//! string and snapshot for a script that touches every command, query and
//! restore path — so refactorings cannot change what clients and the host see.

use clusterhost_sdk::testing::Harness;
use kv::Kv;

#[test]
fn wire_format_is_unchanged() {
    Harness::<Kv>::new().assert_transcript(TRANSCRIPT);
}

const TRANSCRIPT: &str = r#"
# Writes and reads.
> apply {"put":{"key":"a","value":"1"}}
ok {"prev":null}
> apply {"put":{"key":"a","value":"2"}}
ok {"prev":"1"}
> apply {"put":{"key":"b/1","value":"x"}}
ok {"prev":null}
> apply {"put":{"key":"b/2","value":"y"}}
ok {"prev":null}
> apply {"put":{"key":"b","value":""}}
ok {"prev":null}
> apply {"put":{"key":"k\"ü","value":"line\nbreak"}}
ok {"prev":null}
> query {"get":{"key":"a"}}
ok {"value":"2"}
> query {"get":{"key":"missing"}}
ok {"value":null}
> query {"get":{"key":"k\"ü"}}
ok {"value":"line\nbreak"}
> apply {"delete":{"key":"a"}}
ok {"prev":"2"}
> apply {"delete":{"key":"a"}}
ok {"prev":null}
> query {"get":{"key":"a"}}
ok {"value":null}

# Compare-and-swap.
> apply {"cas":{"key":"c","expected":null,"value":"1"}}
ok {"ok":true,"current":"1"}
> apply {"cas":{"key":"c","expected":null,"value":"2"}}
ok {"ok":false,"current":"1"}
> apply {"cas":{"key":"c","expected":"0","value":"2"}}
ok {"ok":false,"current":"1"}
> apply {"cas":{"key":"c","expected":"1","value":"2"}}
ok {"ok":true,"current":"2"}
> apply {"cas":{"key":"d","value":"new"}}
ok {"ok":true,"current":"new"}
> apply {"cas":{"key":"gone","expected":"x","value":"y"}}
ok {"ok":false,"current":null}

# Scans: key order, prefix, limits.
> query {"scan":{}}
ok {"items":[["b",""],["b/1","x"],["b/2","y"],["c","2"],["d","new"],["k\"ü","line\nbreak"]]}
> query {"scan":{"prefix":""}}
ok {"items":[["b",""],["b/1","x"],["b/2","y"],["c","2"],["d","new"],["k\"ü","line\nbreak"]]}
> query {"scan":{"prefix":"b"}}
ok {"items":[["b",""],["b/1","x"],["b/2","y"]]}
> query {"scan":{"prefix":"b/"}}
ok {"items":[["b/1","x"],["b/2","y"]]}
> query {"scan":{"prefix":"b","limit":2}}
ok {"items":[["b",""],["b/1","x"]]}
> query {"scan":{"prefix":"b","limit":0}}
ok {"items":[]}
> query {"scan":{"prefix":"zzz"}}
ok {"items":[]}
> query {"scan":{"prefix":"k\""}}
ok {"items":[["k\"ü","line\nbreak"]]}
> query {"scan":{"limit":1000}}
ok {"items":[["b",""],["b/1","x"],["b/2","y"],["c","2"],["d","new"],["k\"ü","line\nbreak"]]}
> query {"scan":{"limit":1001}}
err scan limit 1001 exceeds the maximum 1000
> query {"scan":{"limit":18446744073709551615}}
err scan limit 18446744073709551615 exceeds the maximum 1000
> query "plugin_version"
ok "kv/1"

# Malformed commands change nothing.
> apply
err malformed command: EOF while parsing a value at line 1 column 0
> apply 5
err malformed command: expected value at line 1 column 1
> apply "put"
err malformed command: invalid type: unit variant, expected struct variant
> apply {"put":5}
err malformed command: invalid type: integer `5`, expected struct variant Command::Put at line 1 column 8
> apply {"put":{"key":"a"}}
err malformed command: missing field `value` at line 1 column 18
> apply {"put":{"key":1,"value":"x"}}
err malformed command: invalid type: integer `1`, expected a string at line 1 column 15
> apply {"put":{"key":"a","value":"x","extra":1}}
err malformed command: unknown field `extra`, expected `key` or `value` at line 1 column 37
> apply {"put":{"key":"a","value":"x"},"delete":{"key":"a"}}
err malformed command: expected value at line 1 column 30
> apply {"drop":{}}
err malformed command: unknown variant `drop`, expected one of `put`, `delete`, `cas` at line 1 column 7
> apply {"cas":{"key":"a","expected":5,"value":"x"}}
err malformed command: invalid type: integer `5`, expected a string at line 1 column 30
> apply {"delete":{"key":null}}
err malformed command: invalid type: null, expected a string at line 1 column 21
> apply [1,2
err malformed command: expected value at line 1 column 1
> apply {"put":{"key":"a","value":"x"}} trailing
err malformed command: trailing characters at line 1 column 33

# Malformed queries.
> query
err malformed query: EOF while parsing a value at line 1 column 0
> query "get"
err malformed query: invalid type: unit variant, expected struct variant
> query {"get":{}}
err malformed query: missing field `key` at line 1 column 9
> query {"scan":5}
err malformed query: invalid type: integer `5`, expected struct variant Query::Scan at line 1 column 9
> query {"scan":{"limit":-1}}
err malformed query: invalid value: integer `-1`, expected usize at line 1 column 19
> query {"scan":{"prefix":null}}
err malformed query: invalid type: null, expected a string at line 1 column 22
> query {"scan":{"other":1}}
err malformed query: unknown field `other`, expected `prefix` or `limit` at line 1 column 16
> query {"version":{"key":"b"}}
err malformed query: unknown variant `version`, expected one of `get`, `scan`, `plugin_version` at line 1 column 10
> query "plugin"
err malformed query: unknown variant `plugin`, expected one of `get`, `scan`, `plugin_version` at line 1 column 8
> query {"plugin_version":{}}
err malformed query: invalid type: map, expected unit at line 1 column 18

# Snapshots and restores.
> snapshot
ok {"version":1,"entries":[["b",""],["b/1","x"],["b/2","y"],["c","2"],["d","new"],["k\"ü","line\nbreak"]]}
> restore
err malformed kv snapshot: EOF while parsing a value at line 1 column 0
> restore 5
err malformed kv snapshot: invalid type: integer `5`, expected struct SnapshotHeader at line 1 column 1
> restore []
err malformed kv snapshot: invalid length 0, expected struct SnapshotHeader with 1 element at line 1 column 2
> restore {}
err malformed kv snapshot: missing field `version` at line 1 column 2
> restore {"version":"1","entries":[]}
err malformed kv snapshot: invalid type: string "1", expected u32 at line 1 column 14
> restore {"version":-1,"entries":[]}
err malformed kv snapshot: invalid value: integer `-1`, expected u32 at line 1 column 13
> restore {"version":4294967296,"entries":[]}
err malformed kv snapshot: invalid value: integer `4294967296`, expected u32 at line 1 column 21
> restore {"version":0,"entries":[]}
err unsupported kv snapshot version 0
> restore {"version":2,"entries":[["a","1",3]]}
err snapshot version 2 is newer than this plugin understands
> restore {"version":3,"entries":[]}
err snapshot version 3 is newer than this plugin understands
> restore {"version":1}
err malformed kv snapshot: missing field `entries` at line 1 column 13
> restore {"version":1,"entries":5}
err malformed kv snapshot: invalid type: integer `5`, expected a sequence at line 1 column 24
> restore {"version":1,"entries":[["a"]]}
err malformed kv snapshot: invalid length 1, expected a tuple of size 2 at line 1 column 29
> restore {"version":1,"entries":[["a","1",3]]}
err malformed kv snapshot: trailing characters at line 1 column 34
> restore {"version":1,"entries":[["b","1"],["a","2"]]}
err kv snapshot keys not strictly ascending at "a"
> restore {"version":1,"entries":[["a","1"],["a","2"]]}
err kv snapshot keys not strictly ascending at "a"
> restore {"version":1,"entries":[]} trailing
err malformed kv snapshot: trailing characters at line 1 column 28
# A refused restore leaves the state as it was.
> snapshot
ok {"version":1,"entries":[["b",""],["b/1","x"],["b/2","y"],["c","2"],["d","new"],["k\"ü","line\nbreak"]]}
> restore {"version":1,"entries":[["x","1"],["y","2"]],"extra":true}
ok
> snapshot
ok {"version":1,"entries":[["x","1"],["y","2"]]}
> query {"scan":{}}
ok {"items":[["x","1"],["y","2"]]}
> apply {"put":{"key":"x","value":"3"}}
ok {"prev":"1"}
> snapshot
ok {"version":1,"entries":[["x","3"],["y","2"]]}
> restore {"version":1,"entries":[]}
ok
> snapshot
ok {"version":1,"entries":[]}
> query {"scan":{}}
ok {"items":[]}
"#;
