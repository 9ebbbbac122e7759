"""The PostgreSQL writer after its connection died, and the session cap across replicas.

A database restart (or an administrator's ``pg_terminate_backend``) kills every
idle connection; psycopg learns of it only at the next statement. The writer
must then try its batch again on a fresh connection (nothing of it was sent),
not fail the first write after the restart, however late it comes.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import trio

from sessions import Append, GroupCommitStore, SessionLimitReached, open_postgres_store
from sessions._postgres import PostgresBackend

from ..pg import fresh_schema
from .helpers import append_events, create_session, ev, make_session


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_schema() as value:
        yield value


def _backend(store: GroupCommitStore) -> PostgresBackend:
    backend = store._backend
    assert isinstance(backend, PostgresBackend)
    return backend


def _kill_writer_connection(dsn: str, store: GroupCommitStore) -> int:
    """Terminate the writer's connection as a database restart does; its pid."""
    conn = _backend(store)._writer._conn
    assert conn is not None
    pid = conn.info.backend_pid
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return pid


async def test_the_first_write_after_the_connection_died_commits(dsn: str) -> None:
    async with open_postgres_store(dsn) as store:
        session = await create_session(store)
        await append_events(store, session.id, ev(n=1))
        dead = _kill_writer_connection(dsn, store)
        assert (await append_events(store, session.id, ev(n=2))).last_seq == 2
        assert store.health.ok and store.stats.storage_failures == 0
        conn = _backend(store)._writer._conn
        assert conn is not None and conn.info.backend_pid != dead


async def test_the_probe_reopens_the_writers_connection(dsn: str) -> None:
    async with open_postgres_store(dsn) as store:
        await create_session(store)
        dead = _kill_writer_connection(dsn, store)
        await _backend(store).probe_write()
        conn = _backend(store)._writer._conn
        assert conn is not None and conn.info.backend_pid != dead


async def _create(
    store: GroupCommitStore, owner: str, n: int, cap: int, created: list[str]
) -> None:
    session = make_session(owner, session_id=f"ses_{owner}_{n}")
    try:
        await store.append(Append(session.id, session=session, max_live_sessions=cap))
    except SessionLimitReached:
        return
    created.append(session.id)


async def test_the_session_cap_holds_for_creations_racing_on_two_replicas(dsn: str) -> None:
    """Each replica's writer counts the owner's live sessions in its transaction;
    the count's row is locked, so the second waits for the first and sees its +1."""
    cap, tries = 3, 12
    async with open_postgres_store(dsn) as one, open_postgres_store(dsn) as two:
        for round_ in range(4):
            owner = f"bob{round_}"
            created: list[str] = []
            async with trio.open_nursery() as nursery:
                for n in range(tries):
                    nursery.start_soon(_create, (one, two)[n % 2], owner, n, cap, created)
            assert len(created) == cap, (round_, created)
            assert len(await one.list_sessions(owner, limit=100)) == cap
