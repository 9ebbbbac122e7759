"""The inbox's LISTEN connection (PostgreSQL): wakes the holder and the senders.

One connection per replica listens on two channels of its schema: the inbox's
(a command was forwarded to some session: the replica serving it looks) and
this replica's own ack channel (a holder answered a command this replica
forwarded: the payload is the inbox row's id). :class:`InboxListener` turns
them into trio events; what they announce is always read from the table, so a
missed notification costs latency (the readers' safety polls), never an ack.

- An ack can be notified before its sender starts waiting for it (the holder
  was quicker than the sender's return from its insert): such acks are
  remembered, a bounded number of them (:data:`UNCLAIMED`), and a sender that
  starts waiting for one is woken at once.
- While the connection is down notifications are lost: every waiter is woken
  when it fails and again once it is back, so each reads its row once more.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict

import psycopg
import trio

from . import _postgres_sql as pgsql

log = logging.getLogger("agent_runtime.inbox")

UNCLAIMED = 1024  # acks notified with nobody waiting yet (or any more) that are remembered

# Channel names of the connection's schema (schemas are stores); both under
# PostgreSQL's 63 bytes. The ack channel names the replica that forwarded.
INBOX_CHANNEL = "'agent_runtime_inbox_' || md5(current_schema())"
ACK_CHANNEL = "'agent_runtime_ack_' || md5(current_schema() || ' ' || {owner})"


def _listen(dsn: str, owner: str) -> tuple[pgsql.Connection, str, str]:
    conn = pgsql.connect(dsn, "agent-runtime inbox")
    try:
        row = conn.execute(
            f"SELECT {INBOX_CHANNEL}, {ACK_CHANNEL.format(owner='%s')}", (owner,)
        ).fetchone()
        assert row is not None
        inbox, acks = str(row[0]), str(row[1])
        conn.execute(f'LISTEN "{inbox}"')
        conn.execute(f'LISTEN "{acks}"')
    except BaseException:
        conn.close()
        raise
    return conn, inbox, acks


class InboxListener:
    """Notifications of this replica's inbox and of its acks, as trio events."""

    def __init__(self, dsn: str, owner: str, *, backoff: tuple[float, float] = (0.05, 5.0)) -> None:
        self._dsn = dsn
        self._owner = owner
        self._backoff = backoff
        self.listening = False  # notifications are arriving
        self._up = trio.Event()
        self.woken = trio.Event()  # set by a notification on the inbox's channel
        self._waiters: dict[int, trio.Event] = {}
        self._unclaimed: OrderedDict[int, None] = OrderedDict()

    def expect(self, item: int) -> trio.Event:
        """An event set when inbox row *item*'s ack is notified from now on (or was
        already, unclaimed), or when notifications may have been lost."""
        woken = self._waiters[item] = trio.Event()
        if item in self._unclaimed:
            del self._unclaimed[item]
            woken.set()
        return woken

    def forget(self, item: int) -> None:
        self._waiters.pop(item, None)

    async def wait_listening(self) -> None:
        """Wait until the LISTEN connection is up (after a reconnection, say)."""
        await self._up.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, reconnecting with backoff; started once the first
        attempt to connect is over (listening or not: safety polls cover it).

        Cancellation: prompt, except while connecting (bounded by the connect timeout).
        """
        low, high = self._backoff
        delay = low
        started = False
        while True:
            try:
                conn, inbox, acks = await trio.to_thread.run_sync(_listen, self._dsn, self._owner)
            except psycopg.Error as exc:
                log.info("inbox listener cannot connect: %s", exc)
            else:
                delay = low
                try:
                    self.listening = True
                    self._up.set()
                    self._wake_all()  # notifications before this were not heard
                    if not started:
                        started = True
                        task_status.started()
                    await self._receive(conn, inbox, acks)
                finally:
                    self.listening = False
                    self._up = trio.Event()
                    self._wake_all()
                    conn.close()
            if not started:
                started = True
                task_status.started()
            await trio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, high)

    async def _receive(self, conn: pgsql.Connection, inbox: str, acks: str) -> None:
        """Hand notifications over until the connection fails (then return)."""
        fd = conn.fileno()
        while True:
            try:
                notes = list(conn.notifies(timeout=0))  # non-blocking: what arrived
            except psycopg.Error as exc:
                log.info("inbox listener lost its connection: %s; reconnecting", exc)
                return
            for note in notes:
                if note.channel == inbox:
                    self.woken.set()
                elif note.channel == acks:
                    self._acked(note.payload)
            await trio.lowlevel.wait_readable(fd)

    def _acked(self, payload: str) -> None:
        try:
            item = int(payload)
        except ValueError:
            log.warning("ignoring a malformed ack notification %r", payload)
            return
        woken = self._waiters.get(item)
        if woken is not None:
            woken.set()
            return
        self._unclaimed[item] = None
        while len(self._unclaimed) > UNCLAIMED:
            self._unclaimed.popitem(last=False)

    def _wake_all(self) -> None:
        self.woken.set()
        for woken in self._waiters.values():
            woken.set()
