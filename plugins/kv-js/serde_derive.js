// What serde's derive makes of a struct, a struct variant and an externally
// tagged enum, as serde_types.js reads them (the port of Struct and Enum in
// plugins/kv-py/serde_types.py; keep them in step).

// A derived struct (or struct variant): `fields` are
// { name, kind, default } with `default` a function or undefined.
function struct(expecting, fields, denyUnknown) {
  const byName = new Map(fields.map((field) => [field.name, field]));
  const names = fields.map((field) => field.name);
  const count = fields.length;
  const seqExpecting = `${expecting} with ${count} element${count === 1 ? "" : "s"}`;

  function visitMap(reader) {
    const values = new Map();
    let first = true;
    while (reader.hasNextKey(first)) {
      first = false;
      const name = reader.mapKey();
      const field = byName.get(name);
      if (field === undefined) {
        if (denyUnknown) throw new SerdeError(`unknown field \`${name}\`, expected ${oneOf(names)}`);
        reader.colon();
        reader.ignoreValue();
        continue;
      }
      if (values.has(name)) throw new SerdeError(`duplicate field \`${name}\``);
      reader.colon();
      values.set(name, field.kind.deserialize(reader));
    }
    const result = {};
    for (const field of fields) {
      if (values.has(field.name)) result[field.name] = values.get(field.name);
      else if (field.default !== undefined) result[field.name] = field.default();
      else if (field.kind.isOption) result[field.name] = null;
      else throw new SerdeError(`missing field \`${field.name}\``);
    }
    return result;
  }

  function visitSeq(nextElement) {
    const result = {};
    fields.forEach((field, index) => {
      const [present, value] = nextElement(field.kind);
      if (present) result[field.name] = value;
      else if (field.default !== undefined) result[field.name] = field.default();
      else throw new SerdeError(`invalid length ${index}, expected ${seqExpecting}`);
    });
    return result;
  }

  return {
    expecting,
    isStruct: true,
    deserialize(reader) {
      const byte = firstByte(reader);
      if (byte === OPEN_BRACKET) return sequence(reader, visitSeq);
      if (byte !== OPEN_BRACE) throw reader.invalidType(expecting);
      reader.index += 1;
      let value;
      try {
        value = visitMap(reader);
      } catch (error) {
        if (!(error instanceof SerdeError)) throw error;
        reader.endMap();
        throw reader.fix(error);
      }
      reader.endMap();
      return value;
    },
  };
}

// A derived externally tagged enum: `{"variant":body}`, or `"variant"` for a
// variant without fields; `variants` are [name, struct(…) or UNIT]. Reads to
// [name, body].
function enumOf(variants) {
  const byName = new Map(variants);
  const names = variants.map(([name]) => name);
  const unknown = (name) => new SerdeError(`unknown variant \`${name}\`, expected ${oneOf(names)}`);

  function visitMap(reader) {
    const byte = reader.whitespace();
    if (byte !== QUOTE) {
      if (byte === CLOSE_BRACE) throw reader.peekError(EXPECTED_VALUE);
      throw reader.peekError(byte === null ? EOF_OBJECT : KEY_MUST_BE_A_STRING);
    }
    const name = reader.mapKey();
    if (!byName.has(name)) throw reader.fix(unknown(name));
    reader.colon();
    return [name, byName.get(name).deserialize(reader)];
  }

  return {
    deserialize(reader) {
      let byte = reader.whitespace();
      if (byte === OPEN_BRACE) {
        reader.index += 1;
        const value = visitMap(reader);
        byte = reader.whitespace();
        if (byte === CLOSE_BRACE) {
          reader.index += 1;
          return value;
        }
        throw reader.error(byte === null ? EOF_OBJECT : EXPECTED_VALUE);
      }
      if (byte === QUOTE) {
        reader.index += 1;
        const name = reader.string();
        if (!byName.has(name)) throw reader.fix(unknown(name));
        if (byName.get(name) !== UNIT) {
          // No position: serde_json returns this error unplaced.
          throw new SerdeError("invalid type: unit variant, expected struct variant");
        }
        return [name, null];
      }
      throw reader.peekError(byte === null ? EOF_VALUE : EXPECTED_VALUE);
    },
  };
}
