"""Reading members of the runtime's JSON (events, acks, rows) as the ACP side needs them.

The adapter takes the runtime's events as JSON objects and must never fail on a
member that is missing or of another type (an older log, another runtime): each
reader gives a neutral value instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from sessions import JSON


def str_field(obj: Mapping[str, JSON], key: str) -> str:
    """A string member of *obj* (``""`` when absent or anything else)."""
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def count_field(obj: Mapping[str, JSON], key: str) -> int | None:
    """A non-negative integer member of *obj* (``None`` when absent or anything else)."""
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
