// Rust's text for two values serde puts in error messages: a string as
// `{:?}` prints it (`invalid type: string "…"`, `keys not strictly ascending
// at "…"`) and a float as serde_json prints it (`floating point `1e+20``).
//
// ESCAPED lists the code points above U+007F that Rust's `{:?}` writes as
// `\u{…}` (not printable, or grapheme extenders), as ranges `first-last` in
// hex: data taken from Rust itself. tests/tests/kv_conformance.rs checks it
// against the running Rust, and the Python kv carries the same line.
//
// A plain script: `cargo xtask plugins` joins the kv-js files into one
// module (rust_format.js, serde_reader.js, serde_types.js, app.js).

// BEGIN ESCAPED
const ESCAPED = "";
// END ESCAPED

const ESCAPED_STARTS = [];
const ESCAPED_ENDS = [];
for (const range of ESCAPED.split(",").filter((part) => part !== "")) {
  const [first, last] = range.split("-");
  ESCAPED_STARTS.push(parseInt(first, 16));
  ESCAPED_ENDS.push(parseInt(last ?? first, 16));
}

const DEBUG_SIMPLE = { "\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\" };

// Whether `{:?}` writes this non-ASCII code point as `\u{…}`.
function debugEscaped(codePoint) {
  let low = 0;
  let high = ESCAPED_STARTS.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (ESCAPED_STARTS[middle] <= codePoint) low = middle + 1;
    else high = middle;
  }
  return low > 0 && codePoint <= ESCAPED_ENDS[low - 1];
}

// `format!("{:?}", text)`.
function debugStr(text) {
  let out = '"';
  for (const char of text) {
    const codePoint = char.codePointAt(0);
    if (Object.hasOwn(DEBUG_SIMPLE, char)) out += DEBUG_SIMPLE[char];
    else if (codePoint >= 0x20 && codePoint < 0x7f) out += char;
    else if (codePoint < 0x80 || debugEscaped(codePoint)) out += `\\u{${codePoint.toString(16)}}`;
    else out += char;
  }
  return out + '"';
}

// Scientific exponents serde_json's float printer writes without an
// exponent: 1e-5 is "0.00001", 1e15 "1000000000000000.0", 1e16 "1e+16".
const FIXED_EXPONENT_MIN = -5;
const FIXED_EXPONENT_MAX = 15;

// serde_json's text for a finite float: the shortest digits that read back
// to it, in positional form for moderate magnitudes.
function floatStr(value) {
  const sign = value < 0 || Object.is(value, -0) ? "-" : "";
  if (value === 0) return sign + "0.0";
  // toExponential() without a digit count gives the shortest digits.
  const [mantissa, exponentText] = Math.abs(value).toExponential().split("e");
  const digits = mantissa.replace(".", "").replace(/0+$/, "");
  const exponent = Number(exponentText);
  if (exponent >= FIXED_EXPONENT_MIN && exponent <= FIXED_EXPONENT_MAX) {
    if (digits.length - 1 <= exponent) {
      return sign + digits + "0".repeat(exponent + 1 - digits.length) + ".0";
    }
    if (exponent >= 0) {
      return sign + digits.slice(0, exponent + 1) + "." + digits.slice(exponent + 1);
    }
    return sign + "0." + "0".repeat(-exponent - 1) + digits;
  }
  const fraction = digits.length > 1 ? "." + digits.slice(1) : "";
  return `${sign}${digits[0]}${fraction}e${exponent >= 0 ? "+" : "-"}${Math.abs(exponent)}`;
}
