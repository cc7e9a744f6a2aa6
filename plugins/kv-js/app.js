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
// Error messages (err results) are worded differently from the Rust plugin's.

const SCAN_LIMIT_DEFAULT = 100;
const SCAN_LIMIT_MAX = 1000;
const SNAPSHOT_VERSION = 1;
const PLUGIN_VERSION = "kv-js/1";

// The whole state: key -> value.
const entries = new Map();

const encoder = new TextEncoder();
// fatal: bytes that are not UTF-8 are a malformed request, as in Rust.
const decoder = new TextDecoder("utf-8", { fatal: true });

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

function decode(bytes, what) {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (error) {
    throw `malformed ${what}: ${error.message}`;
  }
}

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// The [name, body] of an externally tagged enum value, as serde reads it:
// a bare string for a variant without fields, else a one-field object.
function oneVariant(request, what, allowed) {
  if (typeof request === "string" && allowed[request] === null) {
    return [request, null];
  }
  if (!isObject(request) || Object.keys(request).length !== 1) {
    throw `malformed ${what}: expected an object with one field`;
  }
  const [name, body] = Object.entries(request)[0];
  const fields = Object.hasOwn(allowed, name) ? allowed[name] : null;
  if (fields === null || !isObject(body)) {
    throw `malformed ${what}: unknown variant \`${name}\``;
  }
  for (const [field, required] of Object.entries(fields)) {
    if (required && !Object.hasOwn(body, field)) {
      throw `malformed ${what}: missing field \`${field}\``;
    }
  }
  for (const [field, value] of Object.entries(body)) {
    if (!Object.hasOwn(fields, field)) {
      throw `malformed ${what}: unknown field \`${field}\``;
    }
    if (field === "limit") {
      if (value !== null && !(Number.isInteger(value) && value >= 0)) {
        throw `malformed ${what}: \`limit\` must be a non-negative integer`;
      }
    } else if (!(typeof value === "string" || (value === null && field === "expected"))) {
      throw `malformed ${what}: \`${field}\` must be a string`;
    }
  }
  return [name, body];
}

// Fields of each variant: true if required. null: a variant without fields.
const COMMANDS = {
  put: { key: true, value: true },
  delete: { key: true },
  cas: { key: true, expected: false, value: true },
};
const QUERIES = {
  get: { key: true },
  scan: { prefix: false, limit: false },
  plugin_version: null,
};

function current(key) {
  return entries.has(key) ? entries.get(key) : null;
}

export function apply(entry, command) {
  const [name, body] = oneVariant(decode(command, "command"), "command", COMMANDS);
  const key = body.key;
  const prev = current(key);
  if (name === "put") {
    entries.set(key, body.value);
    return encode({ prev });
  }
  if (name === "delete") {
    entries.delete(key);
    return encode({ prev });
  }
  const expected = Object.hasOwn(body, "expected") ? body.expected : null;
  const ok = prev === expected;
  if (ok) entries.set(key, body.value);
  return encode({ ok, current: current(key) });
}

export function query(request) {
  const [name, body] = oneVariant(decode(request, "query"), "query", QUERIES);
  if (name === "plugin_version") return encode(PLUGIN_VERSION);
  if (name === "get") return encode({ value: current(body.key) });
  const limit = body.limit ?? SCAN_LIMIT_DEFAULT;
  if (limit > SCAN_LIMIT_MAX) {
    throw `scan limit ${limit} exceeds the maximum ${SCAN_LIMIT_MAX}`;
  }
  const prefix = body.prefix ?? "";
  const items = sortedKeys()
    .filter((key) => key.startsWith(prefix))
    .slice(0, limit)
    .map((key) => [key, entries.get(key)]);
  return encode({ items });
}

export function snapshot() {
  const pairs = sortedKeys().map((key) => [key, entries.get(key)]);
  return encode({ version: SNAPSHOT_VERSION, entries: pairs });
}

export function restore(bytes) {
  const data = decode(bytes, "kv snapshot");
  if (!isObject(data) || !Number.isInteger(data.version)) {
    throw "malformed kv snapshot: no version";
  }
  if (data.version > SNAPSHOT_VERSION) {
    throw `snapshot version ${data.version} is newer than this plugin understands`;
  }
  if (data.version !== SNAPSHOT_VERSION) {
    throw `unsupported kv snapshot version ${data.version}`;
  }
  if (!Array.isArray(data.entries)) {
    throw "malformed kv snapshot: no entries";
  }
  const restored = new Map();
  let previous = null;
  for (const pair of data.entries) {
    const isPair =
      Array.isArray(pair) && pair.length === 2 && pair.every((s) => typeof s === "string");
    if (!isPair) {
      throw "malformed kv snapshot: an entry is not a [key, value] pair";
    }
    if (previous !== null && compareKeys(pair[0], previous) <= 0) {
      throw `kv snapshot keys not strictly ascending at ${JSON.stringify(pair[0])}`;
    }
    previous = pair[0];
    restored.set(pair[0], pair[1]);
  }
  entries.clear();
  for (const [key, value] of restored) entries.set(key, value);
}
