"""The SQL of the PostgreSQL store: plain synchronous psycopg, no async, no bridge.

Everything here runs on a worker thread that owns its connection (one crossing
per batch or read, like SQLite's): the whole batch transaction as one function,
the set-up and the migrations. The batch logic is the same ``_batch.apply_batch``
as SQLite's, over :class:`PgTx`.

PostgreSQL aborts a transaction on any failed statement, so every append runs
in a savepoint (SQLite may skip it for one-statement appends): a bad value
rolls back its append alone and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import attrs
import psycopg
import psycopg.errors

from ._batch import BatchResult, Known, StoredCommand, apply_batch
from ._errors import StorageUnavailable, StoreError, Unstorable
from ._json import dumps
from ._models import Append, Approval, CommandRecord, Committed, Event, Session, Turn, TurnStatus
from ._postgres_schema import MIGRATION_LOCK, PG_MIGRATIONS, pending
from ._rows import (
    Row,
    as_int,
    decode_approval,
    decode_command,
    decode_event,
    decode_session,
)
from ._schema import Migration
from ._seqs_fenced import FencedSeqAllocator
from ._sqlite_errors import VALUE_FAULTS
from ._store import import_into

Connection = psycopg.Connection[tuple[Any, ...]]

# SQLSTATE classes that mean the server or the connection failed, whatever was
# written: 08 connection, 53 insufficient resources (disk full), 57 operator
# intervention (shutdown), 58 system error (I/O), 40 serialization/deadlock.
_STORAGE_CLASSES = ("08", "53", "57", "58", "40", "XX")
# ...and those that belong to the data of one statement: 22 data exception
# (NUL in text, out of range), 23 integrity constraint.
_VALUE_CLASSES = ("22", "23")


def translate(exc: BaseException) -> StoreError:
    """The one place psycopg (and value-binding) errors become store errors."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        if state.startswith(_VALUE_CLASSES):
            return Unstorable(f"the database refused a value ({state}): {exc}")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or state.startswith(
            _STORAGE_CLASSES
        ):
            return StorageUnavailable(f"the database is unavailable ({state or 'no state'}): {exc}")
        return StoreError(f"PostgreSQL error ({state}): {exc}")
    if isinstance(exc, VALUE_FAULTS):
        return Unstorable(f"a value cannot be stored: {type(exc).__name__}: {exc}")
    return StoreError(f"PostgreSQL store error: {type(exc).__name__}: {exc}")


def unstorable(exc: BaseException) -> Unstorable | None:
    if not isinstance(exc, (psycopg.Error, *VALUE_FAULTS)):
        return None
    error = translate(exc)
    return error if isinstance(error, Unstorable) else None


# --- set-up -------------------------------------------------------------------------


def connect(dsn: str, application_name: str = "agent-runtime") -> Connection:
    """An autocommit connection (transactions are explicit)."""
    return psycopg.connect(dsn, autocommit=True, application_name=application_name)


def migrate(conn: Connection, migrations: Sequence[Migration] = PG_MIGRATIONS) -> int:
    """Bring the database to the last version; returns it. Safe to run concurrently."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (MIGRATION_LOCK,)
        )
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = 0 if row is None or row[0] is None else int(row[0])
        for migration in pending(current, migrations):
            for statement in migration.statements:
                conn.execute(statement.encode())
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (migration.version,))
    return len(migrations)


# --- the batch transaction ------------------------------------------------------------


_NOTHING_KNOWN = Known({}, {})

# The NOTIFY channel of this schema's events (replicas of one store share a
# schema; the tests' schemas in one database must not hear each other).
_CHANNEL = "'agent_runtime_events_' || left(md5(COALESCE(current_schema(), '')), 16)"


def events_channel(conn: Connection) -> str:
    """The channel :func:`commit_batch` notifies on, for the connection's schema."""
    row = conn.execute(f"SELECT {_CHANNEL}").fetchone()
    assert row is not None
    return str(row[0])


@attrs.define
class Stage:
    """How far :func:`commit_batch` got: a failure before ``COMMIT`` was sent
    committed nothing (PostgreSQL rolls back a transaction whose connection
    dies), so the batch may be tried again; one during it may have committed."""

    committing: bool = False


def commit_batch(
    conn: Connection,
    appends: Sequence[Append],
    ts: float,
    owner: str,
    held: Mapping[str, int],
    ttl: float,
    stage: Stage | None = None,
) -> tuple[BatchResult, dict[str, int]]:
    """Apply *appends* in one transaction, fenced by this replica's leases.

    Returns the result and the leases the transaction took (session ->
    generation). The writer's caches are not used: another replica may have
    written a session since (seqs and rows are read under the lease lock).

    Every replica's subscribers learn of the batch from one notification per
    session it wrote events to, ``"<session_id> <first_seq> <last_seq> <owner>"`` on
    :func:`events_channel` (``_fanout_pg.py``), sent in the transaction:
    PostgreSQL delivers it at commit, in commit order, or never.
    """
    stage = stage if stage is not None else Stage()
    conn.execute("BEGIN")
    try:
        tx = PgTx(conn)
        seqs = FencedSeqAllocator(tx, owner, held, ttl)
        result = apply_batch(tx, appends, _NOTHING_KNOWN, ts, seqs=seqs)
        written: dict[str, tuple[int, int]] = {}  # session -> (first, last) seq
        for a, o in zip(appends, result.outcomes, strict=True):
            if isinstance(o, Committed) and o.events and not o.duplicate:
                first = written.get(a.session_id, (o.events[0].seq, 0))[0]
                written[a.session_id] = (first, o.events[-1].seq)
        if written:
            conn.execute(
                f"SELECT pg_notify({_CHANNEL}, p) FROM unnest(%s::text[]) AS p",
                ([f"{sid} {first} {last} {owner}" for sid, (first, last) in written.items()],),
            )
        stage.committing = True
        conn.execute("COMMIT")
    except BaseException:
        rollback_quietly(conn)
        raise
    # A lease taken inside an append that then failed was rolled back with it.
    committed = {
        a.session_id
        for a, o in zip(appends, result.outcomes, strict=True)
        if not isinstance(o, StoreError)
    }
    acquired = {sid: gen for sid, gen in seqs.acquired().items() if sid in committed}
    return result, acquired


# The database's clock, in epoch seconds: every lease time is on it, so replicas'
# clocks never have to agree.
NOW = "extract(epoch from clock_timestamp())"


def take_lease(
    conn: Connection, session_id: str, owner: str, ttl: float
) -> tuple[int, float, bool] | None:
    """Take *session_id*'s lease in a transaction of its own (see :meth:`PgTx.take_lease`)."""
    with conn.transaction():
        return PgTx(conn).take_lease(session_id, owner, ttl)


def lease_of(conn: Connection, session_id: str) -> tuple[str, int, float] | None:
    row = conn.execute(
        "SELECT owner, generation, expires_at FROM leases WHERE session_id = %s", (session_id,)
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]), float(row[2]))


def renew_leases(
    conn: Connection, owner: str, held: Mapping[str, int], ttl: float
) -> dict[str, int]:
    """Extend this replica's leases in *held*; returns those still held (the others were lost).

    Rows an append of this replica's writer holds locked right now are skipped,
    not waited for: a renewal waiting on them while that batch waited on a row
    the renewal had locked was a deadlock (two lockers, two orders). Skipping
    is enough because a fenced append extends its session's lease itself
    (:meth:`PgTx.fence_lease`); a skipped row is still ours if a plain read
    says so.
    """
    if not held:
        return {}
    sessions = list(held)
    with conn.transaction():
        rows = conn.execute(
            f"UPDATE leases SET expires_at = {NOW} + %s WHERE session_id IN ("
            " SELECT session_id FROM leases WHERE owner = %s AND session_id = ANY(%s)"
            " FOR UPDATE SKIP LOCKED) RETURNING session_id, generation",
            (ttl, owner, sessions),
        ).fetchall()
        still = {str(sid): int(gen) for sid, gen in rows}
        skipped = [sid for sid in sessions if sid not in still]
        if skipped:
            for sid, row_owner, gen in conn.execute(
                "SELECT session_id, owner, generation FROM leases WHERE session_id = ANY(%s)",
                (skipped,),
            ).fetchall():
                if row_owner == owner:
                    still[str(sid)] = int(gen)
    return {sid: gen for sid, gen in held.items() if still.get(sid) == gen}


def release_leases(conn: Connection, owner: str, held: Mapping[str, int]) -> None:
    """Let *held* lapse now, so another replica can take them at once (rows stay)."""
    if held:
        conn.execute(
            "UPDATE leases SET expires_at = 0 WHERE owner = %s AND session_id = ANY(%s)"
            " AND generation = ANY(%s)",
            (owner, list(held), list(held.values())),
        )


def import_session(
    conn: Connection, session: Session, events: Sequence[Event], max_live_sessions: int | None
) -> None:
    conn.execute("BEGIN")
    try:
        import_into(PgTx(conn), session, events, max_live_sessions)
        conn.execute("COMMIT")
    except BaseException:
        rollback_quietly(conn)
        raise


def rollback_quietly(conn: Connection) -> None:
    if not conn.closed:
        with suppress(psycopg.Error):
            conn.execute("ROLLBACK")


class PgTx:
    """The :class:`~sessions._batch.Tx` of one open PostgreSQL transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @contextmanager
    def savepoint(self, needed: bool) -> Iterator[None]:
        """Undo the append on any error; one whose data is at fault fails alone."""
        del needed  # PostgreSQL aborts the transaction on any error: always needed
        self._conn.execute("SAVEPOINT append_")
        try:
            yield
        except BaseException as exc:
            try:
                self._conn.execute("ROLLBACK TO SAVEPOINT append_")
            except psycopg.Error:
                raise exc from None  # the transaction is gone: the batch fails
            if (rejected := unstorable(exc)) is None:
                raise
            raise rejected from exc
        self._conn.execute("RELEASE SAVEPOINT append_")

    def _one(self, sql: str, params: tuple[object, ...]) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def load_session(self, session_id: str) -> Session | None:
        row = self._one(SELECT_SESSION, (session_id,))
        return None if row is None else decode_session(row)

    def fence_lease(self, session_id: str, owner: str, generation: int, ttl: float) -> bool:
        """Lock the session's lease row if it still names *owner* and *generation*, and
        extend it (a writing session keeps its lease without waiting for renewal);
        ``False`` if the lease is another tenure's now. One statement, one row lock."""
        row = self._one(
            f"UPDATE leases SET expires_at = {NOW} + %s"
            " WHERE session_id = %s AND owner = %s AND generation = %s RETURNING 1",
            (ttl, session_id, owner, generation),
        )
        return row is not None

    def lock_lease(self, session_id: str) -> tuple[str, int, float] | None:
        row = self._one(
            "SELECT owner, generation, expires_at FROM leases WHERE session_id = %s FOR UPDATE",
            (session_id,),
        )
        return None if row is None else (str(row[0]), as_int(row[1]), float(str(row[2])))

    def take_lease(self, session_id: str, owner: str, ttl: float) -> tuple[int, float, bool] | None:
        """Insert the lease, or take it over if it lapsed (a new generation) or is ours.

        ``None`` if another owner's lease is still live. The flag says whether this
        was a takeover: another owner's lease that lapsed rather than was released
        (a release sets ``expires_at`` to 0), i.e. that replica stopped renewing.
        """
        row = self._one(
            f"""
            WITH before AS (SELECT owner, expires_at FROM leases WHERE session_id = %s)
            INSERT INTO leases AS l (session_id, owner, generation, expires_at)
            VALUES (%s, %s, 1, {NOW} + %s)
            ON CONFLICT (session_id) DO UPDATE SET
                owner = excluded.owner,
                generation = l.generation + (CASE WHEN l.owner = excluded.owner THEN 0 ELSE 1 END),
                expires_at = excluded.expires_at
            WHERE l.owner = excluded.owner OR l.expires_at < {NOW}
            RETURNING generation, expires_at,
                COALESCE((SELECT owner <> %s AND expires_at > 0 FROM before), false)
            """,
            (session_id, session_id, owner, ttl, owner),
        )
        if row is None:
            return None
        return as_int(row[0]), float(str(row[1])), bool(row[2])

    def max_seq(self, session_id: str) -> int:
        row = self._one(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = %s", (session_id,)
        )
        return 0 if row is None else as_int(row[0])

    def load_command(self, session_id: str, command_id: str) -> StoredCommand | None:
        row = self._one(SELECT_COMMAND, (session_id, command_id))
        return None if row is None else decode_command(row)

    def load_events(self, session_id: str, first_seq: int, last_seq: int) -> list[Event]:
        rows = self._conn.execute(SELECT_EVENT_RANGE, (session_id, first_seq, last_seq))
        return [decode_event(row) for row in rows]

    def load_approval(self, session_id: str, call_id: str) -> Approval | None:
        row = self._one(SELECT_APPROVAL, (session_id, call_id))
        return None if row is None else decode_approval(row)

    def save_session(self, session: Session) -> None:
        self._conn.execute(
            """
            INSERT INTO sessions (id, owner, title, created_at, updated_at, current_agent, deleted,
                instructions)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
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
        # Locked until this transaction ends: another replica creating a session
        # of the same owner waits here and then reads the count this one wrote,
        # so the cap holds across replicas. The row is made first (a no-op when
        # it exists): FOR UPDATE locks no row that does not exist yet.
        self._conn.execute(
            "INSERT INTO owners (owner, live_sessions) VALUES (%s, 0) ON CONFLICT DO NOTHING",
            (owner,),
        )
        row = self._one("SELECT live_sessions FROM owners WHERE owner = %s FOR UPDATE", (owner,))
        return 0 if row is None else as_int(row[0])

    def add_live_sessions(self, owner: str, delta: int) -> None:
        self._conn.execute(
            "INSERT INTO owners (owner, live_sessions) VALUES (%s, %s) ON CONFLICT (owner)"
            " DO UPDATE SET live_sessions = owners.live_sessions + excluded.live_sessions",
            (owner, delta),
        )

    def save_events(self, events: Sequence[Event]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO events (session_id, seq, type, ts, turn_id, data)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
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
            " VALUES (%s, %s, %s, %s, %s)",
            (record.session_id, record.command_id, dumps(record.ack), first_seq, last_seq),
        )

    def save_turn(self, turn: Turn) -> None:
        self._conn.execute(
            """
            INSERT INTO turns (id, session_id, agent, status, started_at, updated_at, state)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
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
            INSERT INTO approvals (session_id, call_id, turn_id, name, arguments,
                rule, requested_at, expires_at, status, resolution, resolved_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (session_id, call_id) DO UPDATE SET
                turn_id = excluded.turn_id, name = excluded.name,
                arguments = excluded.arguments, rule = excluded.rule,
                requested_at = excluded.requested_at, expires_at = excluded.expires_at,
                status = excluded.status, resolution = excluded.resolution,
                resolved_by = excluded.resolved_by
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

SELECT_SESSION = f"SELECT {_SESSION_COLS} FROM sessions WHERE id = %s"
LIST_SESSIONS = (
    f"SELECT {_SESSION_COLS} FROM sessions WHERE owner = %s AND deleted = 0"
    " ORDER BY created_at DESC, id DESC LIMIT %s"
)
LIST_SESSIONS_BEFORE = (
    f"SELECT {_SESSION_COLS} FROM sessions WHERE owner = %s AND deleted = 0"
    " AND (created_at, id) < (%s, %s) ORDER BY created_at DESC, id DESC LIMIT %s"
)
# LIMIT NULL is PostgreSQL for "no limit".
SELECT_EVENTS = (
    f"SELECT {_EVENT_COLS} FROM events WHERE session_id = %s AND seq > %s ORDER BY seq LIMIT %s"
)
SELECT_EVENT_RANGE = (
    f"SELECT {_EVENT_COLS} FROM events WHERE session_id = %s AND seq BETWEEN %s AND %s ORDER BY seq"
)
SELECT_COMMAND = (
    "SELECT ack, first_seq, last_seq FROM commands WHERE session_id = %s AND command_id = %s"
)
SELECT_TURN = f"SELECT {_TURN_COLS} FROM turns WHERE id = %s"
_ACTIVE = ", ".join(f"'{status.value}'" for status in TurnStatus if status.active)
_ACTIVE_TURNS_FROM = (
    f"SELECT {', '.join('t.' + c for c in _TURN_COLS.split(', '))} FROM turns t"
    " JOIN sessions s ON s.id = t.session_id AND s.deleted = 0"
    f" WHERE t.status IN ({_ACTIVE})"
)
ACTIVE_TURNS = f"{_ACTIVE_TURNS_FROM} ORDER BY t.started_at, t.id"
ACTIVE_TURNS_OF = f"{_ACTIVE_TURNS_FROM} AND t.session_id = ANY(%s) ORDER BY t.started_at, t.id"
# Sessions with open turns whose lease lapsed (their replica died or froze) or
# that never had one: for a replica to take over and recover.
ORPHANED_SESSIONS = (
    "SELECT DISTINCT t.session_id FROM turns t"
    " JOIN sessions s ON s.id = t.session_id AND s.deleted = 0"
    " LEFT JOIN leases l ON l.session_id = t.session_id"
    f" WHERE t.status IN ({_ACTIVE})"
    f" AND (l.session_id IS NULL OR l.expires_at < {NOW}) LIMIT %s"
)
SELECT_APPROVAL = (
    f"SELECT {_APPROVAL_COLS} FROM approvals a WHERE a.session_id = %s AND a.call_id = %s"
)
PENDING_APPROVALS_OF = (
    f"SELECT {_APPROVAL_COLS} FROM approvals a WHERE a.session_id = %s AND a.status = 'pending'"
    " ORDER BY a.requested_at, a.session_id, a.call_id"
)
PENDING_APPROVALS_ALL = (
    f"SELECT {_APPROVAL_COLS} FROM approvals a"
    " JOIN sessions s ON s.id = a.session_id AND s.deleted = 0"
    " WHERE a.status = 'pending' ORDER BY a.requested_at, a.session_id, a.call_id"
)


def fetch(conn: Connection, sql: str, params: tuple[object, ...]) -> list[Row]:
    return list[Row](conn.execute(sql, params).fetchall())


def fetch_command(
    conn: Connection, session_id: str, command_id: str
) -> tuple[list[Row], list[Row]]:
    """A command's record and its events, read in one transaction (one snapshot)."""
    with conn.transaction():
        found = fetch(conn, SELECT_COMMAND, (session_id, command_id))
        if not found:
            return found, []
        stored = decode_command(found[0])
        if stored.first_seq is None or stored.last_seq is None:
            return found, []
        rows = fetch(conn, SELECT_EVENT_RANGE, (session_id, stored.first_seq, stored.last_seq))
        return found, rows
