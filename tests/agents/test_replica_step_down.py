"""A replica whose session was taken over stops its turn at once (no closing write)."""

from __future__ import annotations

import psycopg
import trio

from sessions import open_postgres_store

from ..pg import fresh_schema
from .harness import open_runtime


async def test_a_lost_lease_stops_the_running_turn_without_writing() -> None:
    with fresh_schema() as dsn:
        async with open_postgres_store(dsn) as a_store, open_postgres_store(dsn) as b_store:
            async with open_runtime(store=a_store) as h:
                session = await h.session("coder")
                await h.message(session, "read a.txt")
                await h.wait_for(session, "tool.call")  # the turn waits for the IDE
                live = h.supervisor.sessions.get(session.id)
                assert live is not None and live.running is not None
                running = live.running
                before = [e.seq for e in await h.events(session)]
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(
                        "UPDATE leases SET expires_at = 0 WHERE session_id = %s", (session.id,)
                    )
                await b_store.acquire(session.id)  # another replica takes it over
                backend = a_store._backend
                assert hasattr(backend, "renew")
                await backend.renew()  # what A's lease keeper does every ttl / 3
                with trio.fail_after(5):
                    await running.done.wait()
                assert running.suspend  # stopped without its closing write
                assert h.supervisor.sessions.get(session.id) is None
                assert [e.seq for e in await b_store.read_events(session.id)] == before
