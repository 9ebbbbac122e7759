"""Typed, validating reads of JSON objects, shared by the event and command codecs."""

from __future__ import annotations

from typing import TypeVar

from sessions import JSON, JSONObject

_L = TypeVar("_L", bound=str)


def kind(value: JSON) -> str:
    """The JSON name of *value*'s type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class Fields:
    """Typed, validating access to the fields of a JSON object.

    Every getter raises :class:`ValueError` naming the field and the expected type;
    ``opt_*`` getters treat an absent key and ``null`` alike as ``None``.
    """

    def __init__(self, data: JSONObject, where: str) -> None:
        self.data = data
        self.where = where

    def _fail(self, key: str, expected: str) -> ValueError:
        if key not in self.data:
            return ValueError(f"{self.where}: missing field {key!r} (expected {expected})")
        got = kind(self.data[key])
        return ValueError(f"{self.where}: field {key!r} must be {expected}, got {got}")

    def string(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def opt_string(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.string(key)

    def integer(self, key: str) -> int:
        value = self.data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, "an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self.data.get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        value = self.data.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._fail(key, "a number")
        return float(value)

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "a boolean")
        return value

    def obj(self, key: str) -> JSONObject:
        value = self.data.get(key)
        if not isinstance(value, dict):
            raise self._fail(key, "an object")
        return value

    def opt_obj(self, key: str) -> JSONObject | None:
        return None if self.data.get(key) is None else self.obj(key)

    def array(self, key: str) -> list[JSON]:
        value = self.data.get(key)
        if not isinstance(value, list):
            raise self._fail(key, "an array")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        items = self.array(key)
        if not all(isinstance(item, str) for item in items):
            raise self._fail(key, "an array of strings")
        return tuple(str(item) for item in items)

    def choice(self, key: str, choices: tuple[_L, ...]) -> _L:
        value = self.data.get(key)
        for option in choices:
            if value == option:
                return option
        raise self._fail(key, "one of " + ", ".join(repr(c) for c in choices))
