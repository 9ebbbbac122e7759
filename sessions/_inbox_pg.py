"""Commands forwarded between replicas through the database (PostgreSQL).

A command for a session that another replica runs (it holds the lease) keeps
the contract it has on that replica: the same ack, the same idempotency, the ack
only once its effect is committed. The receiving replica *forwards* it: it
writes the command to the ``inbox`` table and notifies; the holder applies it
like any command of its own (so a duplicate id gets the original ack) and
writes the ack into the row; the sender reads the ack and deletes the row.

- Latency: one notification to the holder, one commit there, and the sender's
  poll of the row (every 2 ms at first, backing off to 50 ms): a few
  milliseconds on one host (docs/deployment.md).
- The holder dies before answering: its lease lapses after the TTL; the sender
  stops waiting as soon as it sees the lease lapsed, takes the session over
  and applies the command itself. The row stays unanswered and the new holder
  finds it in its inbox too: applied again, it is a duplicate (same command id),
  answered and cleaned up.
- The sender is cancelled while waiting (its client left): the row stays; the
  holder still applies it, and a retry with the same id gets ``duplicate``.

Everything runs on the backend's reader links (one crossing per statement):
forwarding is rare next to appends, and this keeps the writer's thread for
batches.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Protocol, TypeAlias, TypeVar

import psycopg
import trio

from . import _postgres_sql as pgsql
from ._errors import StoreError
from ._json import JSONObject, dumps, loads_object

log = logging.getLogger("agent_runtime.inbox")

T = TypeVar("T")

FIRST_POLL = 0.002
MAX_POLL = 0.05
CLEANUP_AGE = 3600.0  # answered rows nobody picked up (the sender left) go after this

Handler: TypeAlias = "Callable[[str, JSONObject], Awaitable[JSONObject | None]]"


class Reads(Protocol):
    """The backend's reader path, and who this replica is."""

    owner: str
    held: dict[str, int]

    async def _read(self, fn: Callable[[pgsql.Connection], T]) -> T: ...


def channel(conn: pgsql.Connection) -> str:
    """The inbox's NOTIFY channel for the connection's schema (schemas are stores)."""
    row = conn.execute("SELECT 'agent_runtime_inbox_' || md5(current_schema())").fetchone()
    assert row is not None
    return str(row[0])


def _send(conn: pgsql.Connection, session_id: str, body: str, sender: str) -> int:
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO inbox (session_id, body, sent_by, created_at)"
            f" VALUES (%s, %s, %s, {pgsql.NOW}) RETURNING id",
            (session_id, body, sender),
        ).fetchone()
        conn.execute("SELECT pg_notify(%s, %s)", (channel(conn), session_id))
    assert row is not None
    return int(row[0])


def _collect(conn: pgsql.Connection, item: int, session_id: str) -> tuple[str | None, bool]:
    """The ack of inbox row *item* (deleting the row), and whether the session's lease is live."""
    with conn.transaction():
        row = conn.execute(
            "DELETE FROM inbox WHERE id = %s AND ack IS NOT NULL RETURNING ack", (item,)
        ).fetchone()
        if row is not None:
            return str(row[0]), True
        lease = conn.execute(
            f"SELECT expires_at > {pgsql.NOW} FROM leases WHERE session_id = %s", (session_id,)
        ).fetchone()
    return None, bool(lease and lease[0])


async def forward(backend: Reads, session_id: str, command: JSONObject) -> JSONObject | None:
    """Send *command* to the replica running *session_id*; its ack, or ``None`` if
    that replica's lease lapsed first (the caller then takes the session over).

    Waits as long as the holder's lease is live: bound it with a cancel scope
    (a holder that renews its lease but does not serve its inbox never answers).

    Raises:
        StoreError: the database failed.

    Cancellation: safe; a command already sent is still applied by the holder.
    """
    body, sender = dumps(command), backend.owner
    item = await backend._read(partial(_send, session_id=session_id, body=body, sender=sender))
    delay = FIRST_POLL
    while True:
        ack, live = await backend._read(partial(_collect, item=item, session_id=session_id))
        if ack is not None:
            return loads_object(ack)
        if not live:
            return None
        await trio.sleep(delay)
        delay = min(delay * 2, MAX_POLL)


def _open_items(conn: pgsql.Connection, sessions: list[str]) -> list[tuple[int, str, str]]:
    rows = conn.execute(
        "SELECT id, session_id, body FROM inbox WHERE ack IS NULL AND session_id = ANY(%s)"
        " ORDER BY id",
        (sessions,),
    ).fetchall()
    return [(int(i), str(s), str(b)) for i, s, b in rows]


def _answer(conn: pgsql.Connection, item: int, ack: str) -> None:
    conn.execute("UPDATE inbox SET ack = %s WHERE id = %s AND ack IS NULL", (ack, item))


def _clean(conn: pgsql.Connection) -> None:
    conn.execute(
        f"DELETE FROM inbox WHERE ack IS NOT NULL AND created_at < {pgsql.NOW} - %s", (CLEANUP_AGE,)
    )


async def serve(backend: Reads, dsn: str, handler: Handler, *, poll: float = 1.0) -> None:
    """Apply the commands other replicas forward for the sessions this replica holds.

    Wakes on the inbox's notifications (its own LISTEN connection), and every
    *poll* seconds in any case (a notification may be missed while reconnecting).
    *handler* applies one command and returns its ack, or ``None`` if this
    replica no longer runs the session (the row is left for the new holder).
    Runs until cancelled.

    Cancellation: between commands; a command being applied completes first
    (the handler's own guarantee), its ack may then be written by the next holder.
    """
    listener = _Listener(dsn)
    try:
        rounds = 0
        while True:
            held = list(backend.held)
            if held:
                items = await backend._read(partial(_open_items, sessions=held))
                for item, session_id, body in items:
                    ack = await _apply(handler, session_id, body)
                    if ack is not None:
                        await backend._read(partial(_answer, item=item, ack=dumps(ack)))
            rounds += 1
            if rounds % 600 == 0:
                await backend._read(_clean)
            await listener.wait(poll)
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()


async def _apply(handler: Handler, session_id: str, body: str) -> JSONObject | None:
    try:
        command = loads_object(body)
    except ValueError:
        return {
            "type": "ack",
            "id": "",
            "status": "rejected",
            "code": "bad_json",
            "error": "a forwarded command was not a JSON object",
        }
    try:
        return await handler(session_id, command)
    except StoreError as exc:
        log.warning("forwarded command for %s not applied: %s", session_id, exc)
        return None


class _Listener:
    """One LISTEN connection on the inbox's channel, reconnected when it fails."""

    SLICE = 0.25  # longest blocking wait on the thread: bounds how long closing waits

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: pgsql.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)

    def _wait_on_thread(self, timeout: float) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = pgsql.connect(self._dsn, "agent-runtime inbox")
            self._conn.execute(f"LISTEN {channel(self._conn)}")
        return any(True for _ in self._conn.notifies(timeout=timeout, stop_after=1))

    async def wait(self, seconds: float) -> None:
        """Return on a notification, after *seconds*, or after a failure (then reconnect).

        Cancellation: takes effect within :attr:`SLICE` seconds (a blocking wait
        on the thread is never abandoned: the connection stays consistent).
        """
        deadline = trio.current_time() + seconds
        while (left := deadline - trio.current_time()) > 0:
            try:
                notified = await trio.to_thread.run_sync(
                    self._wait_on_thread, min(left, self.SLICE), limiter=self._limiter
                )
            except psycopg.Error as exc:
                log.info("inbox listener: %s; reconnecting", exc)
                await self.aclose()
                await trio.sleep(min(left, 0.5))
                return
            if notified:
                return

    async def aclose(self) -> None:
        async with self._limiter:
            conn, self._conn = self._conn, None
            if conn is not None:
                await trio.to_thread.run_sync(conn.close)
