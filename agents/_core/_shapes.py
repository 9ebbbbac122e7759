"""The JSON shapes of wire values: how each is checked, converted and described.

A :class:`Shape` is what ``_codec`` needs to know about one field's value: its
JSON Schema, a reader that checks (and converts) a decoded JSON value, and a
writer when the Python value is not already JSON (a tuple, a Mapping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from attrs import frozen

from sessions import JSON, JSONObject

from ._fields import kind


class Refused(Exception):
    """A decoding failure; the message lacks the location, which callers prefix."""


class Inner(Exception):
    """A failure inside a nested value; the message continues the field's name."""


class Mismatch(Exception):
    """A value of the wrong JSON type; the caller names the field."""


MISMATCH: Final = Mismatch()


def fail() -> Any:
    raise MISMATCH


@frozen
class Shape:
    """The JSON form of one value: its JSON Schema, how to read it and how to write it.

    ``fast`` holds the exact Python types a JSON decoder yields for a value that
    needs no conversion (the common case, checked without a call); anything else
    goes through ``read``, which converts or raises.
    """

    expected: str  # for messages: "a string"
    schema: JSONObject
    read: Callable[[JSON], Any]
    write: Callable[[Any], JSON] | None = None  # None: the value is its own JSON
    fast: frozenset[type] = frozenset()
    null_ok: bool = False  # null is a value (any JSON), not an absence


def _read_string(v: JSON) -> str:
    return v if isinstance(v, str) else fail()


def _read_integer(v: JSON) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else fail()


def _read_number(v: JSON) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else fail()


def _read_boolean(v: JSON) -> bool:
    return v if isinstance(v, bool) else fail()


def _read_object(v: JSON) -> JSONObject:
    return v if isinstance(v, dict) else fail()


def _read_strings(v: JSON) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(item, str) for item in v):
        raise MISMATCH
    return tuple(str(item) for item in v)


def _write_strings(v: tuple[str, ...]) -> JSON:
    return list[JSON](v)


def _write_mapping(v: Mapping[str, JSON]) -> JSON:
    return dict(v)


STRING: Final = Shape("a string", {"type": "string"}, _read_string, fast=frozenset({str}))
INTEGER: Final = Shape("an integer", {"type": "integer"}, _read_integer, fast=frozenset({int}))
NUMBER: Final = Shape("a number", {"type": "number"}, _read_number, fast=frozenset({float}))
BOOLEAN: Final = Shape("a boolean", {"type": "boolean"}, _read_boolean, fast=frozenset({bool}))
OBJECT: Final = Shape("an object", {"type": "object"}, _read_object, fast=frozenset({dict}))
# An object held as a read-only Mapping: written as a fresh dict.
MAPPING: Final = Shape("an object", {"type": "object"}, _read_object, _write_mapping)
ANY: Final = Shape("any JSON value", {}, lambda v: v, null_ok=True)
STRINGS: Final = Shape(
    "an array of strings",
    {"type": "array", "items": {"type": "string"}},
    _read_strings,
    _write_strings,
)


def choice(options: tuple[str, ...]) -> Shape:
    """One of *options* (a ``Literal``'s values)."""

    def read(v: JSON) -> str:
        for option in options:
            if v == option:
                return option
        raise MISMATCH

    expected = "one of " + ", ".join(repr(option) for option in options)
    return Shape(expected, {"enum": list[JSON](options)}, read)


def refined(shape: Shape, check: Callable[[Any], None], **schema: JSON) -> Shape:
    """*shape* whose values must also pass *check* (raising ``ValueError`` with the
    whole message after the location); *schema* adds the same limits to its schema."""

    def read(v: JSON) -> Any:
        value = shape.read(v)
        check(value)
        return value

    return Shape(shape.expected, shape.schema | schema, read, shape.write)


def nested(name: str, decode: Callable[[JSONObject], Any], encode: Callable[[Any], JSON]) -> Shape:
    """A value that is itself a record, *name* in the schema's ``$defs`` (an object)."""

    def read(v: JSON) -> Any:
        if not isinstance(v, dict):
            raise MISMATCH
        try:
            return decode(v)
        except Refused as refused:
            raise Inner(f": {refused}") from None

    return Shape("an object", {"$ref": f"#/$defs/{name}"}, read, encode)


def array_of(
    name: str, decode: Callable[[JSONObject], Any], encode: Callable[[Any], JSON]
) -> Shape:
    """A tuple of records (an array of objects): a bad item is named by its index."""

    def read(v: JSON) -> tuple[Any, ...]:
        if not isinstance(v, list):
            raise MISMATCH
        items = []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                raise Inner(f"[{i}] must be an object, got {kind(item)}")
            try:
                items.append(decode(item))
            except Refused as refused:
                raise Inner(f"[{i}]: {refused}") from None
        return tuple(items)

    def write(v: tuple[Any, ...]) -> JSON:
        return [encode(item) for item in v]

    schema: JSONObject = {"type": "array", "items": {"$ref": f"#/$defs/{name}"}}
    return Shape("an array", schema, read, write)
