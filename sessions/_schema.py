"""SQLite schema and its migrations, keyed on ``PRAGMA user_version``.

A migration is a numbered list of statements; :func:`migrate` applies, in order,
every migration above the database's ``user_version``, each in its own
transaction together with the version bump, so a crash mid-upgrade leaves the
previous version intact. Add a migration by appending to :data:`MIGRATIONS`;
never edit a released one.

Status columns carry no CHECK list: the enums in ``_models`` validate on read,
and a new status must not need a table rebuild (SQLite cannot alter a CHECK).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence

from attrs import frozen

from ._errors import StoreError

log = logging.getLogger("agent_runtime.store")


@frozen
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_V1 = Migration(
    version=1,
    description="sessions, events, commands, turns, approvals",
    statements=(
        """
        CREATE TABLE sessions (
            id            TEXT PRIMARY KEY,
            owner         TEXT NOT NULL,
            title         TEXT NOT NULL,
            created_at    REAL NOT NULL,
            updated_at    REAL NOT NULL,
            current_agent TEXT NOT NULL,
            deleted       INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1))
        )
        """,
        # The listing query: one owner's sessions, newest first, keyset-paginated.
        "CREATE INDEX sessions_owner_created ON sessions (owner, created_at, id)",
        """
        CREATE TABLE events (
            session_id TEXT NOT NULL REFERENCES sessions (id),
            seq        INTEGER NOT NULL CHECK (seq >= 1),
            type       TEXT NOT NULL,
            ts         REAL NOT NULL,
            turn_id    TEXT,
            data       TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE commands (
            session_id TEXT NOT NULL REFERENCES sessions (id),
            command_id TEXT NOT NULL,
            ack        TEXT NOT NULL,
            first_seq  INTEGER,
            last_seq   INTEGER,
            PRIMARY KEY (session_id, command_id)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE turns (
            id         TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id),
            agent      TEXT NOT NULL,
            status     TEXT NOT NULL,
            started_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            state      TEXT NOT NULL
        )
        """,
        "CREATE INDEX turns_session ON turns (session_id)",
        # Restart recovery asks for active turns by status.
        "CREATE INDEX turns_status ON turns (status)",
        """
        CREATE TABLE approvals (
            session_id   TEXT NOT NULL REFERENCES sessions (id),
            call_id      TEXT NOT NULL,
            turn_id      TEXT NOT NULL,
            name         TEXT NOT NULL,
            arguments    TEXT NOT NULL,
            rule         TEXT NOT NULL,
            requested_at REAL NOT NULL,
            expires_at   REAL NOT NULL,
            status       TEXT NOT NULL,
            resolution   TEXT NOT NULL,
            resolved_by  TEXT,
            PRIMARY KEY (session_id, call_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX approvals_pending ON approvals (requested_at) WHERE status = 'pending'",
    ),
)

_V2 = Migration(
    version=2,
    description="a maintained count of live sessions per owner",
    statements=(
        # Read and updated inside the batch transaction that creates or deletes
        # a session, so the per-principal cap is atomic and costs O(1).
        """
        CREATE TABLE owners (
            owner         TEXT PRIMARY KEY,
            live_sessions INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        """
        INSERT INTO owners (owner, live_sessions)
        SELECT owner, COUNT(*) FROM sessions WHERE deleted = 0 GROUP BY owner
        """,
    ),
)

_V3 = Migration(
    version=3,
    description="project instructions stored with each session",
    statements=(
        # NULL: the client sent none (every session before this version).
        "ALTER TABLE sessions ADD COLUMN instructions TEXT",
    ),
)

_V4 = Migration(
    version=4,
    description="events and approvals as rowid tables, their primary keys separate indexes",
    statements=(
        # WITHOUT ROWID stored each whole row in the primary key's b-tree, and
        # SQLite reads a key that spills to overflow pages in full to compare it:
        # every append next to a session's large event (a pasted file, a big tool
        # result) read all of it. Measured: 570 KB in a session made each append
        # to it ~100 us of SQLite instead of ~10. Approvals hold a call's
        # arguments (a file to write) the same way. Now the key indexes hold only
        # the keys, and rows are appended in rowid order. Copied in key order, so
        # an upgraded log keeps each session's events together.
        """
        CREATE TABLE events_v4 (
            session_id TEXT NOT NULL REFERENCES sessions (id),
            seq        INTEGER NOT NULL CHECK (seq >= 1),
            type       TEXT NOT NULL,
            ts         REAL NOT NULL,
            turn_id    TEXT,
            data       TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )
        """,
        """
        INSERT INTO events_v4 (session_id, seq, type, ts, turn_id, data)
        SELECT session_id, seq, type, ts, turn_id, data FROM events ORDER BY session_id, seq
        """,
        "DROP TABLE events",
        "ALTER TABLE events_v4 RENAME TO events",
        """
        CREATE TABLE approvals_v4 (
            session_id   TEXT NOT NULL REFERENCES sessions (id),
            call_id      TEXT NOT NULL,
            turn_id      TEXT NOT NULL,
            name         TEXT NOT NULL,
            arguments    TEXT NOT NULL,
            rule         TEXT NOT NULL,
            requested_at REAL NOT NULL,
            expires_at   REAL NOT NULL,
            status       TEXT NOT NULL,
            resolution   TEXT NOT NULL,
            resolved_by  TEXT,
            PRIMARY KEY (session_id, call_id)
        )
        """,
        """
        INSERT INTO approvals_v4 (session_id, call_id, turn_id, name, arguments, rule,
                                  requested_at, expires_at, status, resolution, resolved_by)
        SELECT session_id, call_id, turn_id, name, arguments, rule,
               requested_at, expires_at, status, resolution, resolved_by
        FROM approvals ORDER BY session_id, call_id
        """,
        "DROP TABLE approvals",  # and its index, made again below
        "ALTER TABLE approvals_v4 RENAME TO approvals",
        "CREATE INDEX approvals_pending ON approvals (requested_at) WHERE status = 'pending'",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4)


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database behind *conn* (autocommit mode) to the last version.

    Returns the resulting version.

    Raises:
        StoreError: the database is newer than *migrations* know.
        sqlite3.Error: a migration failed (its transaction was rolled back).
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ...")
    current = user_version(conn)
    latest = len(migrations)
    if current > latest:
        raise StoreError(
            f"the database has schema version {current}, newer than this agent-runtime "
            f"supports ({latest}); upgrade agent-runtime or use another database"
        )
    pending = migrations[current:]
    if current and pending:
        # A rebuild (v4) copies whole tables: a big file takes a while, and needs
        # free disk for the copy and the write-ahead log.
        log.info("upgrading the database schema from version %d to %d", current, latest)
    started = time.monotonic()
    for migration in pending:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.statements:
                conn.execute(statement)
            # user_version lives in the header page, so it commits (or rolls
            # back) atomically with the statements above.
            conn.execute(f"PRAGMA user_version = {migration.version:d}")
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back on its own (disk full): the original
            # error is the one to report, not "no transaction is active".
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    if current and pending:
        # The copies went through the write-ahead log; give its disk space back
        # now rather than keep a log as large as the tables for the whole run.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info("schema upgraded to version %d in %.1f s", latest, time.monotonic() - started)
    return latest
