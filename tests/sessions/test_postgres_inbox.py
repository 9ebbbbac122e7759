"""Commands forwarded between replicas (``sessions/_inbox_pg.py``): two stores, one schema.

What the replica tests (``tests/server/test_replicas.py``) cannot single out:
the holder's ack comes back by notification (the sender's safety poll is made
too long to be what ends the wait), and the holder applies forwarded commands
of different sessions concurrently, those of one session in order, no more
than ``IN_FLIGHT`` at once. Nothing sleeps: every wait is on an event, under
a bound.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
import trio
import trio.testing

from sessions import GroupCommitStore, JSONObject, _inbox_pg, open_postgres_store
from sessions._inbox_listen_pg import ACK_CHANNEL, InboxListener
from sessions._postgres import PostgresBackend

from ..pg import fresh_schema
from .helpers import create_session

BOUND = 20  # seconds any one wait may take before the test fails
SENDER = "a replica that sent and left"


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_schema() as value:
        yield value


def listener_of(store: GroupCommitStore) -> InboxListener:
    backend = store._backend
    assert isinstance(backend, PostgresBackend)
    return backend._inbox.listener


def send(dsn: str, *items: tuple[str, str]) -> list[int]:
    """Forward commands ``(session id, command id)`` as a sender would, in this order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [_inbox_pg._send(conn, sid, f'{{"id": "{cid}"}}', SENDER) for sid, cid in items]


def ack_notifications(dsn: str, ready: threading.Event, count: int) -> list[int]:
    """Listen on the sender's ack channel (*ready* once listening); the rows notified."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT {ACK_CHANNEL.format(owner='%s')}", (SENDER,)).fetchone()
        assert row is not None
        conn.execute(f'LISTEN "{row[0]}"')
        ready.set()
        return [int(n.payload) for n in conn.notifies(timeout=BOUND, stop_after=count)]


def acks(dsn: str) -> dict[int, str | None]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT id, ack FROM inbox").fetchall()
    return {int(item): None if ack is None else str(ack) for item, ack in rows}


def accepted(command: JSONObject) -> JSONObject:
    return {"type": "ack", "id": command["id"], "status": "accepted"}


async def test_the_holders_ack_comes_back_by_notification(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_inbox_pg, "SAFETY_POLL", 3600.0)  # only a notification ends a wait
    async with open_postgres_store(dsn) as holder, open_postgres_store(dsn) as sender:
        sessions = [await create_session(holder) for _ in range(3)]
        for session in sessions:
            await holder.acquire(session.id)

        async def apply(session_id: str, command: JSONObject) -> JSONObject:
            return {**accepted(command), "by": holder.replica, "session": session_id}

        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder.serve_inbox, apply)
            nursery.start_soon(sender.serve_inbox, apply)  # its listener hears its acks
            with trio.fail_after(BOUND):
                await listener_of(holder).wait_listening()
                await listener_of(sender).wait_listening()
                for n in range(3):  # one after the other, and several at once
                    ack = await sender.forward(sessions[0].id, {"id": f"c{n}"})
                    assert ack == {**accepted({"id": f"c{n}"}), "by": holder.replica,
                                   "session": sessions[0].id}  # fmt: skip
                got: dict[str, JSONObject | None] = {}

                async def one(session_id: str) -> None:
                    got[session_id] = await sender.forward(session_id, {"id": "x"})

                async with trio.open_nursery() as forwarding:
                    for session in sessions:
                        forwarding.start_soon(one, session.id)
            assert {sid: ack and ack["session"] for sid, ack in got.items()} == {
                s.id: s.id for s in sessions
            }
            assert acks(dsn) == {}  # the sender deleted every answered row
            nursery.cancel_scope.cancel()


async def test_the_holder_applies_sessions_concurrently_and_each_in_order(dsn: str) -> None:
    async with open_postgres_store(dsn) as holder:
        one, two = await create_session(holder), await create_session(holder)
        for session in (one, two):
            await holder.acquire(session.id)
        ready = threading.Event()
        log: list[str] = []
        release, other_done = trio.Event(), trio.Event()

        async def apply(session_id: str, command: JSONObject) -> JSONObject:
            log.append(f"start {command['id']}")
            if command["id"] == "1a":
                await release.wait()  # a slow command: its session's next one waits
            log.append(f"end {command['id']}")
            if command["id"] == "2a":
                other_done.set()
            return accepted(command)

        async with trio.open_nursery() as nursery:

            async def hear_acks() -> None:
                notified.extend(await trio.to_thread.run_sync(ack_notifications, dsn, ready, 3))
                heard.set()

            notified: list[int] = []
            heard = trio.Event()
            nursery.start_soon(hear_acks)
            await trio.to_thread.run_sync(ready.wait, BOUND)
            # All three are in the inbox before the holder looks: one round reads them.
            items = send(dsn, (one.id, "1a"), (one.id, "1b"), (two.id, "2a"))
            nursery.start_soon(holder.serve_inbox, apply)
            with trio.fail_after(BOUND):
                await other_done.wait()  # the other session did not wait for the slow one
                await trio.testing.wait_all_tasks_blocked()
                assert sorted(log) == ["end 2a", "start 1a", "start 2a"]  # not 1b yet
                release.set()
                await heard.wait()
            nursery.cancel_scope.cancel()
        assert log[3:] == ["end 1a", "start 1b", "end 1b"]
        assert sorted(notified) == items  # each ack notified, naming its row
        assert all(ack is not None for ack in acks(dsn).values())


async def test_the_holder_applies_a_bounded_number_at_once(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_inbox_pg, "IN_FLIGHT", 2)
    async with open_postgres_store(dsn) as holder:
        sessions = [await create_session(holder) for _ in range(3)]
        for session in sessions:
            await holder.acquire(session.id)
        send(dsn, *[(s.id, f"c{n}") for n, s in enumerate(sessions)])
        running: list[str] = []
        release = trio.Event()
        two_running, three_running = trio.Event(), trio.Event()

        async def apply(session_id: str, command: JSONObject) -> JSONObject:
            running.append(str(command["id"]))
            if len(running) == 2:
                two_running.set()
            if len(running) == 3:
                three_running.set()
            await release.wait()
            return accepted(command)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder.serve_inbox, apply)
            with trio.fail_after(BOUND):
                await two_running.wait()
                await trio.testing.wait_all_tasks_blocked()
                assert running == ["c0", "c1"]  # the third waits for a free worker
                release.set()
                await three_running.wait()
            nursery.cancel_scope.cancel()
