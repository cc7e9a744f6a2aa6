// The kv plugin written in JavaScript: the same commands, responses and
// snapshot format as the Rust kv plugin (plugins/kv/src/lib.rs), so either can
// restore the other's snapshots. Built into a clusterhost:fsm component by
// componentize-js (`cargo xtask plugins`) against wit/; the module's exports
// are the world's four functions. An `err` result is a thrown string.
//
// Commands: {"put":{"key":K,"value":V}} -> {"prev":V|null};
// {"delete":{"key":K}} -> {"prev":V|null};
// {"cas":{"key":K,"expected":V|null,"value":V}} -> {"ok":bool,"current":V|null}.
// Queries: {"get":{"key":K}} -> {"value":V|null};
// {"scan":{"prefix":P,"limit":N}} -> {"items":[[K,V],...]}; "plugin_version" -> "kv-js/1".
// Snapshot: {"version":1,"entries":[[K,V],...]}, keys strictly ascending.
// Accepted and refused inputs, and every error message, are the Rust
// plugin's to the byte: serde_reader.js reads JSON as serde_json does (see
// there why JSON.parse cannot), behind a fast path for the common
// well-formed commands. `cargo xtask plugins` joins rust_format.js,
// serde_reader.js, serde_types.js, serde_derive.js and this file into one
// module, in that order.

const SCAN_LIMIT_DEFAULT = 100;
const SCAN_LIMIT_MAX = 1000;
const SNAPSHOT_VERSION = 1;
const PLUGIN_VERSION = "kv-js/1";

// The whole state: key -> value.
const entries = new Map();

const encoder = new TextEncoder();
// fatal: the fast path leaves bytes that are not UTF-8 to the full reader;
// ignoreBOM: a leading U+FEFF is kept, as serde_json keeps (or refuses) it.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// JavaScript compares strings by UTF-16 code unit; the Rust plugin orders keys
// by UTF-8 bytes, which is code point order. The two differ only when a
// surrogate (a character above U+FFFF) meets a unit in U+E000..U+FFFF, so
// those two ranges swap places before comparing.
function codePointRank(unit) {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

function compareKeys(a, b) {
  const shorter = Math.min(a.length, b.length);
  for (let i = 0; i < shorter; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function sortedKeys() {
  return [...entries.keys()].sort(compareKeys);
}

// JSON.stringify writes serde_json's compact form: no spaces, non-ASCII as
// is, control characters escaped the same way.
function encode(value) {
  return encoder.encode(JSON.stringify(value));
}

const none = () => null;
const empty = () => "";
const field = (name, kind, defaultValue) => ({ name, kind, default: defaultValue });

// The Rust plugin's message types (plugins/kv/src/lib.rs), as serde derives
// them: externally tagged, snake_case, unknown fields refused.
const COMMAND = enumOf([
  ["put", struct("struct variant Command::Put", [field("key", STRING), field("value", STRING)], true)],
  ["delete", struct("struct variant Command::Delete", [field("key", STRING)], true)],
  [
    "cas",
    struct(
      "struct variant Command::Cas",
      [field("key", STRING), field("expected", option(STRING), none), field("value", STRING)],
      true,
    ),
  ],
]);
const QUERY = enumOf([
  ["get", struct("struct variant Query::Get", [field("key", STRING)], true)],
  [
    "scan",
    struct("struct variant Query::Scan", [field("prefix", STRING, empty), field("limit", option(USIZE), none)], true),
  ],
  ["plugin_version", UNIT],
]);
// The SDK's snapshot header (read first) and kv's version-1 snapshot.
const SNAPSHOT_HEADER = struct("struct SnapshotHeader", [field("version", U32)], false);
const SNAPSHOT = struct(
  "struct Snapshot",
  [field("version", U32), field("entries", vec(tuple([STRING, STRING])))],
  false,
);

// The fast path: the compact form clients send, with strings that need no
// unescaping, matched by the engine's own UTF-8 decoder and regular
// expressions (interpreted JavaScript is slow). Anything else (or bytes that
// are not UTF-8) gets null and takes the full reader, which gives the same
// result for these.
const PLAIN = '"([^"\\\\\\u0000-\\u001f]*)"';
const FAST_PUT = new RegExp(`^\\{"put":\\{"key":${PLAIN},"value":${PLAIN}\\}\\}$`);
const FAST_DELETE = new RegExp(`^\\{"delete":\\{"key":${PLAIN}\\}\\}$`);
const FAST_GET = new RegExp(`^\\{"get":\\{"key":${PLAIN}\\}\\}$`);

function fast(pattern, bytes) {
  let text;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    return null;
  }
  const match = pattern.exec(text);
  return match === null ? null : match.slice(1);
}

function decode(bytes, kind, what) {
  try {
    return serdeRead(bytes, kind);
  } catch (error) {
    if (error instanceof SerdeError) throw `malformed ${what}: ${error}`;
    throw error;
  }
}

function current(key) {
  return entries.has(key) ? entries.get(key) : null;
}

function put(key, value) {
  const prev = current(key);
  entries.set(key, value);
  return encode({ prev });
}

function remove(key) {
  const prev = current(key);
  entries.delete(key);
  return encode({ prev });
}

export function apply(entry, command) {
  const fastPut = fast(FAST_PUT, command);
  if (fastPut !== null) return put(...fastPut);
  const fastDelete = fast(FAST_DELETE, command);
  if (fastDelete !== null) return remove(fastDelete[0]);
  const [name, body] = decode(command, COMMAND, "command");
  if (name === "put") return put(body.key, body.value);
  if (name === "delete") return remove(body.key);
  const ok = current(body.key) === body.expected;
  if (ok) entries.set(body.key, body.value);
  return encode({ ok, current: current(body.key) });
}

export function query(request) {
  const fastGet = fast(FAST_GET, request);
  if (fastGet !== null) return encode({ value: current(fastGet[0]) });
  const [name, body] = decode(request, QUERY, "query");
  if (name === "plugin_version") return encode(PLUGIN_VERSION);
  if (name === "get") return encode({ value: current(body.key) });
  const limit = body.limit ?? SCAN_LIMIT_DEFAULT;
  if (limit > SCAN_LIMIT_MAX) {
    throw `scan limit ${limit} exceeds the maximum ${SCAN_LIMIT_MAX}`;
  }
  const items = sortedKeys()
    .filter((key) => key.startsWith(body.prefix))
    .slice(0, limit)
    .map((key) => [key, entries.get(key)]);
  return encode({ items });
}

export function snapshot() {
  const pairs = sortedKeys().map((key) => [key, entries.get(key)]);
  return encode({ version: SNAPSHOT_VERSION, entries: pairs });
}

export function restore(bytes) {
  // The SDK's order: the version alone first, then the whole layout.
  const { version } = decode(bytes, SNAPSHOT_HEADER, "kv snapshot");
  if (version > SNAPSHOT_VERSION) {
    throw `snapshot version ${version} is newer than this plugin understands`;
  }
  if (version !== SNAPSHOT_VERSION) {
    throw `unsupported kv snapshot version ${version}`;
  }
  const pairs = decode(bytes, SNAPSHOT, "kv snapshot").entries;
  for (let i = 1; i < pairs.length; i++) {
    if (compareKeys(pairs[i - 1][0], pairs[i][0]) >= 0) {
      throw `kv snapshot keys not strictly ascending at ${debugStr(pairs[i][0])}`;
    }
  }
  entries.clear();
  for (const [key, value] of pairs) entries.set(key, value);
}
