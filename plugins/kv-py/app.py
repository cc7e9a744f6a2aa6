"""The kv plugin written in Python: the same commands, responses and snapshot
format as the Rust kv plugin (plugins/kv/src/lib.rs), so either can restore the
other's snapshots. Built into a clusterhost:fsm component by componentize-py
(`cargo xtask plugins`); the bindings (`wit_world`) come from wit/.

Commands: {"put":{"key":K,"value":V}} -> {"prev":V|null};
{"delete":{"key":K}} -> {"prev":V|null};
{"cas":{"key":K,"expected":V|null,"value":V}} -> {"ok":bool,"current":V|null}.
Queries: {"get":{"key":K}} -> {"value":V|null};
{"scan":{"prefix":P,"limit":N}} -> {"items":[[K,V],...]}; "plugin_version" -> "kv-py/1".
Snapshot: {"version":1,"entries":[[K,V],...]}, keys strictly ascending.
Accepted and refused inputs, and every error message, are the Rust plugin's
to the byte: serde_reader reads JSON as serde_json does (see there why
Python's json module cannot), behind a fast path for the common
well-formed commands.
"""

import json
import re

import wit_world
from componentize_py_types import Err

from rust_format import debug_str
from serde_reader import SerdeError, read
from serde_types import STRING, U32, UNIT, USIZE, Enum, Field, Option, Struct, Tuple, Vec

SCAN_LIMIT_DEFAULT = 100
SCAN_LIMIT_MAX = 1000
SNAPSHOT_VERSION = 1
PLUGIN_VERSION = "kv-py/1"

# The whole state: key -> value. Python dicts keep insertion order, so every
# output that lists keys sorts them first (code-point order, which is the
# UTF-8 byte order the Rust plugin's BTreeMap uses).
entries = {}


def none():
    return None


def empty():
    return ""


# The Rust plugin's message types (plugins/kv/src/lib.rs), as serde derives
# them: externally tagged, snake_case, unknown fields refused.
COMMAND = Enum(
    [
        ("put", Struct("struct variant Command::Put", [Field("key", STRING), Field("value", STRING)], True)),
        ("delete", Struct("struct variant Command::Delete", [Field("key", STRING)], True)),
        (
            "cas",
            Struct(
                "struct variant Command::Cas",
                [Field("key", STRING), Field("expected", Option(STRING), none), Field("value", STRING)],
                True,
            ),
        ),
    ]
)
QUERY = Enum(
    [
        ("get", Struct("struct variant Query::Get", [Field("key", STRING)], True)),
        (
            "scan",
            Struct(
                "struct variant Query::Scan",
                [Field("prefix", STRING, empty), Field("limit", Option(USIZE), none)],
                True,
            ),
        ),
        ("plugin_version", UNIT),
    ]
)
# The SDK's snapshot header (read first) and kv's version-1 snapshot.
SNAPSHOT_HEADER = Struct("struct SnapshotHeader", [Field("version", U32)], False)
SNAPSHOT = Struct(
    "struct Snapshot",
    [Field("version", U32), Field("entries", Vec(Tuple([STRING, STRING])))],
    False,
)

# The fast path: the compact form clients send, with strings that need no
# unescaping. Anything else (or bytes that are not UTF-8) takes the full
# reader, which gives the same result for these.
PLAIN = rb'"([^"\\\x00-\x1f]*)"'
FAST_PUT = re.compile(rb'\{"put":\{"key":' + PLAIN + rb',"value":' + PLAIN + rb"\}\}\Z")
FAST_DELETE = re.compile(rb'\{"delete":\{"key":' + PLAIN + rb"\}\}\Z")
FAST_GET = re.compile(rb'\{"get":\{"key":' + PLAIN + rb"\}\}\Z")


def fast(pattern, data):
    match = pattern.match(data)
    if match is None:
        return None
    try:
        return [group.decode("utf-8") for group in match.groups()]
    except UnicodeDecodeError:
        return None


def decode(data, kind, what):
    try:
        return read(data, kind)
    except SerdeError as error:
        raise Err(f"malformed {what}: {error}")


json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(value):
    # serde_json's compact form: no spaces, non-ASCII as is.
    return json_encoder.encode(value).encode("utf-8")


class WitWorld(wit_world.WitWorld):
    def apply(self, entry, command):
        put = fast(FAST_PUT, command)
        if put is not None:
            return self.put(*put)
        delete = fast(FAST_DELETE, command)
        if delete is not None:
            return encode({"prev": entries.pop(delete[0], None)})
        name, body = decode(command, COMMAND, "command")
        key = body["key"]
        if name == "put":
            return self.put(key, body["value"])
        if name == "delete":
            return encode({"prev": entries.pop(key, None)})
        ok = entries.get(key) == body["expected"]
        if ok:
            entries[key] = body["value"]
        return encode({"ok": ok, "current": entries.get(key)})

    def put(self, key, value):
        prev = entries.get(key)
        entries[key] = value
        return encode({"prev": prev})

    def query(self, request):
        get = fast(FAST_GET, request)
        if get is not None:
            return encode({"value": entries.get(get[0])})
        name, body = decode(request, QUERY, "query")
        if name == "plugin_version":
            return encode(PLUGIN_VERSION)
        if name == "get":
            return encode({"value": entries.get(body["key"])})
        limit = SCAN_LIMIT_DEFAULT if body["limit"] is None else body["limit"]
        if limit > SCAN_LIMIT_MAX:
            raise Err(f"scan limit {limit} exceeds the maximum {SCAN_LIMIT_MAX}")
        prefix = body["prefix"]
        keys = sorted(key for key in entries if key.startswith(prefix))[:limit]
        return encode({"items": [[key, entries[key]] for key in keys]})

    def snapshot(self):
        keys = sorted(entries)
        return encode({"version": SNAPSHOT_VERSION, "entries": [[key, entries[key]] for key in keys]})

    def restore(self, snapshot):
        # The SDK's order: the version alone first, then the whole layout.
        version = decode(snapshot, SNAPSHOT_HEADER, "kv snapshot")["version"]
        if version > SNAPSHOT_VERSION:
            raise Err(f"snapshot version {version} is newer than this plugin understands")
        if version != SNAPSHOT_VERSION:
            raise Err(f"unsupported kv snapshot version {version}")
        pairs = decode(snapshot, SNAPSHOT, "kv snapshot")["entries"]
        for previous, pair in zip(pairs, pairs[1:]):
            if previous[0] >= pair[0]:
                raise Err(f"kv snapshot keys not strictly ascending at {debug_str(pair[0])}")
        entries.clear()
        entries.update(pairs)
