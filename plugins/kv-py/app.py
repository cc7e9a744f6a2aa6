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
Error messages (err results) are worded differently from the Rust plugin's.
"""

import json

import wit_world
from componentize_py_types import Err

SCAN_LIMIT_DEFAULT = 100
SCAN_LIMIT_MAX = 1000
SNAPSHOT_VERSION = 1
PLUGIN_VERSION = "kv-py/1"

# The whole state: key -> value. Python dicts keep insertion order, so every
# output that lists keys sorts them first (code-point order, which is the
# UTF-8 byte order the Rust plugin's BTreeMap uses).
entries = {}


def encode(value):
    # serde_json's compact form: no spaces, non-ASCII as is.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode(data, what):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise Err(f"malformed {what}: {error}")


def one_variant(request, what, allowed):
    """The (name, body) of an externally tagged enum value, as serde reads it."""
    if isinstance(request, str) and request in allowed and allowed[request] is None:
        return request, None
    if not isinstance(request, dict) or len(request) != 1:
        raise Err(f"malformed {what}: expected an object with one field")
    ((name, body),) = request.items()
    if name not in allowed or allowed[name] is None or not isinstance(body, dict):
        raise Err(f"malformed {what}: unknown variant `{name}`")
    fields = allowed[name]
    for field, required in fields.items():
        if required and field not in body:
            raise Err(f"malformed {what}: missing field `{field}`")
    for field, value in body.items():
        if field not in fields:
            raise Err(f"malformed {what}: unknown field `{field}`")
        if field == "limit":
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise Err(f"malformed {what}: `limit` must be a non-negative integer")
        elif not (isinstance(value, str) or (value is None and field == "expected")):
            raise Err(f"malformed {what}: `{field}` must be a string")
    return name, body


COMMANDS = {
    "put": {"key": True, "value": True},
    "delete": {"key": True},
    "cas": {"key": True, "expected": False, "value": True},
}
QUERIES = {
    "get": {"key": True},
    "scan": {"prefix": False, "limit": False},
    "plugin_version": None,
}


class WitWorld(wit_world.WitWorld):
    def apply(self, entry, command):
        name, body = one_variant(decode(command, "command"), "command", COMMANDS)
        key = body["key"]
        if name == "put":
            prev = entries.get(key)
            entries[key] = body["value"]
            return encode({"prev": prev})
        if name == "delete":
            return encode({"prev": entries.pop(key, None)})
        ok = entries.get(key) == body.get("expected")
        if ok:
            entries[key] = body["value"]
        return encode({"ok": ok, "current": entries.get(key)})

    def query(self, request):
        name, body = one_variant(decode(request, "query"), "query", QUERIES)
        if name == "plugin_version":
            return encode(PLUGIN_VERSION)
        if name == "get":
            return encode({"value": entries.get(body["key"])})
        limit = body.get("limit")
        limit = SCAN_LIMIT_DEFAULT if limit is None else limit
        if limit > SCAN_LIMIT_MAX:
            raise Err(f"scan limit {limit} exceeds the maximum {SCAN_LIMIT_MAX}")
        prefix = body.get("prefix") or ""
        keys = sorted(key for key in entries if key.startswith(prefix))[:limit]
        return encode({"items": [[key, entries[key]] for key in keys]})

    def snapshot(self):
        keys = sorted(entries)
        return encode({"version": SNAPSHOT_VERSION, "entries": [[key, entries[key]] for key in keys]})

    def restore(self, snapshot):
        data = decode(snapshot, "kv snapshot")
        if not isinstance(data, dict) or not isinstance(data.get("version"), int):
            raise Err("malformed kv snapshot: no version")
        if data["version"] != SNAPSHOT_VERSION:
            raise Err(f"unsupported kv snapshot version {data['version']}")
        restored = {}
        previous = None
        for pair in data.get("entries", []):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
                raise Err("malformed kv snapshot: an entry is not a [key, value] pair")
            if previous is not None and pair[0] <= previous:
                raise Err(f"kv snapshot keys not strictly ascending at {json.dumps(pair[0])}")
            previous = pair[0]
            restored[pair[0]] = pair[1]
        entries.clear()
        entries.update(restored)
