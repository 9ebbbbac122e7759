"""The SQLite store: aiosqlite inside trio-asyncio, hidden behind the store protocol.

The asyncio side exists only inside :func:`open_sqlite_store`: it opens its own
trio-asyncio loop and passes it explicitly on every crossing
(``loop.run_aio_coroutine``), so any trio task of the run may call the store,
including tasks outside the store's context (hypercorn handlers). No caller
ever sees asyncio, and sqlite3/aiosqlite errors are translated to the
:class:`~sessions.StoreError` tree here, once.

Why each batch is ONE shielded crossing: cancelling an ``aio_as_trio`` call
returns at once while aiosqlite's thread keeps executing, which would leave the
connection mid-transaction holding the write lock. So the whole transaction is
one plain function run on aiosqlite's worker thread, awaited in a shielded
scope; every read is one function too. A crossing queues the function with an
asyncio future on aiosqlite's worker queue (what its private ``_execute`` does,
without the coroutine) and awaits the future from trio: no asyncio task per
crossing. Measured alone (``bench``-style, 4,000 crossings of a no-op): 160 µs
of CPU per crossing this way, 262 µs through ``run_aio_coroutine`` and
``_execute``; one per statement would dominate a batch.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import aiosqlite
import trio
import trio_asyncio

from ._batch import BatchResult, Known
from ._errors import StoreClosed, StoreError
from ._groups import unwrap_single_error
from ._json import dumps
from ._lock import hold_db_lock
from ._models import Append, Approval, Committed, Event, Session, Turn
from ._rows import (
    Row,
    decode_approval,
    decode_command,
    decode_event,
    decode_session,
    decode_turn,
)
from ._schema import MIGRATIONS, Migration
from ._sqlite_errors import VALUE_FAULTS, translate
from ._sqlite_sql import (
    ACTIVE_TURNS,
    ACTIVE_TURNS_OF,
    LIST_SESSIONS,
    LIST_SESSIONS_BEFORE,
    PENDING_APPROVALS_ALL,
    PENDING_APPROVALS_OF,
    SELECT_APPROVAL,
    SELECT_COMMAND,
    SELECT_EVENT_RANGE,
    SELECT_EVENTS,
    SELECT_SESSION,
    SELECT_TURN,
    Durability,
    commit_batch,
    configure,
    import_session,
    probe_write,
)
from ._store import GroupCommitStore, open_store

T = TypeVar("T")

_Params = tuple[str | int | float | None, ...]

_CROSSING_FAULTS: tuple[type[Exception], ...] = (sqlite3.Error, *VALUE_FAULTS)


class _WorkQueue(Protocol):
    """aiosqlite's private worker queue (``Connection._tx``, unannotated upstream).

    Its thread runs each function and resolves the future with the result or
    exception through the future's loop (``call_soon_threadsafe``), ignoring a
    future already cancelled. Stable from aiosqlite 0.20 to 0.22 (pinned by the
    requirement, covered by every store test).
    """

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]], /) -> None: ...


class SqliteBackend:
    """One aiosqlite connection, reached through an explicit trio-asyncio loop."""

    def __init__(
        self, loop: trio_asyncio.TrioEventLoop, conn: aiosqlite.Connection, raw: sqlite3.Connection
    ) -> None:
        self._loop = loop
        self._conn = conn
        self._raw = raw  # used only on aiosqlite's thread
        self._work = cast(_WorkQueue, conn._tx)
        self._closed = False
        self._in_flight = 0
        self._idle = trio.Event()

    @classmethod
    async def connect(
        cls,
        loop: trio_asyncio.TrioEventLoop,
        path: str,
        durability: Durability,
        busy_timeout_ms: int,
        migrations: Sequence[Migration],
    ) -> SqliteBackend:
        # isolation_level=None: autocommit; transactions are explicit.
        connecting = aiosqlite.connect(path, isolation_level=None)

        async def connect() -> aiosqlite.Connection:
            return await connecting

        # Shielded: abandoning a half-made aiosqlite connection would leave its
        # (non-daemon) thread running. Opening is short, except for a schema
        # upgrade that rebuilds tables (logged; it commits whole or not at all).
        with trio.CancelScope(shield=True):
            try:
                conn = await loop.run_aio_coroutine(connect())
            except sqlite3.Error as exc:
                # aiosqlite stops its thread on a failed connect without waiting
                # for it, and the thread's last act is a call into this loop:
                # after the loop closed, that printed a traceback per thread.
                await trio.to_thread.run_sync(connecting._thread.join)
                raise translate(exc) from exc
            backend = cls(loop, conn, conn._conn)
            try:
                await backend._on_thread(
                    partial(configure, backend._raw, durability, busy_timeout_ms, migrations)
                )
            except BaseException:
                await backend.aclose()
                raise
        return backend

    async def aclose(self) -> None:
        """Wait for crossings in flight, then close the connection.

        Cancellation: call it shielded; it waits for reads in flight (short).
        """
        self._closed = True
        if self._in_flight:
            await self._idle.wait()

        async def close() -> None:
            await self._conn.close()

        try:
            await self._loop.run_aio_coroutine(close())
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def _on_thread(self, fn: Callable[[], T]) -> T:
        """*fn*'s result, run on aiosqlite's thread (its queue runs one at a time, in order).

        Cancellation: the wait is cancellable but *fn* still runs to its end on
        the thread; a write must be awaited shielded.
        """
        if self._is_closed():
            raise StoreClosed("the session store is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._work.put_nowait((future, fn))
        self._in_flight += 1
        try:
            result: T = await trio_asyncio.run_aio_future(future)
            return result
        except _CROSSING_FAULTS as exc:
            # A value fault escaping here is a read's parameter (a batch turns
            # its own into per-append outcomes) or a bug in a batch, which the
            # writer isolates by retrying the appends one by one.
            raise translate(exc) from exc
        finally:
            self._in_flight -= 1
            if self._is_closed() and not self._in_flight:
                self._idle.set()

    def _is_closed(self) -> bool:
        # A method, not the attribute, so the type checker does not assume it
        # is still False after an await.
        return self._closed

    async def _fetch(self, sql: str, params: _Params) -> list[Row]:
        return await self._on_thread(partial(_fetch_all, self._raw, sql, params))

    async def commit(self, appends: Sequence[Append], known: Known, ts: float) -> BatchResult:
        # Shielded: the transaction runs to COMMIT or ROLLBACK on its thread in
        # any case; only waiting for it here keeps the connection consistent.
        with trio.CancelScope(shield=True):
            result = await self._on_thread(partial(commit_batch, self._raw, appends, known, ts))
        return result

    async def probe_write(self) -> None:
        """A write that leaves nothing behind (see :meth:`Backend.probe_write`)."""
        with trio.CancelScope(shield=True):  # like a batch: COMMIT or ROLLBACK anyway
            await self._on_thread(partial(probe_write, self._raw))

    async def import_session(
        self, session: Session, events: Sequence[Event], max_live_sessions: int | None
    ) -> None:
        """Create *session* with *events* as its log: one transaction, one crossing."""
        # Shielded like a batch: the transaction runs to COMMIT or ROLLBACK anyway.
        with trio.CancelScope(shield=True):
            await self._on_thread(
                partial(import_session, self._raw, session, events, max_live_sessions)
            )

    async def get_session(self, session_id: str) -> Session | None:
        rows = await self._fetch(SELECT_SESSION, (session_id,))
        return decode_session(rows[0]) if rows else None

    async def list_sessions(
        self, owner: str, *, limit: int, before: tuple[float, str] | None
    ) -> list[Session]:
        if before is None:
            rows = await self._fetch(LIST_SESSIONS, (owner, limit))
        else:
            rows = await self._fetch(LIST_SESSIONS_BEFORE, (owner, before[0], before[1], limit))
        return [decode_session(row) for row in rows]

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        # LIMIT -1 is SQLite for "no limit".
        rows = await self._fetch(SELECT_EVENTS, (session_id, after, -1 if limit is None else limit))
        return [decode_event(row) for row in rows]

    async def get_turn(self, turn_id: str) -> Turn | None:
        rows = await self._fetch(SELECT_TURN, (turn_id,))
        return decode_turn(rows[0]) if rows else None

    async def active_turns(self, session_ids: Sequence[str] | None) -> list[Turn]:
        if session_ids is None:
            rows = await self._fetch(ACTIVE_TURNS, ())
        else:
            rows = await self._fetch(ACTIVE_TURNS_OF, (dumps(list(session_ids)),))
        return [decode_turn(row) for row in rows]

    async def get_approval(self, session_id: str, call_id: str) -> Approval | None:
        rows = await self._fetch(SELECT_APPROVAL, (session_id, call_id))
        return decode_approval(rows[0]) if rows else None

    async def pending_approvals(self, session_id: str | None) -> list[Approval]:
        if session_id is None:
            rows = await self._fetch(PENDING_APPROVALS_ALL, ())
        else:
            rows = await self._fetch(PENDING_APPROVALS_OF, (session_id,))
        return [decode_approval(row) for row in rows]

    async def get_command(self, session_id: str, command_id: str) -> Committed | None:
        raw = self._raw

        def fetch() -> tuple[list[Row], list[Row]]:
            # Both reads in one function on the connection's thread, between
            # two of the writer's transactions: they see the same committed state.
            found = _fetch_all(raw, SELECT_COMMAND, (session_id, command_id))
            if not found:
                return found, []
            stored = decode_command(found[0])
            if stored.first_seq is None or stored.last_seq is None:
                return found, []
            rows = _fetch_all(
                raw, SELECT_EVENT_RANGE, (session_id, stored.first_seq, stored.last_seq)
            )
            return found, rows

        found, rows = await self._on_thread(fetch)
        if not found:
            return None
        events = tuple(decode_event(row) for row in rows)
        return Committed(events=events, duplicate=True, ack=decode_command(found[0]).ack)


def open_sqlite_store(
    path: str | os.PathLike[str],
    *,
    durability: Durability = "normal",
    queue_size: int = 1024,
    max_batch: int = 1024,
    drain_timeout: float = 10.0,
    busy_timeout: float = 5.0,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> AbstractAsyncContextManager[GroupCommitStore]:
    """Open (creating or upgrading) the SQLite database at *path* as a session store.

    Holds an exclusive OS lock on ``path + ".lock"`` while open: one writer
    process per database. Opening reads no history, only the schema version.

    Args:
        path: the database file; its directory is created if missing.
        durability: ``"normal"`` (WAL, ``synchronous=NORMAL``: survives a
            process crash) or ``"full"`` (``synchronous=FULL``: survives power loss).
        queue_size: bound of the append queue (back-pressure beyond it).
        max_batch: most appends per transaction (1 = one transaction per append).
        drain_timeout: seconds the writer may spend committing queued appends
            on exit.
        busy_timeout: seconds SQLite waits for a lock held by another connection
            (a reader process, a backup) before failing the batch.
        migrations: the schema history (tests pass their own).

    Raises:
        DatabaseInUse: another process (or store) has the database open.
        StoreError: the file cannot be opened, is not a database, or has a
            newer schema.

    Cancellation: opening the database and migrating it are shielded (short,
    and never left half-done); a cancellation then takes effect and nothing is
    left open. Exiting is shielded: it drains queued appends for at most
    *drain_timeout* seconds, ends subscriptions, closes the database, then
    releases the lock.
    """
    return _open_sqlite_store(
        os.fspath(path),
        durability,
        queue_size,
        max_batch,
        drain_timeout,
        round(busy_timeout * 1000),
        migrations,
    )


def _fetch_all(raw: sqlite3.Connection, sql: str, params: _Params) -> list[Row]:
    """On the connection's thread: every row of one query."""
    rows: list[Row] = raw.execute(sql, params).fetchall()
    return rows


def _ensure_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create directory {parent}: {exc.strerror}") from exc


@asynccontextmanager
async def _open_sqlite_store(
    path: str,
    durability: Durability,
    queue_size: int,
    max_batch: int,
    drain_timeout: float,
    busy_timeout_ms: int,
    migrations: Sequence[Migration],
) -> AsyncIterator[GroupCommitStore]:
    if durability not in ("normal", "full"):
        raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
    _ensure_parent(path)
    with unwrap_single_error(), hold_db_lock(path):  # the lock is released last
        async with trio_asyncio.open_loop() as loop:
            backend = await SqliteBackend.connect(
                loop, path, durability, busy_timeout_ms, migrations
            )
            try:
                async with open_store(
                    backend,
                    queue_size=queue_size,
                    max_batch=max_batch,
                    drain_timeout=drain_timeout,
                ) as store:
                    yield store
            finally:
                with trio.CancelScope(shield=True):
                    await backend.aclose()
