"""PostgreSQL schema and its migrations, recorded in a ``schema_version`` table.

The tables and columns are the SQLite store's (``_schema.py``) with PostgreSQL
types: the same rows decode the same way (``_rows.py``). Versions count on
their own: version 1 here is SQLite's versions 1 to 3. A migration runs in one
transaction with its version bump, under an advisory lock so that two servers
starting at once do not both migrate. Add one by appending to
:data:`PG_MIGRATIONS`; never edit a released one.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._errors import StoreError
from ._schema import Migration

_V1 = Migration(
    version=1,
    description="sessions, events, commands, turns, approvals, owners",
    statements=(
        """
        CREATE TABLE sessions (
            id            TEXT PRIMARY KEY,
            owner         TEXT NOT NULL,
            title         TEXT NOT NULL,
            created_at    DOUBLE PRECISION NOT NULL,
            updated_at    DOUBLE PRECISION NOT NULL,
            current_agent TEXT NOT NULL,
            deleted       SMALLINT NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
            instructions  TEXT
        )
        """,
        "CREATE INDEX sessions_owner_created ON sessions (owner, created_at, id)",
        """
        CREATE TABLE events (
            session_id TEXT NOT NULL REFERENCES sessions (id),
            seq        BIGINT NOT NULL CHECK (seq >= 1),
            type       TEXT NOT NULL,
            ts         DOUBLE PRECISION NOT NULL,
            turn_id    TEXT,
            data       TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )
        """,
        """
        CREATE TABLE commands (
            session_id TEXT NOT NULL REFERENCES sessions (id),
            command_id TEXT NOT NULL,
            ack        TEXT NOT NULL,
            first_seq  BIGINT,
            last_seq   BIGINT,
            PRIMARY KEY (session_id, command_id)
        )
        """,
        """
        CREATE TABLE turns (
            id         TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id),
            agent      TEXT NOT NULL,
            status     TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            state      TEXT NOT NULL
        )
        """,
        "CREATE INDEX turns_session ON turns (session_id)",
        "CREATE INDEX turns_status ON turns (status)",
        """
        CREATE TABLE approvals (
            session_id   TEXT NOT NULL REFERENCES sessions (id),
            call_id      TEXT NOT NULL,
            turn_id      TEXT NOT NULL,
            name         TEXT NOT NULL,
            arguments    TEXT NOT NULL,
            rule         TEXT NOT NULL,
            requested_at DOUBLE PRECISION NOT NULL,
            expires_at   DOUBLE PRECISION NOT NULL,
            status       TEXT NOT NULL,
            resolution   TEXT NOT NULL,
            resolved_by  TEXT,
            PRIMARY KEY (session_id, call_id)
        )
        """,
        "CREATE INDEX approvals_pending ON approvals (requested_at) WHERE status = 'pending'",
        """
        CREATE TABLE owners (
            owner         TEXT PRIMARY KEY,
            live_sessions BIGINT NOT NULL
        )
        """,
    ),
)

_V2 = Migration(
    version=2,
    description="per-session leases: the one replica that writes a session",
    statements=(
        # One row per session ever written on PostgreSQL. The generation only
        # grows (a release lapses the lease rather than deleting the row), so
        # (owner, generation) names one tenure for ever: the fencing token every
        # append checks under this row's lock. Times are the database's clock.
        """
        CREATE TABLE leases (
            session_id TEXT PRIMARY KEY,
            owner      TEXT NOT NULL,
            generation BIGINT NOT NULL CHECK (generation >= 1),
            expires_at DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX leases_owner ON leases (owner)",
    ),
)

_V3 = Migration(
    version=3,
    description="an inbox of commands forwarded to the replica that runs their session",
    statements=(
        # A replica that receives a command for a session another replica runs
        # writes it here; the holder applies it (idempotent by command id, like
        # any command) and writes its ack back; the sender returns that ack.
        """
        CREATE TABLE inbox (
            id         BIGSERIAL PRIMARY KEY,
            session_id TEXT NOT NULL,
            body       TEXT NOT NULL,
            sent_by    TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            ack        TEXT
        )
        """,
        "CREATE INDEX inbox_open ON inbox (session_id, id) WHERE ack IS NULL",
    ),
)

PG_MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3)

# pg_advisory_xact_lock key serialising migrations of one database ("agrt").
MIGRATION_LOCK = 0x61677274


def pending(current: int, migrations: Sequence[Migration] = PG_MIGRATIONS) -> Sequence[Migration]:
    """The migrations a database at version *current* still needs.

    Raises:
        StoreError: the database is newer than *migrations* know.
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ...")
    if current > len(migrations):
        raise StoreError(
            f"the database has schema version {current}, newer than this agent-runtime "
            f"supports ({len(migrations)}); upgrade agent-runtime or use another database"
        )
    return migrations[current:]
