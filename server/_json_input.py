"""Client JSON, decoded and vetted once at the boundary, before anything acts on it.

Valid JSON can still hold what no layer below should meet: a lone UTF-16
surrogate (``"\\ud800"``) that UTF-8 and so the database cannot hold, integers
beyond what SQLite stores, ``NaN``/``Infinity`` (not JSON at all, though Python
parses them), nesting deep enough to exhaust recursion, and an object that
names one key twice. Each is refused here with a 400 / ``error`` frame that
names the field (or the key), so no client input can fail a store batch or a
handler with a 500.

A repeated key is valid JSON syntax, but parsers disagree on which value counts
(Python keeps the last, others the first or refuse), so a proxy, an audit log or
the IDE could read ``{"decision": "deny", "decision": "approve"}`` differently
from us. Refusing it is the only reading everyone shares.

Limits (docs/protocol.md §9): nesting depth :data:`MAX_DEPTH`, integers within
:data:`INT_MIN`..:data:`INT_MAX` (SQLite's signed 64 bits), text that UTF-8 can
encode, finite numbers, unique keys.
"""

from __future__ import annotations

import json
import math
from typing import Final

from sessions import JSON, JSONObject

from ._errors import ApiError, bad_request

MAX_DEPTH: Final = 64
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1


def decode_json(raw: str | bytes, what: str) -> JSON:
    """Parse *raw* (a body or frame, described as *what* in errors) and vet it.

    Raises:
        ApiError: 400 with code ``bad_json`` (also for a repeated key),
            ``too_deep``, ``invalid_number`` or ``invalid_text``; the message
            names the offending field or key.
    """
    try:
        value: JSON = json.loads(
            raw, parse_constant=_refuse_constant, object_pairs_hook=unique_keys
        )
    except RecursionError:
        raise _too_deep(what) from None
    except DuplicateKey as error:
        raise bad_request("bad_json", f"{what}: {error}") from None
    except _NotJSON as error:
        raise bad_request("invalid_number", f"{what}: {error}") from None
    except (ValueError, UnicodeDecodeError) as error:
        # Python refuses integers of more than 4300 digits with a plain ValueError.
        if "integer string conversion" in str(error):
            raise bad_request("invalid_number", f"{what}: {_INT_RANGE}") from None
        raise bad_request("bad_json", f"{what} is not valid JSON: {error}") from None
    vet_json(value, what)
    return value


def vet_json(value: JSON, what: str) -> None:
    """Refuse *value* if it holds anything the boundary rules forbid.

    Iterative, so a value nested past the limit is refused rather than recursed into.

    Raises:
        ApiError: 400 ``too_deep``, ``invalid_number`` or ``invalid_text``.
    """
    stack: list[tuple[JSON, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _vet_text(item, what, path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise bad_request("invalid_number", f"{_where(what, path)}: {_INT_RANGE}")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise bad_request("invalid_number", f"{_where(what, path)}: {_FINITE}")
        elif len(path) >= MAX_DEPTH:
            raise _too_deep(what)
        elif isinstance(item, dict):
            for key, child in item.items():
                _vet_text(key, what, path, key=True)
                stack.append((child, (*path, key)))
        else:
            stack.extend((child, (*path, index)) for index, child in enumerate(item))


class DuplicateKey(ValueError):
    """A JSON object names :attr:`key` twice (raised by :func:`unique_keys`)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"the key {_printable(key)!r} appears twice in one object; "
            "duplicate keys are refused, since which one counts is ambiguous"
        )


def unique_keys(pairs: list[tuple[str, JSON]]) -> JSONObject:
    """``object_pairs_hook`` for :func:`json.loads`: the object, unless a key repeats.

    Raises:
        DuplicateKey: the first key that appears a second time.
    """
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return value


class _NotJSON(ValueError):
    pass


_INT_RANGE: Final = f"integers must be between {INT_MIN} and {INT_MAX}"
_FINITE: Final = "numbers must be finite (NaN and Infinity are not JSON)"


def _refuse_constant(name: str) -> float:
    raise _NotJSON(f"{name} is not a JSON number; {_FINITE}")


def _vet_text(text: str, what: str, path: tuple[str | int, ...], *, key: bool = False) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        where = _where(what, path)
        if key:
            where = f"a key of {where}"
        raise bad_request(
            "invalid_text",
            f"{where} is not valid Unicode text: lone surrogate at position {error.start}",
        ) from None


def _too_deep(what: str) -> ApiError:
    return bad_request("too_deep", f"{what} nests deeper than {MAX_DEPTH} levels")


def _where(what: str, path: tuple[str | int, ...]) -> str:
    """``content`` or ``result[3].name``: the field as a client would write it."""
    if not path:
        return what
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{_printable(part)}" if out else _printable(part)
    return f"field {out!r}"


def _printable(name: str) -> str:
    # A field name is echoed in the error message, which must itself be storable text.
    return name if name.isascii() else name.encode("utf-8", "backslashreplace").decode("utf-8")
