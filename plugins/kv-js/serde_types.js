// The port of plugins/kv-py/serde_types.py and the rest of serde_reader.py
// (keep them in step): serde_json's separators (SeqAccess, MapAccess,
// end_seq, end_map), its ignore_value, and the types a serde-derived Rust
// message is made of. Each type plays the visitor serde would use (its
// `expecting` text is what serde names in `invalid type: …, expected …`)
// and the Deserializer method serde_json would run for it.

Object.assign(Reader.prototype, {
  hasNextElement(first) {
    let byte = this.whitespace();
    if (byte === null) throw this.peekError(EOF_LIST);
    if (byte === CLOSE_BRACKET) return false;
    if (first) return true;
    if (byte !== COMMA) throw this.peekError(EXPECTED_LIST_COMMA_OR_END);
    this.index += 1;
    byte = this.whitespace();
    if (byte === CLOSE_BRACKET) throw this.peekError(TRAILING_COMMA);
    if (byte === null) throw this.peekError(EOF_VALUE);
    return true;
  },
  hasNextKey(first) {
    let byte = this.whitespace();
    if (byte === null) throw this.peekError(EOF_OBJECT);
    if (byte === CLOSE_BRACE) return false;
    if (first) {
      if (byte !== QUOTE) throw this.peekError(KEY_MUST_BE_A_STRING);
      return true;
    }
    if (byte !== COMMA) throw this.peekError(EXPECTED_OBJECT_COMMA_OR_END);
    this.index += 1;
    byte = this.whitespace();
    if (byte === QUOTE) return true;
    if (byte === CLOSE_BRACE) throw this.peekError(TRAILING_COMMA);
    throw this.peekError(byte === null ? EOF_VALUE : KEY_MUST_BE_A_STRING);
  },
  // A key whose opening quote was peeked.
  mapKey() {
    this.index += 1;
    return this.string();
  },
  colon() {
    const byte = this.whitespace();
    if (byte === COLON) {
      this.index += 1;
      return;
    }
    throw this.peekError(byte === null ? EOF_OBJECT : EXPECTED_COLON);
  },
  // The error closing a sequence gives, or null once it is closed.
  endSeq() {
    const byte = this.whitespace();
    if (byte === CLOSE_BRACKET) {
      this.index += 1;
      return null;
    }
    if (byte === COMMA) {
      this.index += 1;
      const closing = this.whitespace() === CLOSE_BRACKET;
      return this.peekError(closing ? TRAILING_COMMA : TRAILING_CHARACTERS);
    }
    return this.peekError(byte === null ? EOF_LIST : TRAILING_CHARACTERS);
  },
  // The error closing a map gives, or null once it is closed.
  endMap() {
    const byte = this.whitespace();
    if (byte === CLOSE_BRACE) {
      this.index += 1;
      return null;
    }
    if (byte === COMMA) return this.peekError(TRAILING_COMMA);
    return this.peekError(byte === null ? EOF_OBJECT : TRAILING_CHARACTERS);
  },

  // serde_json's ignore_value: check the syntax of a value nobody reads (an
  // unknown field), without recursion.
  ignoreValue() {
    let enclosing = null;
    const stack = [];
    for (;;) {
      let byte = this.whitespace();
      let frame = null;
      let acceptComma;
      if (byte === null) throw this.peekError(EOF_VALUE);
      if (byte === 0x6e || byte === 0x74 || byte === 0x66) {
        this.index += 1;
        this.ident({ 0x6e: "ull", 0x74: "rue", 0x66: "alse" }[byte]);
      } else if (byte === 0x2d) {
        this.index += 1;
        this.ignoreInteger();
      } else if (isDigit(byte)) {
        this.ignoreInteger();
      } else if (byte === QUOTE) {
        this.index += 1;
        this.ignoreStr();
      } else if (byte === OPEN_BRACKET || byte === OPEN_BRACE) {
        if (enclosing !== null) {
          stack.push(enclosing);
          enclosing = null;
        }
        this.index += 1;
        frame = byte;
      } else {
        throw this.peekError(EXPECTED_VALUE);
      }
      if (frame !== null) acceptComma = false;
      else if (enclosing !== null) [frame, enclosing, acceptComma] = [enclosing, null, true];
      else if (stack.length > 0) [frame, acceptComma] = [stack.pop(), true];
      else return;
      for (;;) {
        byte = this.whitespace();
        if (byte === COMMA && acceptComma) {
          this.index += 1;
          break;
        }
        const closes =
          (byte === CLOSE_BRACKET && frame === OPEN_BRACKET) || (byte === CLOSE_BRACE && frame === OPEN_BRACE);
        if (byte === null) throw this.peekError(frame === OPEN_BRACKET ? EOF_LIST : EOF_OBJECT);
        if (!closes) {
          if (!acceptComma) break;
          throw this.peekError(frame === OPEN_BRACKET ? EXPECTED_LIST_COMMA_OR_END : EXPECTED_OBJECT_COMMA_OR_END);
        }
        this.index += 1;
        if (stack.length === 0) return;
        [frame, acceptComma] = [stack.pop(), true];
      }
      if (frame === OPEN_BRACE) {
        byte = this.whitespace();
        if (byte !== QUOTE) throw this.peekError(byte === null ? EOF_OBJECT : KEY_MUST_BE_A_STRING);
        this.index += 1;
        this.ignoreStr();
        byte = this.whitespace();
        if (byte !== COLON) throw this.peekError(byte === null ? EOF_OBJECT : EXPECTED_COLON);
        this.index += 1;
      }
      enclosing = frame;
    }
  },
  ignoreInteger() {
    const byte = this.next() ?? 0;
    if (byte === 0x30) {
      if (isDigit(this.peekOrNull())) throw this.peekError(INVALID_NUMBER);
    } else if (isDigit(byte)) this.skipDigits();
    else throw this.error(INVALID_NUMBER);
    if (this.peekOrNull() === 0x2e) {
      this.index += 1;
      if (!isDigit(this.peekOrNull())) throw this.peekError(INVALID_NUMBER);
      this.skipDigits();
    }
    const exponent = this.peekOrNull();
    if (exponent === 0x65 || exponent === 0x45) {
      this.index += 1;
      const sign = this.peekOrNull();
      if (sign === 0x2b || sign === 0x2d) this.index += 1;
      if (!isDigit(this.next() ?? 0)) throw this.error(INVALID_NUMBER);
      this.skipDigits();
    }
  },
  // Skip a string's contents without decoding them (serde_json checks
  // neither UTF-8 nor surrogates here).
  ignoreStr() {
    for (;;) {
      this.skipPlain();
      if (this.index === this.data.length) throw this.error(EOF_STRING);
      const byte = this.data[this.index];
      if (byte === QUOTE) {
        this.index += 1;
        return;
      }
      if (byte !== BACKSLASH) throw this.error(CONTROL_CHARACTER);
      this.index += 1;
      const escape = this.next();
      if (escape === null) throw this.error(EOF_STRING);
      if (escape === 0x75) this.hexEscape();
      else if (!Object.hasOwn(ESCAPE_BYTES, escape)) throw this.error(INVALID_ESCAPE);
    }
  },
});

// serde_json::from_slice: the value of `kind` in `data`, or a SerdeError.
function serdeRead(data, kind) {
  const reader = new Reader(data);
  const value = kind.deserialize(reader);
  if (reader.whitespace() !== null) throw reader.peekError(TRAILING_CHARACTERS);
  return value;
}

// The first byte of a value, or the EOF error.
function firstByte(reader) {
  const byte = reader.whitespace();
  if (byte === null) throw reader.peekError(EOF_VALUE);
  return byte;
}

const STRING = {
  expecting: "a string",
  deserialize(reader) {
    if (firstByte(reader) !== QUOTE) throw reader.invalidType(this.expecting);
    reader.index += 1;
    return reader.string();
  },
};

// An unsigned integer type no wider than u64 (`usize` is 32 bits on wasm32).
function unsigned(name, maximum) {
  return {
    expecting: name,
    deserialize(reader) {
      const byte = firstByte(reader);
      let number;
      if (byte === 0x2d) {
        reader.index += 1;
        number = reader.integer(false);
      } else if (isDigit(byte)) number = reader.integer(true);
      else throw reader.invalidType(this.expecting);
      if (number[0] === "u" && number[1] <= maximum) return Number(number[1]);
      const unexpected = numberUnexpected(number);
      throw reader.fix(number[0] === "f" ? invalidType(unexpected, name) : invalidValue(unexpected, name));
    },
  };
}
const USIZE = unsigned("usize", (1n << 32n) - 1n);
const U32 = unsigned("u32", (1n << 32n) - 1n);

const UNIT = {
  expecting: "unit",
  deserialize(reader) {
    if (firstByte(reader) !== 0x6e) throw reader.invalidType(this.expecting);
    reader.index += 1;
    reader.ident("ull");
    return null;
  },
};

function option(kind) {
  return {
    isOption: true,
    deserialize(reader) {
      if (reader.whitespace() !== 0x6e) return kind.deserialize(reader);
      reader.index += 1;
      reader.ident("ull");
      return null;
    },
  };
}

// serde_json's deserialize_seq (and deserialize_struct's `[` branch):
// `visit(nextElement)` reads the elements; the closing `]` is checked even
// after an error, which moves the position the error reports.
function sequence(reader, visit) {
  reader.index += 1;
  let first = true;
  const nextElement = (element) => {
    if (!reader.hasNextElement(first)) return [false, null];
    first = false;
    return [true, element.deserialize(reader)];
  };
  let value;
  try {
    value = visit(nextElement);
  } catch (error) {
    if (!(error instanceof SerdeError)) throw error;
    reader.endSeq();
    throw reader.fix(error);
  }
  const error = reader.endSeq();
  if (error !== null) throw error;
  return value;
}

function seqOf(expecting, visitSeq) {
  return {
    expecting,
    deserialize(reader) {
      if (firstByte(reader) !== OPEN_BRACKET) throw reader.invalidType(expecting);
      return sequence(reader, visitSeq);
    },
  };
}

// `Vec<T>`.
function vec(kind) {
  return seqOf("a sequence", (nextElement) => {
    const items = [];
    for (;;) {
      const [present, item] = nextElement(kind);
      if (!present) return items;
      items.push(item);
    }
  });
}

// `(A, B, …)`.
function tuple(kinds) {
  const expecting = `a tuple of size ${kinds.length}`;
  return seqOf(expecting, (nextElement) =>
    kinds.map((kind, index) => {
      const [present, item] = nextElement(kind);
      if (!present) throw new SerdeError(`invalid length ${index}, expected ${expecting}`);
      return item;
    }),
  );
}
