"""Rust's text for two values serde puts in error messages: a string as
`{:?}` prints it (`invalid type: string "…"`, `keys not strictly ascending
at "…"`) and a float as serde_json prints it (`floating point `1e+20``).

`ESCAPED` lists the code points above U+007F that Rust's `{:?}` writes as
`\\u{…}` (not printable, or grapheme extenders), as ranges `first-last` in
hex. It is data taken from Rust itself: tests/tests/kv_conformance.rs checks
it against the running Rust, and the JavaScript kv carries the same line.
"""

import bisect
from decimal import Decimal

# BEGIN ESCAPED
ESCAPED = ""
# END ESCAPED

_STARTS, _ENDS = [], []
for _range in filter(None, ESCAPED.split(",")):
    _first, _, _last = _range.partition("-")
    _STARTS.append(int(_first, 16))
    _ENDS.append(int(_last or _first, 16))

_SIMPLE = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}


def escaped(code_point):
    """Whether `{:?}` writes this non-ASCII code point as `\\u{…}`."""
    at = bisect.bisect_right(_STARTS, code_point) - 1
    return at >= 0 and code_point <= _ENDS[at]


def debug_str(text):
    """`format!("{:?}", text)`."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    out = ['"']
    for char in text:
        code_point = ord(char)
        if char in _SIMPLE:
            out.append(_SIMPLE[char])
        elif 0x20 <= code_point < 0x7F:
            out.append(char)
        elif code_point < 0x80 or escaped(code_point):
            out.append(f"\\u{{{code_point:x}}}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


# Scientific exponents serde_json's float printer writes without an
# exponent: 1e-5 is "0.00001", 1e15 "1000000000000000.0", 1e16 "1e+16".
FIXED_EXPONENTS = range(-5, 16)


def float_str(value):
    """serde_json's text for a finite float: the shortest digits that read
    back to it, in positional form for moderate magnitudes."""
    sign = "-" if str(value).startswith("-") else ""
    if value == 0:
        return sign + "0.0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - 1  # of the first digit
    if exponent in FIXED_EXPONENTS:
        if len(digits) - 1 <= exponent:
            return sign + digits + "0" * (exponent + 1 - len(digits)) + ".0"
        if exponent >= 0:
            return sign + digits[: exponent + 1] + "." + digits[exponent + 1 :]
        return sign + "0." + "0" * (-exponent - 1) + digits
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
