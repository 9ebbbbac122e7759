"""The SQL of the SQLite store: plain synchronous sqlite3, no async, no bridge.

Everything here runs on the database's own thread (aiosqlite's worker): the
whole batch transaction as one function, the connection set-up and the
migrations. The read queries are plain strings with row decoders, used by the
async backend through aiosqlite's public API.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Literal

from ._batch import BatchResult, Known, StoredCommand, apply_batch
from ._errors import StorageUnavailable, StoreError
from ._json import dumps
from ._models import (
    Append,
    Approval,
    CommandRecord,
    Event,
    Session,
    Turn,
    TurnStatus,
)
from ._rows import (
    as_int,
    decode_approval,
    decode_command,
    decode_event,
    decode_session,
)
from ._schema import MIGRATIONS, Migration, migrate
from ._seqs_local import LocalSeqAllocator
from ._sqlite_errors import unstorable
from ._store import import_into

Durability = Literal["normal", "full"]


# --- set-up -------------------------------------------------------------------------


def configure(
    conn: sqlite3.Connection,
    durability: Durability,
    busy_timeout_ms: int,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> None:
    """Pragmas, then migrations. *conn* must be in autocommit mode."""
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode[0]).lower() != "wal":
        raise StoreError(f"cannot use WAL journal mode (got {mode[0]!r})")
    # NORMAL in WAL mode survives a process crash; FULL also survives power loss.
    conn.execute(
        "PRAGMA synchronous = FULL" if durability == "full" else "PRAGMA synchronous = NORMAL"
    )
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn, migrations)


# --- the batch transaction ------------------------------------------------------------


def commit_batch(
    conn: sqlite3.Connection, appends: Sequence[Append], known: Known, ts: float
) -> BatchResult:
    """Apply *appends* in one ``BEGIN IMMEDIATE`` … ``COMMIT``; roll back on any error.

    Seqs come from *known* (the writer's memory) or ``MAX(seq)``: sound because
    the store's file lock makes its writer the only one of the database.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        tx = SqliteTx(conn)
        result = apply_batch(tx, appends, known, ts, seqs=LocalSeqAllocator(known.seqs, tx))
        conn.execute("COMMIT")
    except BaseException:
        rollback_quietly(conn)
        raise
    return result


def import_session(
    conn: sqlite3.Connection,
    session: Session,
    events: Sequence[Event],
    max_live_sessions: int | None,
) -> None:
    """Create *session* with *events* as its log in one ``BEGIN IMMEDIATE`` … ``COMMIT``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        import_into(SqliteTx(conn), session, events, max_live_sessions)
        conn.execute("COMMIT")
    except BaseException:
        rollback_quietly(conn)
        raise


# Never a principal: the row exists only inside the probe's transaction.
_PROBE_OWNER = "\x00write-probe"
# Free space below which the probe reports the disk full: a small write fits in
# the WAL's old frames on a full disk, so committing one alone proves little.
PROBE_FREE_BYTES = 1 << 20


def probe_write(conn: sqlite3.Connection) -> None:
    """Whether the storage takes writes: room on the disk, and one write
    transaction that leaves nothing behind (the health probe).

    Inserting and deleting a row dirties pages that ``COMMIT`` must write, so a
    failing device (or a read-only database) fails it as it fails a batch.

    Raises:
        StorageUnavailable: less than :data:`PROBE_FREE_BYTES` free, or the write failed.
    """
    file = str(conn.execute("PRAGMA database_list").fetchone()[2])
    if file:  # "" for an in-memory database
        disk = os.statvfs(os.path.dirname(file))
        free = disk.f_bavail * disk.f_frsize
        if free < PROBE_FREE_BYTES:
            raise StorageUnavailable(
                f"the database is unavailable (SQLITE_FULL): {free} bytes free on its disk"
            )
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO owners (owner, live_sessions) VALUES (?, 0)", (_PROBE_OWNER,))
        conn.execute("DELETE FROM owners WHERE owner = ?", (_PROBE_OWNER,))
        conn.execute("COMMIT")
    except BaseException:
        rollback_quietly(conn)
        raise


def rollback_quietly(conn: sqlite3.Connection) -> None:
    # The original error is the one worth reporting; a failing ROLLBACK after
    # it only means SQLite already rolled back on its own.
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


class SqliteTx:
    """The :class:`~sessions._batch.Tx` of one open SQLite transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @contextmanager
    def savepoint(self, needed: bool) -> Iterator[None]:
        """Undo the append on any error; one whose data is at fault fails alone.

        A value SQLite or Python cannot store (a constraint, a lone surrogate, an
        oversized int or blob) becomes :class:`Unstorable` for this append, and
        the transaction goes on. Anything else (disk full, I/O error, a bug)
        escapes and fails the whole transaction.
        """
        if not needed:
            # One statement: SQLite undoes a failed statement by itself and the
            # transaction goes on. Skipping the savepoint saves two statements
            # on the hot path (one streamed event per append).
            try:
                yield
            except BaseException as exc:
                if (rejected := unstorable(exc)) is None or not self._conn.in_transaction:
                    raise
                raise rejected from exc
            return
        self._conn.execute("SAVEPOINT append_")
        try:
            yield
        except BaseException as exc:
            if not self._undo():
                raise  # SQLite already rolled the transaction back: the batch fails
            if (rejected := unstorable(exc)) is None:
                raise
            raise rejected from exc
        self._conn.execute("RELEASE append_")

    def _undo(self) -> bool:
        """Roll back to the append's savepoint; ``False`` if the transaction is gone."""
        try:
            self._conn.execute("ROLLBACK TO append_")
            self._conn.execute("RELEASE append_")
        except sqlite3.Error:
            return False
        return True

    def load_session(self, session_id: str) -> Session | None:
        row = self._conn.execute(SELECT_SESSION, (session_id,)).fetchone()
        return None if row is None else decode_session(row)

    def max_seq(self, session_id: str) -> int:
        """For :class:`~sessions._seqs_local.LocalSeqAllocator` on a miss."""
        row = self._conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = ?", (session_id,)
        ).fetchone()
        return as_int(row[0])

    def load_command(self, session_id: str, command_id: str) -> StoredCommand | None:
        row = self._conn.execute(SELECT_COMMAND, (session_id, command_id)).fetchone()
        return None if row is None else decode_command(row)

    def load_events(self, session_id: str, first_seq: int, last_seq: int) -> list[Event]:
        rows = self._conn.execute(SELECT_EVENT_RANGE, (session_id, first_seq, last_seq))
        return [decode_event(row) for row in rows]

    def load_approval(self, session_id: str, call_id: str) -> Approval | None:
        row = self._conn.execute(SELECT_APPROVAL, (session_id, call_id)).fetchone()
        return None if row is None else decode_approval(row)

    def save_session(self, session: Session) -> None:
        self._conn.execute(
            """
            INSERT INTO sessions (id, owner, title, created_at, updated_at, current_agent, deleted,
                instructions)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET
                owner = excluded.owner, title = excluded.title,
                created_at = excluded.created_at, updated_at = excluded.updated_at,
                current_agent = excluded.current_agent, deleted = excluded.deleted,
                instructions = excluded.instructions
            """,
            (
                session.id,
                session.owner,
                session.title,
                session.created_at,
                session.updated_at,
                session.current_agent,
                int(session.deleted),
                session.instructions,
            ),
        )

    def live_sessions(self, owner: str) -> int:
        row = self._conn.execute(
            "SELECT live_sessions FROM owners WHERE owner = ?", (owner,)
        ).fetchone()
        return 0 if row is None else as_int(row[0])

    def add_live_sessions(self, owner: str, delta: int) -> None:
        self._conn.execute(
            "INSERT INTO owners (owner, live_sessions) VALUES (?, ?) ON CONFLICT (owner)"
            " DO UPDATE SET live_sessions = live_sessions + excluded.live_sessions",
            (owner, delta),
        )

    def save_events(self, events: Sequence[Event]) -> None:
        self._conn.executemany(
            "INSERT INTO events (session_id, seq, type, ts, turn_id, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (e.session_id, e.seq, e.type, e.ts, e.turn_id, e.payload_text or dumps(e.data))
                for e in events
            ],
        )

    def save_command(
        self, record: CommandRecord, first_seq: int | None, last_seq: int | None
    ) -> None:
        self._conn.execute(
            "INSERT INTO commands (session_id, command_id, ack, first_seq, last_seq)"
            " VALUES (?, ?, ?, ?, ?)",
            (record.session_id, record.command_id, dumps(record.ack), first_seq, last_seq),
        )

    def save_turn(self, turn: Turn) -> None:
        self._conn.execute(
            """
            INSERT INTO turns (id, session_id, agent, status, started_at, updated_at, state)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET
                session_id = excluded.session_id, agent = excluded.agent,
                status = excluded.status, started_at = excluded.started_at,
                updated_at = excluded.updated_at, state = excluded.state
            """,
            (
                turn.id,
                turn.session_id,
                turn.agent,
                turn.status.value,
                turn.started_at,
                turn.updated_at,
                dumps(turn.state),
            ),
        )

    def save_approval(self, approval: Approval) -> None:
        self._conn.execute(
            """
            INSERT OR REPLACE INTO approvals (session_id, call_id, turn_id, name, arguments,
                rule, requested_at, expires_at, status, resolution, resolved_by)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (
                approval.session_id,
                approval.call_id,
                approval.turn_id,
                approval.name,
                dumps(approval.arguments),
                approval.rule,
                approval.requested_at,
                approval.expires_at,
                approval.status.value,
                dumps(approval.resolution),
                approval.resolved_by,
            ),
        )


# --- reads --------------------------------------------------------------------------

_SESSION_COLS = "id, owner, title, created_at, updated_at, current_agent, deleted, instructions"
_EVENT_COLS = "session_id, seq, type, ts, turn_id, data"
_TURN_COLS = "id, session_id, agent, status, started_at, updated_at, state"
_APPROVAL_COLS = (
    "a.session_id, a.call_id, a.turn_id, a.name, a.arguments, a.rule, a.requested_at,"
    " a.expires_at, a.status, a.resolution, a.resolved_by"
)

SELECT_SESSION = f"SELECT {_SESSION_COLS} FROM sessions WHERE id = ?"
LIST_SESSIONS = (
    f"SELECT {_SESSION_COLS} FROM sessions WHERE owner = ? AND deleted = 0"
    " ORDER BY created_at DESC, id DESC LIMIT ?"
)
LIST_SESSIONS_BEFORE = (
    f"SELECT {_SESSION_COLS} FROM sessions WHERE owner = ? AND deleted = 0"
    " AND (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT ?"
)
SELECT_EVENTS = (
    f"SELECT {_EVENT_COLS} FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
SELECT_EVENT_RANGE = (
    f"SELECT {_EVENT_COLS} FROM events WHERE session_id = ? AND seq BETWEEN ? AND ? ORDER BY seq"
)
SELECT_COMMAND = (
    "SELECT ack, first_seq, last_seq FROM commands WHERE session_id = ? AND command_id = ?"
)
SELECT_TURN = f"SELECT {_TURN_COLS} FROM turns WHERE id = ?"
_ACTIVE = ", ".join(f"'{status.value}'" for status in TurnStatus if status.active)
_ACTIVE_TURNS_FROM = (
    f"SELECT {', '.join('t.' + c for c in _TURN_COLS.split(', '))} FROM turns t"
    " JOIN sessions s ON s.id = t.session_id AND s.deleted = 0"
    f" WHERE t.status IN ({_ACTIVE})"
)
ACTIVE_TURNS = f"{_ACTIVE_TURNS_FROM} ORDER BY t.started_at, t.id"
# Of the sessions in one parameter, a JSON array: no SQL built per call.
ACTIVE_TURNS_OF = (
    f"{_ACTIVE_TURNS_FROM} AND t.session_id IN (SELECT value FROM json_each(?))"
    " ORDER BY t.started_at, t.id"
)
SELECT_APPROVAL = (
    f"SELECT {_APPROVAL_COLS} FROM approvals a WHERE a.session_id = ? AND a.call_id = ?"
)
PENDING_APPROVALS_OF = (
    f"SELECT {_APPROVAL_COLS} FROM approvals a WHERE a.session_id = ? AND a.status = 'pending'"
    " ORDER BY a.requested_at, a.session_id, a.call_id"
)
PENDING_APPROVALS_ALL = (
    f"SELECT {_APPROVAL_COLS} FROM approvals a"
    " JOIN sessions s ON s.id = a.session_id AND s.deleted = 0"
    " WHERE a.status = 'pending' ORDER BY a.requested_at, a.session_id, a.call_id"
)
