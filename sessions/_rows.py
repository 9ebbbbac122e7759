"""Rows of the SQL stores decoded into the store's values (shared by SQLite and PostgreSQL).

Both stores keep the same columns with the same meaning; payloads are JSON text
in both (PostgreSQL ``text``, not ``jsonb``: the text a client gets is the text
that was committed, byte for byte).
"""

from __future__ import annotations

from typing import Protocol

from ._batch import StoredCommand
from ._errors import StoreError
from ._json import JSONObject, loads_object
from ._models import Approval, ApprovalStatus, Event, Session, Turn, TurnStatus


class Row(Protocol):
    """A result row: a tuple (psycopg), or a ``sqlite3.Row``."""

    def __getitem__(self, index: int, /) -> object: ...


def as_str(value: object) -> str:
    if not isinstance(value, str):
        raise StoreError(f"corrupt row: expected text, got {type(value).__name__}")
    return value


def as_opt_str(value: object) -> str | None:
    return None if value is None else as_str(value)


def as_int(value: object) -> int:
    if not isinstance(value, int):
        raise StoreError(f"corrupt row: expected an integer, got {type(value).__name__}")
    return value


def as_opt_int(value: object) -> int | None:
    return None if value is None else as_int(value)


def as_float(value: object) -> float:
    if not isinstance(value, int | float):
        raise StoreError(f"corrupt row: expected a number, got {type(value).__name__}")
    return float(value)


def as_json(value: object) -> JSONObject:
    try:
        return loads_object(as_str(value))
    except ValueError as exc:
        raise StoreError(f"corrupt row: {exc}") from exc


def decode_session(row: Row) -> Session:
    return Session(
        id=as_str(row[0]),
        owner=as_str(row[1]),
        title=as_str(row[2]),
        created_at=as_float(row[3]),
        updated_at=as_float(row[4]),
        current_agent=as_str(row[5]),
        deleted=bool(as_int(row[6])),
        instructions=as_opt_str(row[7]),
    )


def decode_event(row: Row) -> Event:
    return Event(
        session_id=as_str(row[0]),
        seq=as_int(row[1]),
        type=as_str(row[2]),
        ts=as_float(row[3]),
        turn_id=as_opt_str(row[4]),
        data=as_json(row[5]),
        payload_text=row[5] if isinstance(row[5], str) else None,
    )


def decode_command(row: Row) -> StoredCommand:
    return StoredCommand(
        ack=as_json(row[0]), first_seq=as_opt_int(row[1]), last_seq=as_opt_int(row[2])
    )


def decode_turn(row: Row) -> Turn:
    return Turn(
        id=as_str(row[0]),
        session_id=as_str(row[1]),
        agent=as_str(row[2]),
        status=TurnStatus(as_str(row[3])),
        started_at=as_float(row[4]),
        updated_at=as_float(row[5]),
        state=as_json(row[6]),
    )


def decode_approval(row: Row) -> Approval:
    return Approval(
        session_id=as_str(row[0]),
        call_id=as_str(row[1]),
        turn_id=as_str(row[2]),
        name=as_str(row[3]),
        arguments=as_json(row[4]),
        rule=as_str(row[5]),
        requested_at=as_float(row[6]),
        expires_at=as_float(row[7]),
        status=ApprovalStatus(as_str(row[8])),
        resolution=as_json(row[9]),
        resolved_by=as_opt_str(row[10]),
    )
