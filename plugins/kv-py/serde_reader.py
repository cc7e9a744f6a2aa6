"""A strict JSON reader that accepts, rejects and words its errors exactly as
serde_json 1.0 reading a serde-derived type from bytes (`from_slice`), so the
Python kv answers every malformed command byte for byte like the Rust kv.

Python's json module is not that reader: it keeps the last of two equal keys,
reads NaN and lone surrogates, and words its errors its own way; a replica
running one build could then answer a client differently from a replica
running the other, and a hot swap would change answers. So this follows
serde_json's parser step by step: where it looks (`peek`) and where it has
consumed (`index`), which errors carry a position and where that position is
taken, and serde's messages for types (`invalid type: …, expected …`).

Types are described by small objects (`STRING`, `Option`, `Struct`, `Enum`, …)
that play serde's visitors. `read(data, type)` is `serde_json::from_slice`.
Positions count bytes, as serde_json does; wasm32's `usize` is 32 bits.
"""

import re

from rust_format import debug_str, float_str

USIZE_MAX = (1 << 32) - 1
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
I32_MAX = (1 << 31) - 1
I32_MIN = -(1 << 31)
# serde_json's table of powers of ten, 1e0..=1e308, each the nearest double.
POW10 = [float("1e%d" % exponent) for exponent in range(309)]

EOF_LIST = "EOF while parsing a list"
EOF_OBJECT = "EOF while parsing an object"
EOF_STRING = "EOF while parsing a string"
EOF_VALUE = "EOF while parsing a value"
EXPECTED_COLON = "expected `:`"
EXPECTED_LIST_COMMA_OR_END = "expected `,` or `]`"
EXPECTED_OBJECT_COMMA_OR_END = "expected `,` or `}`"
EXPECTED_IDENT = "expected ident"
EXPECTED_VALUE = "expected value"
INVALID_ESCAPE = "invalid escape"
INVALID_NUMBER = "invalid number"
NUMBER_OUT_OF_RANGE = "number out of range"
INVALID_UNICODE = "invalid unicode code point"
CONTROL_CHARACTER = "control character (\\u0000-\\u001F) found while parsing a string"
KEY_MUST_BE_A_STRING = "key must be a string"
LONE_SURROGATE = "lone leading surrogate in hex escape"
TRAILING_COMMA = "trailing comma"
TRAILING_CHARACTERS = "trailing characters"
UNEXPECTED_END_OF_HEX_ESCAPE = "unexpected end of hex escape"

QUOTE, BACKSLASH, COMMA, COLON = 0x22, 0x5C, 0x2C, 0x3A
OPEN_BRACE, CLOSE_BRACE, OPEN_BRACKET, CLOSE_BRACKET = 0x7B, 0x7D, 0x5B, 0x5D
WHITESPACE = b" \n\t\r"
DIGITS = b"0123456789"
# A run of string bytes that need no attention: not a quote, a backslash or a
# control character.
PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
ESCAPES = {0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 0x08, 0x66: 0x0C, 0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09}


class SerdeError(Exception):
    """serde_json's error: a message, and a position unless `line` is 0 (an
    error from a type, positioned later by whoever catches it)."""

    def __init__(self, message, line=0, column=0):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column

    def __str__(self):
        if self.line == 0:
            return self.message
        return f"{self.message} at line {self.line} column {self.column}"


def one_of(names):
    if len(names) == 1:
        return f"`{names[0]}`"
    if len(names) == 2:
        return f"`{names[0]}` or `{names[1]}`"
    return "one of " + ", ".join(f"`{name}`" for name in names)


def invalid_type(unexpected, expected):
    return SerdeError(f"invalid type: {unexpected}, expected {expected}")


def invalid_value(unexpected, expected):
    return SerdeError(f"invalid value: {unexpected}, expected {expected}")


def number_unexpected(kind, value):
    if kind == "f":
        return f"floating point `{float_str(value)}`"
    return f"integer `{value}`"


def read(data, kind):
    """serde_json::from_slice: the value of `kind` in `data`, or SerdeError."""
    reader = Reader(bytes(data))
    value = kind.deserialize(reader)
    if reader.whitespace() is not None:
        raise reader.peek_error(TRAILING_CHARACTERS)
    return value


class Reader:
    """serde_json's Deserializer over a byte slice."""

    __slots__ = ("data", "index")

    def __init__(self, data):
        self.data, self.index = data, 0

    # Positions and errors.

    def position(self, index):
        start_of_line = self.data.rfind(b"\n", 0, index) + 1
        return 1 + self.data.count(b"\n", 0, start_of_line), index - start_of_line

    def error(self, message):
        """An error about the byte last consumed."""
        return SerdeError(message, *self.position(self.index))

    def peek_error(self, message):
        """An error about the byte just looked at."""
        return SerdeError(message, *self.position(min(len(self.data), self.index + 1)))

    def fix(self, error):
        return self.error(error.message) if error.line == 0 else error

    # Bytes.

    def peek(self):
        return self.data[self.index] if self.index < len(self.data) else None

    def peek_or_null(self):
        return self.data[self.index] if self.index < len(self.data) else 0

    def next(self):
        if self.index < len(self.data):
            self.index += 1
            return self.data[self.index - 1]
        return None

    def whitespace(self):
        data, index = self.data, self.index
        while index < len(data) and data[index] in WHITESPACE:
            index += 1
        self.index = index
        return data[index] if index < len(data) else None

    def ident(self, rest):
        for expected in rest:
            byte = self.next()
            if byte is None:
                raise self.error(EOF_VALUE)
            if byte != expected:
                raise self.error(EXPECTED_IDENT)

    # Strings.

    def string(self):
        """The string whose opening quote was just consumed."""
        data, start, scratch = self.data, self.index, None
        while True:
            self.index = PLAIN.match(data, self.index).end()
            if self.index == len(data):
                raise self.error(EOF_STRING)
            byte = data[self.index]
            if byte == QUOTE:
                if scratch is None:
                    raw = data[start : self.index]
                else:
                    scratch += data[start : self.index]
                    raw = scratch
                self.index += 1
                return self.as_str(raw)
            if byte == BACKSLASH:
                if scratch is None:
                    scratch = bytearray()
                scratch += data[start : self.index]
                self.index += 1
                self.escape(scratch)
                start = self.index
            else:
                self.index += 1
                raise self.error(CONTROL_CHARACTER)

    def as_str(self, raw):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            # Points back from the closing quote to the first bad byte of
            # the (unescaped) contents, as serde_json does.
            line, column = self.position(self.index)
            column = max(0, column - (len(raw) - error.start))
            raise SerdeError(INVALID_UNICODE, line, column) from None

    def escape(self, scratch):
        byte = self.next()
        if byte is None:
            raise self.error(EOF_STRING)
        if byte in ESCAPES:
            scratch.append(ESCAPES[byte])
        elif byte == 0x75:
            scratch += self.unicode_escape().encode("utf-8")
        else:
            raise self.error(INVALID_ESCAPE)

    def hex_escape(self):
        if self.index + 4 > len(self.data):
            self.index = len(self.data)
            raise self.error(EOF_STRING)
        digits = self.data[self.index : self.index + 4]
        self.index += 4
        if not all(byte in b"0123456789abcdefABCDEF" for byte in digits):
            raise self.error(INVALID_ESCAPE)
        return int(digits, 16)

    def unicode_escape(self):
        first = self.hex_escape()
        if 0xDC00 <= first <= 0xDFFF:
            raise self.error(LONE_SURROGATE)
        if not 0xD800 <= first <= 0xDBFF:
            return chr(first)
        for expected in (BACKSLASH, 0x75):
            byte = self.peek()
            if byte is None:
                raise self.error(EOF_STRING)
            self.index += 1
            if byte != expected:
                raise self.error(UNEXPECTED_END_OF_HEX_ESCAPE)
        second = self.hex_escape()
        if not 0xDC00 <= second <= 0xDFFF:
            raise self.error(LONE_SURROGATE)
        return chr((((first - 0xD800) << 10) | (second - 0xDC00)) + 0x10000)

    # Numbers: ("u", int), ("i", int) or ("f", float), as serde_json's
    # ParserNumber.

    def integer(self, positive):
        byte = self.next()
        if byte is None:
            raise self.error(EOF_VALUE)
        if byte == 0x30:
            if self.peek_or_null() in DIGITS:
                raise self.peek_error(INVALID_NUMBER)
            return self.number(positive, 0)
        if byte not in b"123456789":
            raise self.error(INVALID_NUMBER)
        significand = byte - 0x30
        while True:
            byte = self.peek_or_null()
            if byte not in DIGITS:
                return self.number(positive, significand)
            digit = byte - 0x30
            if overflows(significand, digit, U64_MAX):
                return "f", self.long_integer(positive, significand)
            self.index += 1
            significand = significand * 10 + digit

    def number(self, positive, significand):
        byte = self.peek_or_null()
        if byte == 0x2E:
            return "f", self.decimal(positive, significand, 0)
        if byte in (0x65, 0x45):
            return "f", self.exponent(positive, significand, 0)
        if positive:
            return "u", significand
        if significand == 0 or significand > (1 << 63):
            return "f", -float(significand)
        return "i", -significand

    def decimal(self, positive, significand, exponent_before):
        self.index += 1
        exponent_after = 0
        while self.peek_or_null() in DIGITS:
            digit = self.data[self.index] - 0x30
            if overflows(significand, digit, U64_MAX):
                return self.decimal_overflow(positive, significand, exponent_before + exponent_after)
            self.index += 1
            significand = significand * 10 + digit
            exponent_after -= 1
        if exponent_after == 0:
            raise self.peek_error(INVALID_NUMBER if self.peek() is not None else EOF_VALUE)
        exponent = exponent_before + exponent_after
        if self.peek_or_null() in (0x65, 0x45):
            return self.exponent(positive, significand, exponent)
        return self.from_parts(positive, significand, exponent)

    def exponent(self, positive, significand, starting):
        self.index += 1
        positive_exponent = True
        if self.peek_or_null() in (0x2B, 0x2D):
            positive_exponent = self.data[self.index] == 0x2B
            self.index += 1
        byte = self.next()
        if byte is None:
            raise self.error(EOF_VALUE)
        if byte not in DIGITS:
            raise self.error(INVALID_NUMBER)
        exponent = byte - 0x30
        while self.peek_or_null() in DIGITS:
            digit = self.data[self.index] - 0x30
            self.index += 1
            if overflows(exponent, digit, I32_MAX):
                return self.exponent_overflow(positive, significand == 0, positive_exponent)
            exponent = exponent * 10 + digit
        final = starting + exponent if positive_exponent else starting - exponent
        return self.from_parts(positive, significand, max(I32_MIN, min(I32_MAX, final)))

    def exponent_overflow(self, positive, zero_significand, positive_exponent):
        if not zero_significand and positive_exponent:
            raise self.error(NUMBER_OUT_OF_RANGE)
        self.skip_digits()
        return 0.0 if positive else -0.0

    def skip_digits(self):
        while self.peek_or_null() in DIGITS:
            self.index += 1

    def decimal_overflow(self, positive, significand, exponent):
        self.skip_digits()
        if self.peek_or_null() in (0x65, 0x45):
            return self.exponent(positive, significand, exponent)
        return self.from_parts(positive, significand, exponent)

    def long_integer(self, positive, significand):
        exponent = 0
        while True:
            byte = self.peek_or_null()
            if byte in DIGITS:
                self.index += 1
                exponent += 1
            elif byte == 0x2E:
                return self.decimal(positive, significand, exponent)
            elif byte in (0x65, 0x45):
                return self.exponent(positive, significand, exponent)
            else:
                return self.from_parts(positive, significand, exponent)

    def from_parts(self, positive, significand, exponent):
        value = float(significand)
        while True:
            # i32::MIN has no absolute value; serde_json's wrapping_abs
            # keeps it out of the table like any other huge exponent.
            magnitude = abs(exponent) if exponent != I32_MIN else len(POW10)
            if magnitude < len(POW10):
                if exponent >= 0:
                    value *= POW10[magnitude]
                    if value == float("inf"):
                        raise self.error(NUMBER_OUT_OF_RANGE)
                else:
                    value /= POW10[magnitude]
                break
            if value == 0.0:
                break
            if exponent >= 0:
                raise self.error(NUMBER_OUT_OF_RANGE)
            value /= 1e308
            exponent += 308
        return value if positive else -value

    # Values of the wrong type, and values nobody reads.

    def invalid_type(self, expected):
        """serde_json's peek_invalid_type: read the value that is there to
        name it in the error."""
        byte = self.peek_or_null()
        if byte == 0x6E:
            self.index += 1
            self.ident(b"ull")
            error = invalid_type("null", expected)
        elif byte in (0x74, 0x66):
            self.index += 1
            self.ident(b"rue" if byte == 0x74 else b"alse")
            error = invalid_type(f"boolean `{'true' if byte == 0x74 else 'false'}`", expected)
        elif byte == 0x2D:
            self.index += 1
            error = invalid_type(number_unexpected(*self.integer(False)), expected)
        elif byte in DIGITS:
            error = invalid_type(number_unexpected(*self.integer(True)), expected)
        elif byte == QUOTE:
            self.index += 1
            error = invalid_type(f"string {debug_str(self.string())}", expected)
        elif byte == OPEN_BRACKET:
            error = invalid_type("sequence", expected)
        elif byte == OPEN_BRACE:
            error = invalid_type("map", expected)
        else:
            return self.peek_error(EXPECTED_VALUE)
        return self.fix(error)

    def ignore_value(self):
        """serde_json's ignore_value: check the syntax of a value nobody
        reads (an unknown field), without recursion."""
        enclosing, stack = None, []
        while True:
            byte = self.whitespace()
            frame = None
            if byte is None:
                raise self.peek_error(EOF_VALUE)
            if byte in (0x6E, 0x74, 0x66):
                self.index += 1
                self.ident({0x6E: b"ull", 0x74: b"rue", 0x66: b"alse"}[byte])
            elif byte == 0x2D:
                self.index += 1
                self.ignore_integer()
            elif byte in DIGITS:
                self.ignore_integer()
            elif byte == QUOTE:
                self.index += 1
                self.ignore_str()
            elif byte in (OPEN_BRACKET, OPEN_BRACE):
                if enclosing is not None:
                    stack.append(enclosing)
                    enclosing = None
                self.index += 1
                frame = byte
            else:
                raise self.peek_error(EXPECTED_VALUE)
            if frame is not None:
                accept_comma = False
            elif enclosing is not None:
                frame, enclosing, accept_comma = enclosing, None, True
            elif stack:
                frame, accept_comma = stack.pop(), True
            else:
                return
            while True:
                byte = self.whitespace()
                if byte == COMMA and accept_comma:
                    self.index += 1
                    break
                closes = (byte == CLOSE_BRACKET and frame == OPEN_BRACKET) or (
                    byte == CLOSE_BRACE and frame == OPEN_BRACE
                )
                if byte is None:
                    raise self.peek_error(EOF_LIST if frame == OPEN_BRACKET else EOF_OBJECT)
                if not closes:
                    if not accept_comma:
                        break
                    if frame == OPEN_BRACKET:
                        raise self.peek_error(EXPECTED_LIST_COMMA_OR_END)
                    raise self.peek_error(EXPECTED_OBJECT_COMMA_OR_END)
                self.index += 1
                if not stack:
                    return
                frame, accept_comma = stack.pop(), True
            if frame == OPEN_BRACE:
                byte = self.whitespace()
                if byte != QUOTE:
                    raise self.peek_error(EOF_OBJECT if byte is None else KEY_MUST_BE_A_STRING)
                self.index += 1
                self.ignore_str()
                byte = self.whitespace()
                if byte != COLON:
                    raise self.peek_error(EOF_OBJECT if byte is None else EXPECTED_COLON)
                self.index += 1
            enclosing = frame

    def ignore_integer(self):
        byte = self.next() or 0
        if byte == 0x30:
            if self.peek_or_null() in DIGITS:
                raise self.peek_error(INVALID_NUMBER)
        elif byte in b"123456789":
            self.skip_digits()
        else:
            raise self.error(INVALID_NUMBER)
        if self.peek_or_null() == 0x2E:
            self.index += 1
            if self.peek_or_null() not in DIGITS:
                raise self.peek_error(INVALID_NUMBER)
            self.skip_digits()
        if self.peek_or_null() in (0x65, 0x45):
            self.index += 1
            if self.peek_or_null() in (0x2B, 0x2D):
                self.index += 1
            if (self.next() or 0) not in DIGITS:
                raise self.error(INVALID_NUMBER)
            self.skip_digits()

    def ignore_str(self):
        """Skip a string's contents without decoding them (serde_json does
        not check UTF-8 or surrogates here)."""
        data = self.data
        while True:
            self.index = PLAIN.match(data, self.index).end()
            if self.index == len(data):
                raise self.error(EOF_STRING)
            byte = data[self.index]
            if byte == QUOTE:
                self.index += 1
                return
            if byte != BACKSLASH:
                raise self.error(CONTROL_CHARACTER)
            self.index += 1
            byte = self.next()
            if byte is None:
                raise self.error(EOF_STRING)
            if byte == 0x75:
                self.hex_escape()
            elif byte not in ESCAPES:
                raise self.error(INVALID_ESCAPE)

    # Separators, as serde_json's SeqAccess, MapAccess and end_seq/end_map.

    def has_next_element(self, first):
        byte = self.whitespace()
        if byte is None:
            raise self.peek_error(EOF_LIST)
        if byte == CLOSE_BRACKET:
            return False
        if first:
            return True
        if byte != COMMA:
            raise self.peek_error(EXPECTED_LIST_COMMA_OR_END)
        self.index += 1
        byte = self.whitespace()
        if byte == CLOSE_BRACKET:
            raise self.peek_error(TRAILING_COMMA)
        if byte is None:
            raise self.peek_error(EOF_VALUE)
        return True

    def has_next_key(self, first):
        byte = self.whitespace()
        if byte is None:
            raise self.peek_error(EOF_OBJECT)
        if byte == CLOSE_BRACE:
            return False
        if first:
            if byte != QUOTE:
                raise self.peek_error(KEY_MUST_BE_A_STRING)
            return True
        if byte != COMMA:
            raise self.peek_error(EXPECTED_OBJECT_COMMA_OR_END)
        self.index += 1
        byte = self.whitespace()
        if byte == QUOTE:
            return True
        if byte == CLOSE_BRACE:
            raise self.peek_error(TRAILING_COMMA)
        raise self.peek_error(EOF_VALUE if byte is None else KEY_MUST_BE_A_STRING)

    def map_key(self):
        """A key whose opening quote was peeked."""
        self.index += 1
        return self.string()

    def colon(self):
        byte = self.whitespace()
        if byte == COLON:
            self.index += 1
            return
        raise self.peek_error(EOF_OBJECT if byte is None else EXPECTED_COLON)

    def end_seq(self):
        """The error closing a sequence gives, or None once it is closed."""
        byte = self.whitespace()
        if byte == CLOSE_BRACKET:
            self.index += 1
            return None
        if byte == COMMA:
            self.index += 1
            closing = self.whitespace() == CLOSE_BRACKET
            return self.peek_error(TRAILING_COMMA if closing else TRAILING_CHARACTERS)
        return self.peek_error(EOF_LIST if byte is None else TRAILING_CHARACTERS)

    def end_map(self):
        """The error closing a map gives, or None once it is closed."""
        byte = self.whitespace()
        if byte == CLOSE_BRACE:
            self.index += 1
            return None
        if byte == COMMA:
            return self.peek_error(TRAILING_COMMA)
        return self.peek_error(EOF_OBJECT if byte is None else TRAILING_CHARACTERS)


def overflows(value, digit, maximum):
    """serde_json's overflow!(value * 10 + digit, maximum)."""
    return value > maximum // 10 or (value == maximum // 10 and digit > maximum % 10)
