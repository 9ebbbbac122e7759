"""Commands forwarded between replicas through the database (PostgreSQL).

A command for a session that another replica runs (it holds the lease) keeps
the contract it has on that replica: the same ack, the same idempotency, the ack
only once its effect is committed. The receiving replica *forwards* it: it
writes the command to the ``inbox`` table and notifies; the holder applies it
like any command of its own (so a duplicate id gets the original ack), writes
the ack into the row and, in the same statement, notifies the sender (on its
ack channel, naming the row; delivered once that commits); the sender reads the
ack and deletes the row.

- Latency: one notification to the holder, its commit, one notification back
  and the sender's read of the row: a few milliseconds on one host
  (docs/deployment.md). The holder applies forwarded commands for different
  sessions concurrently (at most :data:`IN_FLIGHT` at once), those of one
  session in order. Each side also re-reads the table (the holder every
  second, the sender every :data:`SAFETY_POLL`): a missed notification costs
  latency, never an ack. Without its listener up, the sender polls the row
  (every 2 ms at first, backing off to 50 ms).
- The holder dies before answering: its lease lapses after the TTL; the sender
  stops waiting as soon as it sees the lease lapsed (at its next read of the
  row), takes the session over and applies the command itself. The row stays
  unanswered and the new holder finds it in its inbox too: applied again, it
  is a duplicate (same command id), answered and cleaned up.
- The sender is cancelled while waiting (its client left): the row stays; the
  holder still applies it, and a retry with the same id gets ``duplicate``.

Everything runs on the backend's reader links (one crossing, one statement
each) and one LISTEN connection (``_inbox_listen_pg.py``): forwarding is rare
next to appends, and this keeps the writer's thread for batches.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Protocol, TypeAlias, TypeVar

import trio

from . import _postgres_sql as pgsql
from ._errors import StoreError
from ._inbox_listen_pg import ACK_CHANNEL, INBOX_CHANNEL, InboxListener
from ._json import JSONObject, dumps, loads_object

log = logging.getLogger("agent_runtime.inbox")

T = TypeVar("T")

FIRST_POLL = 0.002  # without the listener: poll the row, backing off
MAX_POLL = 0.05
SAFETY_POLL = 0.5  # with it: re-read the row this often (a notification may be missed)
IN_FLIGHT = 32  # forwarded commands the holder applies at once (each of its own session)
CLEANUP_AGE = 3600.0  # answered rows nobody picked up (the sender left) go after this

Handler: TypeAlias = "Callable[[str, JSONObject], Awaitable[JSONObject | None]]"


class Reads(Protocol):
    """The backend's reader path, and who this replica is."""

    owner: str
    held: dict[str, int]

    async def _read(self, fn: Callable[[pgsql.Connection], T]) -> T: ...


def _send(conn: pgsql.Connection, session_id: str, body: str, sender: str) -> int:
    row = conn.execute(
        "WITH sent AS (INSERT INTO inbox (session_id, body, sent_by, created_at)"
        f" VALUES (%s, %s, %s, {pgsql.NOW}) RETURNING id, session_id)"
        f" SELECT id, pg_notify({INBOX_CHANNEL}, session_id) FROM sent",
        (session_id, body, sender),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _collect(conn: pgsql.Connection, item: int, session_id: str) -> tuple[str | None, bool]:
    """The ack of inbox row *item* (deleting the row), and whether the session's lease is live."""
    row = conn.execute(
        "WITH taken AS (DELETE FROM inbox WHERE id = %s AND ack IS NOT NULL RETURNING ack)"
        " SELECT (SELECT ack FROM taken),"
        f" (SELECT expires_at > {pgsql.NOW} FROM leases WHERE session_id = %s)",
        (item, session_id),
    ).fetchone()
    assert row is not None
    ack, live = row
    return (None if ack is None else str(ack)), bool(live)


def _open_items(
    conn: pgsql.Connection, sessions: list[str], taken: list[int]
) -> list[tuple[int, str, str]]:
    rows = conn.execute(
        "SELECT id, session_id, body FROM inbox WHERE ack IS NULL AND session_id = ANY(%s)"
        " AND NOT id = ANY(%s) ORDER BY id",
        (sessions, taken),
    ).fetchall()
    return [(int(i), str(s), str(b)) for i, s, b in rows]


def _answer(conn: pgsql.Connection, item: int, ack: str) -> None:
    # One statement, one transaction: the sender is notified once the ack is committed.
    conn.execute(
        "WITH answered AS (UPDATE inbox SET ack = %s WHERE id = %s AND ack IS NULL"
        " RETURNING id, sent_by)"
        f" SELECT pg_notify({ACK_CHANNEL.format(owner='sent_by')}, id::text) FROM answered",
        (ack, item),
    )


def _clean(conn: pgsql.Connection) -> None:
    conn.execute(
        f"DELETE FROM inbox WHERE ack IS NOT NULL AND created_at < {pgsql.NOW} - %s", (CLEANUP_AGE,)
    )


class Inbox:
    """This replica's side of forwarding: sending commands, and serving its inbox."""

    def __init__(self, backend: Reads, dsn: str) -> None:
        self._backend = backend
        self.listener = InboxListener(dsn, backend.owner)

    async def forward(self, session_id: str, command: JSONObject) -> JSONObject | None:
        """Send *command* to the replica running *session_id*; its ack, or ``None``
        if that replica's lease lapsed first (the caller then takes the session over).

        Waits as long as the holder's lease is live: bound it with a cancel scope
        (a holder that renews its lease but does not serve its inbox never answers).

        Raises:
            StoreError: the database failed.

        Cancellation: safe; a command already sent is still applied by the holder.
        """
        backend, listener = self._backend, self.listener
        body = dumps(command)
        item = await backend._read(
            partial(_send, session_id=session_id, body=body, sender=backend.owner)
        )
        # From here on its ack's notification is caught (or was already: remembered).
        woken = listener.expect(item)
        try:
            delay = FIRST_POLL
            while True:
                if listener.listening:
                    with trio.move_on_after(SAFETY_POLL):
                        await woken.wait()
                else:
                    with trio.move_on_after(delay):
                        await woken.wait()
                    delay = min(delay * 2, MAX_POLL)
                woken = listener.expect(item)  # before the read: nothing slips between
                ack, live = await backend._read(partial(_collect, item=item, session_id=session_id))
                if ack is not None:
                    return loads_object(ack)
                if not live:
                    return None
        finally:
            listener.forget(item)

    async def serve(self, handler: Handler, *, poll: float = 1.0) -> None:
        """Apply the commands other replicas forward for the sessions this replica holds.

        Wakes on the inbox's notifications, and every *poll* seconds in any case
        (a notification may be missed while reconnecting). *handler* applies one
        command and returns its ack, or ``None`` if this replica no longer runs
        the session (the row is left for the new holder). Commands of different
        sessions are applied concurrently, at most :data:`IN_FLIGHT` at once;
        those of one session one after the other, in the order they were sent.
        Runs until cancelled.

        Cancellation: the commands being applied complete first (the handler's
        own guarantee); their acks may then be written by the next holder.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.listener.run)
            ready, queued = trio.open_memory_channel[str](IN_FLIGHT)
            applying = _Applying(self._backend, handler)
            async with ready, queued:
                for _ in range(IN_FLIGHT):
                    nursery.start_soon(applying.work, queued.clone())
                await self._dispatch(applying, ready, poll)

    async def _dispatch(
        self, applying: _Applying, ready: trio.MemorySendChannel[str], poll: float
    ) -> None:
        """Queue what the inbox holds for this replica's sessions, round after round."""
        backend, listener = self._backend, self.listener
        rounds = 0
        while True:
            listener.woken = trio.Event()  # a notification from now on starts another round
            held = list(backend.held)
            try:
                if held:
                    found = partial(_open_items, sessions=held, taken=list(applying.taken))
                    for item, session_id, body in await backend._read(found):
                        if applying.queue(item, session_id, body):
                            await ready.send(session_id)  # waits while all workers are busy
                rounds += 1
                if rounds % 600 == 0:
                    await backend._read(_clean)
            except StoreError as exc:
                log.warning("reading the inbox failed: %s", exc)  # again at the next round
            with trio.move_on_after(poll):
                await listener.woken.wait()


class _Applying:
    """The holder's forwarded commands waiting or being applied, queued per session."""

    def __init__(self, backend: Reads, handler: Handler) -> None:
        self._backend = backend
        self._handler = handler
        self._queues: dict[str, deque[tuple[int, str]]] = {}
        self.taken: set[int] = set()  # rows queued or being applied (not read again)

    def queue(self, item: int, session_id: str, body: str) -> bool:
        """Queue row *item*; True if its session needs a worker (none has it)."""
        self.taken.add(item)
        waiting = self._queues.get(session_id)
        if waiting is not None:
            waiting.append((item, body))  # its worker takes it after the ones before
            return False
        self._queues[session_id] = deque([(item, body)])
        return True

    async def work(self, sessions: trio.MemoryReceiveChannel[str]) -> None:
        """Apply the queued commands of one session after another, until cancelled."""
        async with sessions:
            async for session_id in sessions:
                waiting = self._queues[session_id]
                while waiting:
                    item, body = waiting[0]
                    try:
                        await self._one(item, session_id, body)
                    finally:
                        waiting.popleft()
                        self.taken.discard(item)
                # No checkpoint since the last check: nothing was queued meanwhile.
                del self._queues[session_id]

    async def _one(self, item: int, session_id: str, body: str) -> None:
        ack = await _apply(self._handler, session_id, body)
        if ack is None:
            return  # left for the session's next holder (or the next round)
        try:
            await self._backend._read(partial(_answer, item=item, ack=dumps(ack)))
        except StoreError as exc:
            # Applied but not answered: the next round applies it again (a duplicate).
            log.warning("answering a forwarded command for %s failed: %s", session_id, exc)


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
