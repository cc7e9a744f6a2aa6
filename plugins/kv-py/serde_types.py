"""The types a serde-derived Rust message is made of, as `serde_reader` reads
them: each plays the visitor serde would use (its `expecting` text is what
serde names in `invalid type: …, expected …`) and the Deserializer method
serde_json would run for it.

- `STRING`, `USIZE`, `U32`, `UNIT`: `String`, `usize` (32-bit: wasm32), `u32`, `()`.
- `Option(kind)`: `Option<T>`.
- `Vec(kind)`, `Tuple(kinds)`: `Vec<T>`, `(A, B)`.
- `Struct(expecting, fields, deny_unknown)`: a derived struct or struct variant;
  `fields` are `Field(name, kind, default)`, `default` a function or None.
- `Enum(type_name, variants)`: a derived externally tagged enum; each variant
  is `(name, Struct)` or `(name, UNIT)`.
"""

from serde_reader import (
    EOF_OBJECT,
    EOF_VALUE,
    EXPECTED_VALUE,
    KEY_MUST_BE_A_STRING,
    OPEN_BRACE,
    OPEN_BRACKET,
    QUOTE,
    U32_MAX,
    USIZE_MAX,
    CLOSE_BRACE,
    SerdeError,
    invalid_type,
    invalid_value,
    number_unexpected,
    one_of,
)


class String:
    expecting = "a string"

    def deserialize(self, reader):
        byte = reader.whitespace()
        if byte is None:
            raise reader.peek_error(EOF_VALUE)
        if byte != QUOTE:
            raise reader.invalid_type(self.expecting)
        reader.index += 1
        return reader.string()


class Unsigned:
    """An unsigned integer type no wider than u64."""

    def __init__(self, name, maximum):
        self.expecting, self.maximum = name, maximum

    def deserialize(self, reader):
        byte = reader.whitespace()
        if byte is None:
            raise reader.peek_error(EOF_VALUE)
        if byte == 0x2D:
            reader.index += 1
            kind, value = reader.integer(False)
        elif 0x30 <= byte <= 0x39:
            kind, value = reader.integer(True)
        else:
            raise reader.invalid_type(self.expecting)
        if kind == "u" and value <= self.maximum:
            return value
        if kind == "f":
            raise reader.fix(invalid_type(number_unexpected(kind, value), self.expecting))
        raise reader.fix(invalid_value(number_unexpected(kind, value), self.expecting))


class Unit:
    expecting = "unit"

    def deserialize(self, reader):
        byte = reader.whitespace()
        if byte is None:
            raise reader.peek_error(EOF_VALUE)
        if byte != 0x6E:
            raise reader.invalid_type(self.expecting)
        reader.index += 1
        reader.ident(b"ull")


STRING = String()
USIZE = Unsigned("usize", USIZE_MAX)
U32 = Unsigned("u32", U32_MAX)
UNIT = Unit()


class Option:
    def __init__(self, kind):
        self.kind = kind

    def deserialize(self, reader):
        if reader.whitespace() == 0x6E:
            reader.index += 1
            reader.ident(b"ull")
            return None
        return self.kind.deserialize(reader)


def sequence(reader, kind, visit):
    """serde_json's deserialize_seq (and deserialize_struct's `[` branch):
    `visit(next_element)` reads the elements; the closing `]` is checked
    even after an error, which moves the position the error reports."""
    reader.index += 1
    state = {"first": True}

    def next_element(element):
        if not reader.has_next_element(state["first"]):
            return False, None
        state["first"] = False
        return True, element.deserialize(reader)

    try:
        value = visit(next_element)
    except SerdeError as error:
        reader.end_seq()
        raise reader.fix(error) from None
    error = reader.end_seq()
    if error is not None:
        raise error
    return value


class Vec:
    expecting = "a sequence"

    def __init__(self, kind):
        self.kind = kind

    def deserialize(self, reader):
        byte = reader.whitespace()
        if byte is None:
            raise reader.peek_error(EOF_VALUE)
        if byte != OPEN_BRACKET:
            raise reader.invalid_type(self.expecting)
        return sequence(reader, self, self.visit_seq)

    def visit_seq(self, next_element):
        items = []
        while True:
            present, item = next_element(self.kind)
            if not present:
                return items
            items.append(item)


class Tuple(Vec):
    def __init__(self, kinds):
        self.kinds = kinds
        self.expecting = f"a tuple of size {len(kinds)}"

    def visit_seq(self, next_element):
        items = []
        for index, kind in enumerate(self.kinds):
            present, item = next_element(kind)
            if not present:
                raise SerdeError(f"invalid length {index}, expected {self.expecting}")
            items.append(item)
        return tuple(items)


class Field:
    def __init__(self, name, kind, default=None):
        self.name, self.kind, self.default = name, kind, default


class Struct:
    def __init__(self, expecting, fields, deny_unknown):
        self.expecting, self.fields, self.deny_unknown = expecting, fields, deny_unknown
        self.by_name = {field.name: field for field in fields}
        self.names = [field.name for field in fields]
        count = len(fields)
        self.seq_expecting = f"{expecting} with {count} element{'' if count == 1 else 's'}"

    def deserialize(self, reader):
        byte = reader.whitespace()
        if byte is None:
            raise reader.peek_error(EOF_VALUE)
        if byte == OPEN_BRACKET:
            return sequence(reader, self, self.visit_seq)
        if byte != OPEN_BRACE:
            raise reader.invalid_type(self.expecting)
        reader.index += 1
        try:
            value = self.visit_map(reader)
        except SerdeError as error:
            reader.end_map()
            raise reader.fix(error) from None
        reader.end_map()
        return value

    def visit_map(self, reader):
        values, first = {}, True
        while reader.has_next_key(first):
            first = False
            name = reader.map_key()
            field = self.by_name.get(name)
            if field is None:
                if self.deny_unknown:
                    raise SerdeError(f"unknown field `{name}`, expected {one_of(self.names)}")
                reader.colon()
                reader.ignore_value()
                continue
            if name in values:
                raise SerdeError(f"duplicate field `{name}`")
            reader.colon()
            values[name] = field.kind.deserialize(reader)
        for field in self.fields:
            if field.name in values:
                continue
            if field.default is not None:
                values[field.name] = field.default()
            elif isinstance(field.kind, Option):
                values[field.name] = None
            else:
                raise SerdeError(f"missing field `{field.name}`")
        return values

    def visit_seq(self, next_element):
        values = {}
        for index, field in enumerate(self.fields):
            present, value = next_element(field.kind)
            if present:
                values[field.name] = value
            elif field.default is not None:
                values[field.name] = field.default()
            else:
                raise SerdeError(f"invalid length {index}, expected {self.seq_expecting}")
        return values


class Enum:
    """A derived externally tagged enum: `{"variant":body}`, or `"variant"`
    for a variant without fields. Reads to `(name, body)`."""

    def __init__(self, variants):
        self.variants = dict(variants)
        self.names = [name for name, _ in variants]

    def unknown(self, name):
        return SerdeError(f"unknown variant `{name}`, expected {one_of(self.names)}")

    def deserialize(self, reader):
        byte = reader.whitespace()
        if byte == OPEN_BRACE:
            reader.index += 1
            value = self.visit_map(reader)
            byte = reader.whitespace()
            if byte == CLOSE_BRACE:
                reader.index += 1
                return value
            raise reader.error(EOF_OBJECT if byte is None else EXPECTED_VALUE)
        if byte == QUOTE:
            reader.index += 1
            name = reader.string()
            if name not in self.variants:
                raise reader.fix(self.unknown(name))
            if self.variants[name] is not UNIT:
                # No position: serde_json returns this error unplaced.
                raise SerdeError("invalid type: unit variant, expected struct variant")
            return name, None
        raise reader.peek_error(EOF_VALUE if byte is None else EXPECTED_VALUE)

    def visit_map(self, reader):
        byte = reader.whitespace()
        if byte != QUOTE:
            if byte == CLOSE_BRACE:
                raise reader.peek_error(EXPECTED_VALUE)
            raise reader.peek_error(EOF_OBJECT if byte is None else KEY_MUST_BE_A_STRING)
        name = reader.map_key()
        if name not in self.variants:
            raise reader.fix(self.unknown(name))
        reader.colon()
        return name, self.variants[name].deserialize(reader)
