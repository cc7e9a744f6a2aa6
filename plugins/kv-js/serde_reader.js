// A strict JSON reader that accepts, rejects and words its errors exactly as
// serde_json 1.0 reading a serde-derived type from bytes (`from_slice`), so
// the JavaScript kv answers every malformed command byte for byte like the
// Rust kv. JSON.parse is not that reader: it keeps the last of two equal
// keys, reads lone surrogates, and words its errors its own way.
//
// The port of plugins/kv-py/serde_reader.py (keep the two in step): it
// follows serde_json's parser step by step, where it looks (peek) and where
// it has consumed (index), which errors carry a position and where that
// position is taken. Positions count bytes. Numbers are ["u", BigInt],
// ["i", BigInt] or ["f", Number], as serde_json's ParserNumber.

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN_MAGNITUDE = 1n << 63n;
const I32_MAX = 2 ** 31 - 1;
const I32_MIN = -(2 ** 31);
// serde_json's table of powers of ten, 1e0..=1e308, each the nearest double.
const POW10 = Array.from({ length: 309 }, (_, exponent) => Number(`1e${exponent}`));

const EOF_LIST = "EOF while parsing a list";
const EOF_OBJECT = "EOF while parsing an object";
const EOF_STRING = "EOF while parsing a string";
const EOF_VALUE = "EOF while parsing a value";
const EXPECTED_COLON = "expected `:`";
const EXPECTED_LIST_COMMA_OR_END = "expected `,` or `]`";
const EXPECTED_OBJECT_COMMA_OR_END = "expected `,` or `}`";
const EXPECTED_IDENT = "expected ident";
const EXPECTED_VALUE = "expected value";
const INVALID_ESCAPE = "invalid escape";
const INVALID_NUMBER = "invalid number";
const NUMBER_OUT_OF_RANGE = "number out of range";
const INVALID_UNICODE = "invalid unicode code point";
const CONTROL_CHARACTER = "control character (\\u0000-\\u001F) found while parsing a string";
const KEY_MUST_BE_A_STRING = "key must be a string";
const LONE_SURROGATE = "lone leading surrogate in hex escape";
const TRAILING_COMMA = "trailing comma";
const TRAILING_CHARACTERS = "trailing characters";
const UNEXPECTED_END_OF_HEX_ESCAPE = "unexpected end of hex escape";

const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, COLON = 0x3a;
const OPEN_BRACE = 0x7b, CLOSE_BRACE = 0x7d, OPEN_BRACKET = 0x5b, CLOSE_BRACKET = 0x5d;
const ESCAPE_BYTES = { 0x22: 0x22, 0x5c: 0x5c, 0x2f: 0x2f, 0x62: 0x08, 0x66: 0x0c, 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09 };

const isDigit = (byte) => byte >= 0x30 && byte <= 0x39;
const isWhitespace = (byte) => byte === 0x20 || byte === 0x0a || byte === 0x09 || byte === 0x0d;
const isHex = (byte) => isDigit(byte) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
// Not a quote, a backslash or a control character.
const isPlain = (byte) => byte !== QUOTE && byte !== BACKSLASH && byte >= 0x20;

// serde_json's error: a message, and a position unless `line` is 0 (an error
// from a type, positioned later by whoever catches it).
class SerdeError {
  constructor(message, line = 0, column = 0) {
    this.message = message;
    this.line = line;
    this.column = column;
  }
  toString() {
    return this.line === 0 ? this.message : `${this.message} at line ${this.line} column ${this.column}`;
  }
}

function oneOf(names) {
  if (names.length === 1) return `\`${names[0]}\``;
  if (names.length === 2) return `\`${names[0]}\` or \`${names[1]}\``;
  return "one of " + names.map((name) => `\`${name}\``).join(", ");
}

const invalidType = (unexpected, expected) => new SerdeError(`invalid type: ${unexpected}, expected ${expected}`);
const invalidValue = (unexpected, expected) => new SerdeError(`invalid value: ${unexpected}, expected ${expected}`);
const numberUnexpected = ([kind, value]) =>
  kind === "f" ? `floating point \`${floatStr(value)}\`` : `integer \`${value}\``;

// serde_json's overflow!(value * 10 + digit, maximum), on BigInts.
const overflows = (value, digit, maximum) =>
  value > maximum / 10n || (value === maximum / 10n && digit > maximum % 10n);

// The index of the first byte of `bytes` that is not valid UTF-8, or -1:
// Rust's Utf8Error::valid_up_to.
function invalidUtf8At(bytes) {
  let index = 0;
  while (index < bytes.length) {
    const first = bytes[index];
    let length = 1, low = 0x80, high = 0xbf;
    if (first < 0x80) { index += 1; continue; }
    if (first >= 0xc2 && first <= 0xdf) length = 2;
    else if (first >= 0xe0 && first <= 0xef) {
      length = 3;
      if (first === 0xe0) low = 0xa0;
      if (first === 0xed) high = 0x9f;
    } else if (first >= 0xf0 && first <= 0xf4) {
      length = 4;
      if (first === 0xf0) low = 0x90;
      if (first === 0xf4) high = 0x8f;
    } else return index;
    for (let k = 1; k < length; k++) {
      const byte = bytes[index + k];
      const [min, max] = k === 1 ? [low, high] : [0x80, 0xbf];
      if (byte === undefined || byte < min || byte > max) return index;
    }
    index += length;
  }
  return -1;
}

// ignoreBOM: a string that starts with U+FEFF keeps it.
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const utf8Encoder = new TextEncoder();

// serde_json's Deserializer over a byte slice.
class Reader {
  constructor(data) {
    this.data = data;
    this.index = 0;
  }

  position(index) {
    let startOfLine = index;
    while (startOfLine > 0 && this.data[startOfLine - 1] !== 0x0a) startOfLine -= 1;
    let line = 1;
    for (let k = 0; k < startOfLine; k++) if (this.data[k] === 0x0a) line += 1;
    return [line, index - startOfLine];
  }
  // An error about the byte last consumed.
  error(message) {
    return new SerdeError(message, ...this.position(this.index));
  }
  // An error about the byte just looked at.
  peekError(message) {
    return new SerdeError(message, ...this.position(Math.min(this.data.length, this.index + 1)));
  }
  fix(error) {
    return error.line === 0 ? this.error(error.message) : error;
  }

  peek() {
    return this.index < this.data.length ? this.data[this.index] : null;
  }
  peekOrNull() {
    return this.index < this.data.length ? this.data[this.index] : 0;
  }
  next() {
    return this.index < this.data.length ? this.data[this.index++] : null;
  }
  whitespace() {
    while (this.index < this.data.length && isWhitespace(this.data[this.index])) this.index += 1;
    return this.peek();
  }
  ident(rest) {
    for (const expected of rest) {
      const byte = this.next();
      if (byte === null) throw this.error(EOF_VALUE);
      if (byte !== expected.charCodeAt(0)) throw this.error(EXPECTED_IDENT);
    }
  }
  skipPlain() {
    while (this.index < this.data.length && isPlain(this.data[this.index])) this.index += 1;
  }

  // The string whose opening quote was just consumed.
  string() {
    let start = this.index;
    let scratch = null;
    for (;;) {
      this.skipPlain();
      if (this.index === this.data.length) throw this.error(EOF_STRING);
      const byte = this.data[this.index];
      if (byte === QUOTE) {
        const tail = this.data.subarray(start, this.index);
        const raw = scratch === null ? tail : Uint8Array.from([...scratch, ...tail]);
        this.index += 1;
        return this.asStr(raw);
      }
      if (byte !== BACKSLASH) {
        this.index += 1;
        throw this.error(CONTROL_CHARACTER);
      }
      scratch = [...(scratch ?? []), ...this.data.subarray(start, this.index)];
      this.index += 1;
      this.escape(scratch);
      start = this.index;
    }
  }
  asStr(raw) {
    const invalid = invalidUtf8At(raw);
    if (invalid < 0) return utf8.decode(raw);
    // Points back from the closing quote to the first bad byte of the
    // (unescaped) contents, as serde_json does.
    const [line, column] = this.position(this.index);
    throw new SerdeError(INVALID_UNICODE, line, Math.max(0, column - (raw.length - invalid)));
  }
  escape(scratch) {
    const byte = this.next();
    if (byte === null) throw this.error(EOF_STRING);
    if (Object.hasOwn(ESCAPE_BYTES, byte)) scratch.push(ESCAPE_BYTES[byte]);
    else if (byte === 0x75) scratch.push(...utf8Encoder.encode(this.unicodeEscape()));
    else throw this.error(INVALID_ESCAPE);
  }
  hexEscape() {
    if (this.index + 4 > this.data.length) {
      this.index = this.data.length;
      throw this.error(EOF_STRING);
    }
    const digits = this.data.subarray(this.index, this.index + 4);
    this.index += 4;
    if (!digits.every(isHex)) throw this.error(INVALID_ESCAPE);
    return parseInt(String.fromCharCode(...digits), 16);
  }
  unicodeEscape() {
    const first = this.hexEscape();
    if (first >= 0xdc00 && first <= 0xdfff) throw this.error(LONE_SURROGATE);
    if (first < 0xd800 || first > 0xdbff) return String.fromCodePoint(first);
    for (const expected of [BACKSLASH, 0x75]) {
      const byte = this.peek();
      if (byte === null) throw this.error(EOF_STRING);
      this.index += 1;
      if (byte !== expected) throw this.error(UNEXPECTED_END_OF_HEX_ESCAPE);
    }
    const second = this.hexEscape();
    if (second < 0xdc00 || second > 0xdfff) throw this.error(LONE_SURROGATE);
    return String.fromCodePoint((((first - 0xd800) << 10) | (second - 0xdc00)) + 0x10000);
  }

  integer(positive) {
    const byte = this.next();
    if (byte === null) throw this.error(EOF_VALUE);
    if (byte === 0x30) {
      if (isDigit(this.peekOrNull())) throw this.peekError(INVALID_NUMBER);
      return this.number(positive, 0n);
    }
    if (!isDigit(byte)) throw this.error(INVALID_NUMBER);
    let significand = BigInt(byte - 0x30);
    for (;;) {
      const next = this.peekOrNull();
      if (!isDigit(next)) return this.number(positive, significand);
      const digit = BigInt(next - 0x30);
      if (overflows(significand, digit, U64_MAX)) return ["f", this.longInteger(positive, significand)];
      this.index += 1;
      significand = significand * 10n + digit;
    }
  }
  number(positive, significand) {
    const byte = this.peekOrNull();
    if (byte === 0x2e) return ["f", this.decimal(positive, significand, 0)];
    if (byte === 0x65 || byte === 0x45) return ["f", this.exponent(positive, significand, 0)];
    if (positive) return ["u", significand];
    if (significand === 0n || significand > I64_MIN_MAGNITUDE) return ["f", -Number(significand)];
    return ["i", -significand];
  }
  decimal(positive, significand, exponentBefore) {
    this.index += 1;
    let exponentAfter = 0;
    while (isDigit(this.peekOrNull())) {
      const digit = BigInt(this.data[this.index] - 0x30);
      if (overflows(significand, digit, U64_MAX)) {
        return this.decimalOverflow(positive, significand, exponentBefore + exponentAfter);
      }
      this.index += 1;
      significand = significand * 10n + digit;
      exponentAfter -= 1;
    }
    if (exponentAfter === 0) throw this.peekError(this.peek() !== null ? INVALID_NUMBER : EOF_VALUE);
    const exponent = exponentBefore + exponentAfter;
    const next = this.peekOrNull();
    if (next === 0x65 || next === 0x45) return this.exponent(positive, significand, exponent);
    return this.fromParts(positive, significand, exponent);
  }
  exponent(positive, significand, starting) {
    this.index += 1;
    let positiveExponent = true;
    const sign = this.peekOrNull();
    if (sign === 0x2b || sign === 0x2d) {
      positiveExponent = sign === 0x2b;
      this.index += 1;
    }
    const byte = this.next();
    if (byte === null) throw this.error(EOF_VALUE);
    if (!isDigit(byte)) throw this.error(INVALID_NUMBER);
    let exponent = byte - 0x30;
    while (isDigit(this.peekOrNull())) {
      const digit = this.data[this.index] - 0x30;
      this.index += 1;
      if (exponent > Math.floor(I32_MAX / 10) || (exponent === Math.floor(I32_MAX / 10) && digit > I32_MAX % 10)) {
        return this.exponentOverflow(positive, significand === 0n, positiveExponent);
      }
      exponent = exponent * 10 + digit;
    }
    const final = positiveExponent ? starting + exponent : starting - exponent;
    return this.fromParts(positive, significand, Math.max(I32_MIN, Math.min(I32_MAX, final)));
  }
  exponentOverflow(positive, zeroSignificand, positiveExponent) {
    if (!zeroSignificand && positiveExponent) throw this.error(NUMBER_OUT_OF_RANGE);
    this.skipDigits();
    return positive ? 0 : -0;
  }
  skipDigits() {
    while (isDigit(this.peekOrNull())) this.index += 1;
  }
  decimalOverflow(positive, significand, exponent) {
    this.skipDigits();
    const byte = this.peekOrNull();
    if (byte === 0x65 || byte === 0x45) return this.exponent(positive, significand, exponent);
    return this.fromParts(positive, significand, exponent);
  }
  longInteger(positive, significand) {
    let exponent = 0;
    for (;;) {
      const byte = this.peekOrNull();
      if (isDigit(byte)) {
        this.index += 1;
        exponent += 1;
      } else if (byte === 0x2e) return this.decimal(positive, significand, exponent);
      else if (byte === 0x65 || byte === 0x45) return this.exponent(positive, significand, exponent);
      else return this.fromParts(positive, significand, exponent);
    }
  }
  fromParts(positive, significand, exponent) {
    let value = Number(significand);
    for (;;) {
      // i32::MIN has no absolute value; serde_json's wrapping_abs keeps it
      // out of the table like any other huge exponent.
      const magnitude = exponent === I32_MIN ? POW10.length : Math.abs(exponent);
      if (magnitude < POW10.length) {
        if (exponent >= 0) {
          value *= POW10[magnitude];
          if (value === Infinity) throw this.error(NUMBER_OUT_OF_RANGE);
        } else value /= POW10[magnitude];
        break;
      }
      if (value === 0) break;
      if (exponent >= 0) throw this.error(NUMBER_OUT_OF_RANGE);
      value /= 1e308;
      exponent += 308;
    }
    return positive ? value : -value;
  }

  // serde_json's peek_invalid_type: read the value that is there to name it
  // in the error.
  invalidType(expected) {
    const byte = this.peekOrNull();
    let error;
    if (byte === 0x6e) {
      this.index += 1;
      this.ident("ull");
      error = invalidType("null", expected);
    } else if (byte === 0x74 || byte === 0x66) {
      this.index += 1;
      this.ident(byte === 0x74 ? "rue" : "alse");
      error = invalidType(`boolean \`${byte === 0x74}\``, expected);
    } else if (byte === 0x2d) {
      this.index += 1;
      error = invalidType(numberUnexpected(this.integer(false)), expected);
    } else if (isDigit(byte)) {
      error = invalidType(numberUnexpected(this.integer(true)), expected);
    } else if (byte === QUOTE) {
      this.index += 1;
      error = invalidType(`string ${debugStr(this.string())}`, expected);
    } else if (byte === OPEN_BRACKET) {
      error = invalidType("sequence", expected);
    } else if (byte === OPEN_BRACE) {
      error = invalidType("map", expected);
    } else {
      return this.peekError(EXPECTED_VALUE);
    }
    return this.fix(error);
  }
}
