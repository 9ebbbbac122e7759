"""One PostgreSQL connection kept on one worker thread at a time, reopened when it dies.

The PostgreSQL backend (``_postgres.py``) runs psycopg's sync API on trio
worker threads: its writer and each of its readers is a :class:`Link`, so a
whole batch is one crossing to the thread that owns the connection. Separate
from the backend because it is the one place that knows about threads,
limiters and reconnecting, and translates psycopg's errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from . import _postgres_sql as pgsql

T = TypeVar("T")


class Link:
    """One connection and the limiter that keeps it on one thread at a time.

    A connection that failed (lost, server restarted) is replaced on next use.
    """

    def __init__(self, dsn: str, name: str) -> None:
        self._dsn = dsn
        self._name = name
        self._conn: pgsql.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)

    def _connection(self) -> pgsql.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = pgsql.connect(self._dsn, self._name)
        return self._conn

    async def run(self, fn: Callable[[pgsql.Connection], T]) -> T:
        """Run ``fn(connection)`` on a worker thread; translate its errors once, here."""

        def on_thread() -> T:
            try:
                return fn(self._connection())
            except BaseException as exc:
                raise pgsql.translate(exc) from exc

        # Not abandoned on cancel: the thread finishes (COMMIT or ROLLBACK) first.
        return await trio.to_thread.run_sync(on_thread, limiter=self._limiter)

    async def select_one(self) -> None:
        """``SELECT 1`` on a worker thread that is abandoned, not waited for, if cancelled.

        The abandoned thread keeps the connection (the limiter) until it returns,
        so a hung network cannot hold the caller, nor can two threads share it.
        """

        def on_thread() -> None:
            try:
                self._connection().execute("SELECT 1")
            except BaseException as exc:
                raise pgsql.translate(exc) from exc

        await trio.to_thread.run_sync(on_thread, limiter=self._limiter, abandon_on_cancel=True)

    def broken(self) -> bool:
        """Whether the connection was found dead (the next call opens a new one)."""
        return self._conn is None or self._conn.closed or self._conn.broken

    async def close(self) -> None:
        """Close the connection once a call in flight (if any) is done."""
        async with self._limiter:
            conn, self._conn = self._conn, None
            if conn is not None:
                await trio.to_thread.run_sync(conn.close)
