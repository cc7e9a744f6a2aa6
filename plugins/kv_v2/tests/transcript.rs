//! Goal: pin kv_v2's whole wire format byte for byte — every response, error
//! string and snapshot for a script that touches every command, query and
//! restore path, including restoring a snapshot kv v1 wrote — so
//! refactorings cannot change what clients and the host see.

use clusterhost_sdk::testing::Harness;
use kv_v2::Kv;

#[test]
fn wire_format_is_unchanged() {
    Harness::<Kv>::new().assert_transcript(TRANSCRIPT);
}

const TRANSCRIPT: &str = r#"
# Writes count versions per key.
> apply {"put":{"key":"a","value":"1"}}
ok {"prev":null,"version":1}
> apply {"put":{"key":"a","value":"2"}}
ok {"prev":"1","version":2}
> apply {"put":{"key":"a","value":"2"}}
ok {"prev":"2","version":3}
> apply {"put":{"key":"b/1","value":"x"}}
ok {"prev":null,"version":1}
> apply {"put":{"key":"b/2","value":"y"}}
ok {"prev":null,"version":1}
> apply {"put":{"key":"b","value":""}}
ok {"prev":null,"version":1}
> apply {"put":{"key":"k\"ü","value":"line\nbreak"}}
ok {"prev":null,"version":1}
> query {"get":{"key":"a"}}
ok {"value":"2","version":3}
> query {"get":{"key":"missing"}}
ok {"value":null,"version":null}
> query {"version":{"key":"a"}}
ok {"version":3}
> query {"version":{"key":"missing"}}
ok {"version":null}
> query {"get":{"key":"k\"ü"}}
ok {"value":"line\nbreak","version":1}
> apply {"delete":{"key":"a"}}
ok {"prev":"2"}
> apply {"delete":{"key":"a"}}
ok {"prev":null}
> query {"get":{"key":"a"}}
ok {"value":null,"version":null}
> query {"version":{"key":"a"}}
ok {"version":null}
> apply {"put":{"key":"a","value":"again"}}
ok {"prev":null,"version":1}

# Compare-and-swap counts only successful writes.
> apply {"cas":{"key":"c","expected":null,"value":"1"}}
ok {"ok":true,"current":"1","version":1}
> apply {"cas":{"key":"c","expected":null,"value":"2"}}
ok {"ok":false,"current":"1","version":1}
> apply {"cas":{"key":"c","expected":"0","value":"2"}}
ok {"ok":false,"current":"1","version":1}
> apply {"cas":{"key":"c","expected":"1","value":"2"}}
ok {"ok":true,"current":"2","version":2}
> apply {"cas":{"key":"d","value":"new"}}
ok {"ok":true,"current":"new","version":1}
> apply {"cas":{"key":"gone","expected":"x","value":"y"}}
ok {"ok":false,"current":null,"version":null}

# Scans answer exactly as v1 (no versions).
> query {"scan":{}}
ok {"items":[["a","again"],["b",""],["b/1","x"],["b/2","y"],["c","2"],["d","new"],["k\"ü","line\nbreak"]]}
> query {"scan":{"prefix":""}}
ok {"items":[["a","again"],["b",""],["b/1","x"],["b/2","y"],["c","2"],["d","new"],["k\"ü","line\nbreak"]]}
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
ok {"items":[["a","again"],["b",""],["b/1","x"],["b/2","y"],["c","2"],["d","new"],["k\"ü","line\nbreak"]]}
> query {"scan":{"limit":1001}}
err scan limit 1001 exceeds the maximum 1000
> query {"scan":{"limit":18446744073709551615}}
err scan limit 18446744073709551615 exceeds the maximum 1000
> query "plugin_version"
ok "kv/2"

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
> apply {"put":{"key":"a","value":"x","version":7}}
err malformed command: unknown field `version`, expected `key` or `value` at line 1 column 39
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
> query "version"
err malformed query: invalid type: unit variant, expected struct variant
> query {"version":{}}
err malformed query: missing field `key` at line 1 column 13
> query {"version":{"key":"a","extra":1}}
err malformed query: unknown field `extra`, expected `key` at line 1 column 29
> query {"scan":5}
err malformed query: invalid type: integer `5`, expected struct variant Query::Scan at line 1 column 9
> query {"scan":{"limit":-1}}
err malformed query: invalid value: integer `-1`, expected usize at line 1 column 19
> query {"scan":{"prefix":null}}
err malformed query: invalid type: null, expected a string at line 1 column 22
> query {"scan":{"other":1}}
err malformed query: unknown field `other`, expected `prefix` or `limit` at line 1 column 16
> query "plugin"
err malformed query: unknown variant `plugin`, expected one of `get`, `version`, `scan`, `plugin_version` at line 1 column 8
> query {"plugin_version":{}}
err malformed query: invalid type: map, expected unit at line 1 column 18

# Snapshots and restores.
> snapshot
ok {"version":2,"entries":[["a","again",1],["b","",1],["b/1","x",1],["b/2","y",1],["c","2",2],["d","new",1],["k\"ü","line\nbreak",1]]}
> restore
err malformed kv snapshot: EOF while parsing a value at line 1 column 0
> restore 5
err malformed kv snapshot: invalid type: integer `5`, expected struct SnapshotHeader at line 1 column 1
> restore []
err malformed kv snapshot: invalid length 0, expected struct SnapshotHeader with 1 element at line 1 column 2
> restore {}
err malformed kv snapshot: missing field `version` at line 1 column 2
> restore {"entries":[]}
err malformed kv snapshot: missing field `version` at line 1 column 14
> restore {"version":"1","entries":[]}
err malformed kv snapshot: invalid type: string "1", expected u32 at line 1 column 14
> restore {"version":-1,"entries":[]}
err malformed kv snapshot: invalid value: integer `-1`, expected u32 at line 1 column 13
> restore {"version":4294967296,"entries":[]}
err malformed kv snapshot: invalid value: integer `4294967296`, expected u32 at line 1 column 21
> restore {"version":0,"entries":[]}
err unsupported kv snapshot version 0
> restore {"version":3,"entries":[]}
err snapshot version 3 is newer than this plugin understands
> restore {"version":1}
err malformed kv snapshot: missing field `entries` at line 1 column 13
> restore {"version":2}
err malformed kv snapshot: missing field `entries` at line 1 column 13
> restore {"version":1,"entries":5}
err malformed kv snapshot: invalid type: integer `5`, expected a sequence at line 1 column 24
> restore {"version":2,"entries":5}
err malformed kv snapshot: invalid type: integer `5`, expected a sequence at line 1 column 24
> restore {"version":1,"entries":[["a"]]}
err malformed kv snapshot: invalid length 1, expected a tuple of size 2 at line 1 column 29
> restore {"version":1,"entries":[["a","1",3]]}
err malformed kv snapshot: trailing characters at line 1 column 34
> restore {"version":2,"entries":[["a","1"]]}
err malformed kv snapshot: invalid length 2, expected a tuple of size 3 at line 1 column 33
> restore {"version":2,"entries":[["a","1",-1]]}
err malformed kv snapshot: invalid value: integer `-1`, expected u64 at line 1 column 35
> restore {"version":1,"entries":[["b","1"],["a","2"]]}
err kv snapshot keys not strictly ascending at "a"
> restore {"version":1,"entries":[["a","1"],["a","2"]]}
err kv snapshot keys not strictly ascending at "a"
> restore {"version":2,"entries":[["b","1",1],["a","2",1]]}
err kv snapshot keys not strictly ascending at "a"
> restore {"version":2,"entries":[["a","1",1],["a","2",1]]}
err kv snapshot keys not strictly ascending at "a"
> restore {"version":2,"entries":[["a","1",0]]}
err kv snapshot key "a" has version 0
> restore {"version":2,"entries":[["a","1",1],["b","1",0],["c","1",0]]}
err kv snapshot key "b" has version 0
# Out of order and a version 0: the order is reported first.
> restore {"version":2,"entries":[["b","1",0],["a","2",0]]}
err kv snapshot keys not strictly ascending at "a"
> restore {"version":2,"entries":[]} trailing
err malformed kv snapshot: trailing characters at line 1 column 28
# A refused restore leaves the state as it was.
> snapshot
ok {"version":2,"entries":[["a","again",1],["b","",1],["b/1","x",1],["b/2","y",1],["c","2",2],["d","new",1],["k\"ü","line\nbreak",1]]}

# A snapshot kv v1 wrote: every key starts at version 1, written back as v2.
> restore {"version":1,"entries":[["b",""],["b/1","x"],["k\"ü","line\nbreak"]],"extra":true}
ok
> snapshot
ok {"version":2,"entries":[["b","",1],["b/1","x",1],["k\"ü","line\nbreak",1]]}
> query {"get":{"key":"b/1"}}
ok {"value":"x","version":1}
> query {"scan":{}}
ok {"items":[["b",""],["b/1","x"],["k\"ü","line\nbreak"]]}
> apply {"put":{"key":"b/1","value":"z"}}
ok {"prev":"x","version":2}
> snapshot
ok {"version":2,"entries":[["b","",1],["b/1","z",2],["k\"ü","line\nbreak",1]]}

# A version that would overflow is refused and changes nothing.
> restore {"version":2,"entries":[["a","1",18446744073709551615],["b","2",18446744073709551614]]}
ok
> apply {"put":{"key":"a","value":"2"}}
err version of key "a" would overflow
> apply {"cas":{"key":"a","expected":"1","value":"2"}}
err version of key "a" would overflow
> apply {"cas":{"key":"a","expected":"0","value":"2"}}
ok {"ok":false,"current":"1","version":18446744073709551615}
> apply {"put":{"key":"b","value":"3"}}
ok {"prev":"2","version":18446744073709551615}
> apply {"put":{"key":"b","value":"4"}}
err version of key "b" would overflow
> apply {"delete":{"key":"a"}}
ok {"prev":"1"}
> snapshot
ok {"version":2,"entries":[["b","3",18446744073709551615]]}
> restore {"version":2,"entries":[]}
ok
> snapshot
ok {"version":2,"entries":[]}
"#;
