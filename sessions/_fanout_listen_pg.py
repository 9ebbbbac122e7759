"""The fan-out's LISTEN connection (PostgreSQL): opened on a worker thread, cancellable.

:class:`~sessions._fanout_pg.PgFanout` listens on its schema's events channel
through one autocommit connection per replica, with TCP keepalives so that a
dead host is noticed. Opening it blocks (psycopg's sync API), so it runs on a
worker thread that a cancelled caller abandons; the thread then closes what it
opened. Separate from ``_fanout_pg.py`` because this is connection plumbing,
not fan-out logic, and it is the only part that needs ``threading``.
"""

from __future__ import annotations

import threading

import psycopg
import trio
from psycopg import sql

from . import _postgres_sql as pgsql


async def connect_listener(dsn: str, application_name: str) -> pgsql.Connection:
    """A new connection LISTENing on *dsn*'s schema's channel, opened on a worker thread.

    *application_name* names it in ``pg_stat_activity``.

    Cancellation: prompt; the thread, abandoned, closes what it opened.
    """
    lock = threading.Lock()
    opened: list[pgsql.Connection] = []
    abandoned = False

    def on_thread() -> None:
        # A half-open TCP connection (a dead host) never becomes readable: the
        # kernel's keepalive probes notice it within half a minute.
        conn = psycopg.connect(
            dsn,
            autocommit=True,
            application_name=application_name,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            connect_timeout=10,
        )
        try:
            channel = pgsql.events_channel(conn)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            conn.close()
            raise
        with lock:
            if abandoned:
                conn.close()
            else:
                opened.append(conn)

    try:
        await trio.to_thread.run_sync(on_thread, abandon_on_cancel=True)
    except BaseException as exc:
        with lock:
            abandoned = True
            for conn in opened:
                conn.close()
        if isinstance(exc, psycopg.Error):
            raise pgsql.translate(exc) from exc
        raise
    return opened[0]
