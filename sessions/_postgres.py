"""The PostgreSQL store: psycopg's sync API on trio worker threads, behind the store protocol.

``open_postgres_store("postgresql://user@host/db")`` gives the same
:class:`~sessions._store.GroupCommitStore` as SQLite over a :class:`PostgresBackend`:
the same writer, batch logic, subscriptions and guarantees (``_store.py``).

Why threads and psycopg's sync API: the batch logic is synchronous on purpose
(one function per transaction, ``_batch.py``), so a whole batch is one crossing
to a thread that owns the writer connection, exactly as SQLite runs it on
aiosqlite's thread; an async driver would need a crossing per statement.
``trio.to_thread.run_sync`` is not abandoned on cancel, so a transaction is
never left half-way. Reads use a small pool of their own connections.

One writer per database for now: the writer connection holds a session-level
advisory lock while the store is open (a second store gets
:class:`~sessions.DatabaseInUse`), the analogue of SQLite's file lock, which is
what the writer's in-memory seqs and caches rely on (rule 1 of ``_store.py``).
Several replicas on one database need per-session leases and fenced appends
instead (docs/store.md); until then, one server process per database.

psycopg is an optional dependency (``pip install 'agent-runtime[postgres]'``);
this module is imported only when a ``postgresql://`` store is opened
(:func:`sessions.open_postgres_store` imports it then).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import TypeVar

import trio

from . import _inbox_pg
from . import _postgres_sql as pgsql
from ._batch import BatchResult, Known
from ._errors import LeaseHeld, LeaseLost, StorageUnavailable, StoreClosed, StoreError
from ._fanout_pg import PgFanout
from ._groups import unwrap_single_error
from ._json import JSONObject
from ._models import Append, Approval, Committed, Event, Session, Turn
from ._postgres_link import Link
from ._postgres_schema import PG_MIGRATIONS
from ._rows import Row, decode_approval, decode_command, decode_event, decode_session, decode_turn
from ._schema import Migration
from ._store import GroupCommitStore, open_store

T = TypeVar("T")


class PostgresBackend:
    """The writer's connection, a pool of readers, and this replica's leases.

    ``owner`` names this store instance (host, pid and a random part: a
    restarted process is a new owner). ``held`` maps each session whose lease
    this replica holds to its generation; every batch is fenced with it
    (``_seqs_fenced.py``), and :meth:`keep_leases` renews it every third of the
    TTL, dropping what another replica took over.
    """

    def __init__(self, dsn: str, readers: int, lease_ttl: float) -> None:
        self.dsn = dsn
        self._writer = Link(dsn, "agent-runtime writer")
        self._readers: trio.MemorySendChannel[Link]
        self._readers, self._idle_readers = trio.open_memory_channel[Link](readers)
        self._all_readers = [Link(dsn, "agent-runtime reader") for _ in range(readers)]
        for link in self._all_readers:
            self._readers.send_nowait(link)
        self._closed = False
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease_ttl = lease_ttl
        self.held: dict[str, int] = {}
        self._lease_lock = trio.Lock()
        self.lost = 0  # leases found taken over (renewal or a refused write)
        self.fenced = 0  # appends refused because another replica holds the lease now
        self.taken_over = 0  # lapsed leases of other replicas this one took over
        # Sessions whose lease was found taken over, for the supervisor to stop.
        self._lost_send, self.lost_sessions = trio.open_memory_channel[str](256)
        self._inbox = _inbox_pg.Inbox(self, dsn)

    async def open(self, migrations: Sequence[Migration]) -> None:
        with trio.CancelScope(shield=True):
            await self._writer.run(lambda conn: pgsql.migrate(conn, migrations))

    async def aclose(self) -> None:
        """Let this replica's leases lapse at once, then close every connection."""
        held, self.held = self.held, {}
        # If the database is gone, the leases lapse by themselves after their TTL.
        with contextlib.suppress(StoreError):
            await self._writer.run(lambda conn: pgsql.release_leases(conn, self.owner, held))
        self._closed = True
        for link in [self._writer, *self._all_readers]:
            await link.close()

    # -- leases ------------------------------------------------------------------------

    async def acquire(self, session_id: str) -> None:
        """Make this replica the writer of *session_id* (taking a lapsed lease over).

        Raises:
            LeaseHeld: another replica's lease is live.
        """
        # Serialised with release: a release in flight must not lapse a lease
        # that an acquire (seeing it still held) just handed out again.
        async with self._lease_lock:
            if session_id in self.held:
                return
            owner, ttl = self.owner, self.lease_ttl
            taken = await self._read(lambda conn: pgsql.take_lease(conn, session_id, owner, ttl))
            if taken is None:
                row = await self._read(lambda conn: pgsql.lease_of(conn, session_id))
                holder, expires_at = (row[0], row[2]) if row is not None else ("?", 0.0)
                raise LeaseHeld(session_id, holder, expires_at)
            self.held[session_id] = taken[0]
            if taken[2]:
                self.taken_over += 1

    async def release(self, session_id: str) -> None:
        """Let *session_id*'s lease lapse now (idle here: another replica may take it)."""
        async with self._lease_lock:
            generation = self.held.pop(session_id, None)
            if generation is not None:
                one = {session_id: generation}
                await self._read(lambda conn: pgsql.release_leases(conn, self.owner, one))

    def holds(self, session_id: str) -> bool:
        return session_id in self.held

    async def orphans(self, limit: int) -> list[str]:
        """Sessions with open turns whose lease lapsed (see ``ORPHANED_SESSIONS``)."""
        rows = await self._fetch(pgsql.ORPHANED_SESSIONS, (limit,))
        return [str(row[0]) for row in rows]

    async def renew(self) -> None:
        """Extend every held lease; forget those another replica took over."""
        held = dict(self.held)
        kept = await self._read(
            lambda conn: pgsql.renew_leases(conn, self.owner, held, self.lease_ttl)
        )
        for session_id, generation in held.items():
            if kept.get(session_id) != generation and self.held.get(session_id) == generation:
                del self.held[session_id]
                self._lose(session_id)

    def _lose(self, session_id: str) -> None:
        self.lost += 1
        # Bounded and never blocking: a session missed here is still fenced off
        # at its next write; this only lets its replica stop sooner.
        with contextlib.suppress(trio.WouldBlock):
            self._lost_send.send_nowait(session_id)

    async def forward(self, session_id: str, command: JSONObject) -> JSONObject | None:
        """Forward *command* to the replica running *session_id* (``_inbox_pg.py``)."""
        return await self._inbox.forward(session_id, command)

    async def serve_inbox(self, handler: _inbox_pg.Handler) -> None:
        """Apply commands forwarded to this replica's sessions, until cancelled."""
        await self._inbox.serve(handler)

    async def keep_leases(self) -> None:
        """Renew the held leases every third of the TTL, for as long as the store is open.

        A failed renewal (database unreachable) is retried at the next tick; a
        lease that lapses meanwhile is found lost by the fenced write, never
        written through.
        """
        while True:
            await trio.sleep(self.lease_ttl / 3)
            with contextlib.suppress(StoreError):
                await self.renew()

    async def probe_write(self) -> None:
        """``SELECT 1`` on the writer's connection, reopened if it had died (the
        writer's probe while degraded: the database answering is what a batch
        needs; see :class:`~sessions._writer.WriteProbe`).

        Raises:
            StorageUnavailable: the database cannot be reached.
        """
        if self._closed:
            raise StoreClosed("the session store is closed")
        try:
            await self._writer.run(_select_one)
        except StorageUnavailable:
            if not self._writer.broken():
                raise
            await self._writer.run(_select_one)

    async def ping(self) -> None:
        """``SELECT 1`` on a reader connection (``/health``; the caller bounds the wait).

        A connection found dead (the server restarted, an administrator
        terminated it) is replaced and the query tried once more, so only a
        database that cannot be reached now fails. Cancelled, the worker thread
        is abandoned, not waited for: it keeps the connection (its link's
        limiter) until it returns, so a hung network cannot hold the caller,
        nor can two threads share a connection.

        Raises:
            StorageUnavailable: the database cannot be reached.
            StoreClosed: the store is closed.
        """
        if self._closed:
            raise StoreClosed("the session store is closed")
        link = await self._idle_readers.receive()
        try:
            try:
                await link.select_one()
            except StorageUnavailable:
                await link.select_one()
        finally:
            self._readers.send_nowait(link)

    async def _read(self, fn: Callable[[pgsql.Connection], T]) -> T:
        if self._closed:
            raise StoreClosed("the session store is closed")
        link = await self._idle_readers.receive()
        try:
            try:
                return await link.run(fn)
            except StorageUnavailable:
                if not link.broken():
                    raise
                # The pooled connection had died (a database restart, a
                # terminated backend): once more, on a fresh one. Reads and
                # the few statements sent here are safe to repeat.
                return await link.run(fn)
        finally:
            self._readers.send_nowait(link)

    async def _fetch(self, sql: str, params: tuple[object, ...]) -> list[Row]:
        return await self._read(lambda conn: pgsql.fetch(conn, sql, params))

    async def commit(self, appends: Sequence[Append], known: Known, ts: float) -> BatchResult:
        if self._closed:
            raise StoreClosed("the session store is closed")
        del known  # another replica may have written: nothing cached is trusted
        held = dict(self.held)
        owner, ttl = self.owner, self.lease_ttl
        # Shielded: the transaction runs to COMMIT or ROLLBACK on its thread anyway.
        with trio.CancelScope(shield=True):
            stage = pgsql.Stage()

            def batch(conn: pgsql.Connection) -> tuple[BatchResult, dict[str, int]]:
                return pgsql.commit_batch(conn, appends, ts, owner, held, ttl, stage)

            try:
                result, acquired = await self._writer.run(batch)
            except StorageUnavailable:
                if stage.committing or not self._writer.broken():
                    raise
                # The connection had died while idle (a database restart, a
                # terminated backend) and the batch failed before its COMMIT, so
                # nothing of it was written: once more, on a fresh connection.
                # Without this, the first write after a restart failed however
                # late it came, ending the turn that made it.
                stage = pgsql.Stage()
                result, acquired = await self._writer.run(batch)
        self.held.update(acquired)
        for outcome, append in zip(result.outcomes, appends, strict=True):
            if isinstance(outcome, LeaseLost):
                self.fenced += 1
            if isinstance(outcome, LeaseLost) and self.held.get(append.session_id) == held.get(
                append.session_id
            ):
                self.held.pop(append.session_id, None)
                self._lose(append.session_id)
        return result

    async def import_session(
        self, session: Session, events: Sequence[Event], max_live_sessions: int | None
    ) -> None:
        with trio.CancelScope(shield=True):
            await self._writer.run(
                partial(
                    pgsql.import_session,
                    session=session,
                    events=events,
                    max_live_sessions=max_live_sessions,
                )
            )

    async def get_session(self, session_id: str) -> Session | None:
        rows = await self._fetch(pgsql.SELECT_SESSION, (session_id,))
        return decode_session(rows[0]) if rows else None

    async def list_sessions(
        self, owner: str, *, limit: int, before: tuple[float, str] | None
    ) -> list[Session]:
        if before is None:
            rows = await self._fetch(pgsql.LIST_SESSIONS, (owner, limit))
        else:
            rows = await self._fetch(pgsql.LIST_SESSIONS_BEFORE, (owner, *before, limit))
        return [decode_session(row) for row in rows]

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        rows = await self._fetch(pgsql.SELECT_EVENTS, (session_id, after, limit))
        return [decode_event(row) for row in rows]

    async def get_turn(self, turn_id: str) -> Turn | None:
        rows = await self._fetch(pgsql.SELECT_TURN, (turn_id,))
        return decode_turn(rows[0]) if rows else None

    async def active_turns(self, session_ids: Sequence[str] | None) -> list[Turn]:
        if session_ids is None:
            rows = await self._fetch(pgsql.ACTIVE_TURNS, ())
        else:
            rows = await self._fetch(pgsql.ACTIVE_TURNS_OF, (list(session_ids),))
        return [decode_turn(row) for row in rows]

    async def get_approval(self, session_id: str, call_id: str) -> Approval | None:
        rows = await self._fetch(pgsql.SELECT_APPROVAL, (session_id, call_id))
        return decode_approval(rows[0]) if rows else None

    async def pending_approvals(self, session_id: str | None) -> list[Approval]:
        if session_id is None:
            rows = await self._fetch(pgsql.PENDING_APPROVALS_ALL, ())
        else:
            rows = await self._fetch(pgsql.PENDING_APPROVALS_OF, (session_id,))
        return [decode_approval(row) for row in rows]

    async def get_command(self, session_id: str, command_id: str) -> Committed | None:
        found, rows = await self._read(
            lambda conn: pgsql.fetch_command(conn, session_id, command_id)
        )
        if not found:
            return None
        events = tuple(decode_event(row) for row in rows)
        return Committed(events=events, duplicate=True, ack=decode_command(found[0]).ack)


def open_store_at(
    dsn: str,
    *,
    readers: int = 4,
    queue_size: int = 1024,
    max_batch: int = 1024,
    drain_timeout: float = 10.0,
    lease_ttl: float = 5.0,
    migrations: Sequence[Migration] = PG_MIGRATIONS,
) -> AbstractAsyncContextManager[GroupCommitStore]:
    """Open (creating or upgrading the schema of) the PostgreSQL database *dsn* as a store.

    Args:
        dsn: a libpq connection string or URL (``postgresql://user@host:port/db``).
        readers: connections for reads (subscriptions' replays, REST, loading).
        queue_size, max_batch, drain_timeout: as for :func:`open_sqlite_store`.
        lease_ttl: seconds a session's lease lives without renewal: how long a
            dead replica's sessions wait before another replica may take them.
        migrations: the schema history (tests pass their own).

    Raises:
        StorageUnavailable: the database cannot be reached.
        StoreError: the database has a newer schema.

    Cancellation: opening and migrating are shielded; exiting is shielded and
    drains queued appends for at most *drain_timeout* seconds.
    """
    if readers < 1:
        raise ValueError(f"readers must be at least 1, got {readers!r}")
    if not lease_ttl > 0:
        raise ValueError(f"lease_ttl must be positive, got {lease_ttl!r}")
    return _open(dsn, readers, queue_size, max_batch, drain_timeout, lease_ttl, migrations)


@asynccontextmanager
async def _open(
    dsn: str,
    readers: int,
    queue_size: int,
    max_batch: int,
    drain_timeout: float,
    lease_ttl: float,
    migrations: Sequence[Migration],
) -> AsyncIterator[GroupCommitStore]:
    backend = PostgresBackend(dsn, readers, lease_ttl)
    # Live events of every replica's commits: this replica's own through
    # publish(), the others' through LISTEN, listening before the store is ready.
    fanout = PgFanout(dsn, backend.owner, backend, lambda sid: backend.held.get(sid))
    with unwrap_single_error():
        try:
            await backend.open(migrations)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(backend.keep_leases)
                await nursery.start(fanout.run)
                async with open_store(
                    backend,
                    queue_size=queue_size,
                    max_batch=max_batch,
                    drain_timeout=drain_timeout,
                    fanout=fanout,
                ) as store:
                    yield store
                nursery.cancel_scope.cancel()
        finally:
            fanout.close()  # also when opening failed half-way
            with trio.CancelScope(shield=True):
                await backend.aclose()


def _select_one(conn: pgsql.Connection) -> None:
    conn.execute("SELECT 1")
