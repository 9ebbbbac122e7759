"""JSON value types shared by every package.

The store keeps event payloads as plain JSON objects; the typed event union lives
in ``agents`` (the dependency points that way), so here a payload is just data.
"""

from __future__ import annotations

import json
from typing import TypeAlias

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
JSONObject: TypeAlias = "dict[str, JSON]"


# One encoder for the hot paths (json.dumps with options builds one per call).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: JSON) -> str:
    """Compact, deterministic-enough JSON text (no spaces, UTF-8 kept)."""
    text: str = _encode(value)
    return text


def loads_object(text: str | bytes) -> JSONObject:
    """Parse *text* and insist on a JSON object.

    Raises:
        ValueError: the text is not JSON or not an object.
    """
    value: JSON = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def valid_text(text: str) -> str:
    """*text* with every lone UTF-16 surrogate replaced by U+FFFD.

    JSON's ``\\ud800`` escapes decode to lone surrogates, which UTF-8 (and so the
    database) cannot hold. Clients' input is refused at the server's boundary;
    text a model produced is repaired with this instead, so a turn never fails
    on it. Pairs split across two strings are joined when they meet again here.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
