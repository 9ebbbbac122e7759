"""Several stores (replicas) on one PostgreSQL database: leases and fenced appends.

The langgraph #8796 case at the store level: a replica whose lease was taken
over (it was frozen, say, past its TTL) must not write anything more, and the
session's log must have no fork, no duplicate seq and no gap. Time passing is
simulated by lapsing a lease in the database (never by sleeping).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import psycopg
import pytest
import trio

from sessions import (
    Append,
    GroupCommitStore,
    LeaseHeld,
    LeaseLost,
    TurnStatus,
    open_postgres_store,
)

from ..pg import fresh_schema
from .helpers import append_events, create_session, ev, make_turn


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_schema() as value:
        yield value


@asynccontextmanager
async def replica(dsn: str) -> AsyncIterator[GroupCommitStore]:
    async with open_postgres_store(dsn) as store:
        yield store


def lapse(dsn: str, session_id: str) -> None:
    """The holder's lease runs out (it stopped renewing: frozen, or dead)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE leases SET expires_at = 0 WHERE session_id = %s", (session_id,))


def lease_row(dsn: str, session_id: str) -> tuple[str, int, float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT owner, generation, expires_at FROM leases WHERE session_id = %s",
            (session_id,),
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), float(row[2])


async def test_the_first_writer_holds_the_session_and_others_are_refused(dsn: str) -> None:
    async with replica(dsn) as a, replica(dsn) as b:
        assert a.replica is not None and b.replica is not None and a.replica != b.replica
        session = await create_session(a)
        await append_events(a, session.id, ev(n=1), ev(n=2))
        assert a.holds(session.id) and not b.holds(session.id)
        with pytest.raises(LeaseHeld) as held:
            await append_events(b, session.id, ev(n=3))
        assert held.value.owner == a.replica
        with pytest.raises(LeaseHeld):
            await b.acquire(session.id)
        # Reading needs no lease: any replica serves any reader.
        assert [e.seq for e in await b.read_events(session.id)] == [1, 2]


async def test_a_replica_whose_lease_was_taken_over_writes_nothing_more(dsn: str) -> None:
    async with replica(dsn) as a, replica(dsn) as b:
        session = await create_session(a)
        await append_events(a, session.id, ev(by="a"), ev(by="a"), ev(by="a"))
        _, first_generation, _ = lease_row(dsn, session.id)
        lapse(dsn, session.id)  # a is frozen past its TTL
        await b.acquire(session.id)
        owner, generation, _ = lease_row(dsn, session.id)
        assert owner == b.replica and generation == first_generation + 1
        committed = await append_events(b, session.id, ev(by="b"), ev(by="b"))
        assert [e.seq for e in committed.events] == [4, 5]  # seqs from the database
        # a wakes up and goes on writing: refused, events or not.
        with pytest.raises(LeaseLost):
            await append_events(a, session.id, ev(by="a-late"))
        turn = make_turn(session.id, TurnStatus.RUNNING)
        with pytest.raises(LeaseHeld):  # a forgot the lease; it is b's now
            await a.append(Append(session_id=session.id, turn=turn))
        assert not a.holds(session.id)
        assert await b.get_turn(turn.id) is None
        log = await b.read_events(session.id)
        assert [e.seq for e in log] == [1, 2, 3, 4, 5]
        assert [e.data["by"] for e in log] == ["a", "a", "a", "b", "b"]


async def test_a_fenced_write_of_rows_alone_is_refused_too(dsn: str) -> None:
    async with replica(dsn) as a, replica(dsn) as b:
        session = await create_session(a)
        await append_events(a, session.id, ev())
        lapse(dsn, session.id)
        await b.acquire(session.id)
        turn = make_turn(session.id, TurnStatus.RUNNING)
        # a still believes it holds the lease: its turn row alone is fenced.
        assert a.holds(session.id)
        with pytest.raises(LeaseLost):
            await a.append(Append(session_id=session.id, turn=turn))
        assert await b.get_turn(turn.id) is None


async def test_release_and_close_hand_the_session_over_at_once(dsn: str) -> None:
    async with replica(dsn) as b:
        async with replica(dsn) as a:
            session = await create_session(a)
            await append_events(a, session.id, ev(n=1))
            await a.release(session.id)
            assert not a.holds(session.id)
            await b.acquire(session.id)  # no waiting for the TTL
            await append_events(b, session.id, ev(n=2))
            await b.release(session.id)
            await append_events(a, session.id, ev(n=3))  # taken again on demand
        # a closed: its lease lapsed with it.
        await b.acquire(session.id)
        committed = await append_events(b, session.id, ev(n=4))
        assert [e.seq for e in committed.events] == [4]
        assert [e.data["n"] for e in await b.read_events(session.id)] == [1, 2, 3, 4]


async def test_renewal_extends_held_leases_and_forgets_lost_ones(dsn: str) -> None:
    async with replica(dsn) as a, replica(dsn) as b:
        first = await create_session(a)
        second = await create_session(a)
        await append_events(a, first.id, ev())
        await append_events(a, second.id, ev())
        before = lease_row(dsn, first.id)[2]
        backend = a._backend  # the renewal the store runs every ttl / 3
        assert hasattr(backend, "renew")
        lapse(dsn, second.id)
        await b.acquire(second.id)
        await backend.renew()
        assert lease_row(dsn, first.id)[2] > before
        assert a.holds(first.id) and not a.holds(second.id)


async def test_renewal_never_deadlocks_with_a_batch_of_the_same_sessions(dsn: str) -> None:
    """Renewal (many rows) and a batch (its sessions' rows) lock the same leases: the
    renewal skips rows a batch holds, so neither waits on the other (no 40P01)."""
    async with replica(dsn) as a:
        sessions = [await create_session(a) for _ in range(20)]
        backend = a._backend
        assert hasattr(backend, "renew")
        done = trio.Event()

        async def renew_all_along() -> None:
            while not done.is_set():
                await backend.renew()
                await trio.lowlevel.checkpoint()

        async def write(session_id: str) -> None:
            for n in range(15):
                await append_events(a, session_id, ev(n=n))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(renew_all_along)
            async with trio.open_nursery() as writers:
                for session in sessions:
                    writers.start_soon(write, session.id)
            done.set()
        for session in sessions:
            assert a.holds(session.id)
            assert len(await a.read_events(session.id)) == 15


def stop_renewing(dsn: str, session_id: str) -> None:
    """The holder died or froze: its lease's expiry passes (not a release, which is 0)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE leases SET expires_at = 1 WHERE session_id = %s", (session_id,))


async def test_takeovers_and_fenced_writes_are_counted(dsn: str) -> None:
    from server._metrics import lease_counts

    async with replica(dsn) as a, replica(dsn) as b:
        counts_a, counts_b = lease_counts(a), lease_counts(b)
        assert counts_a is not None and counts_b is not None
        session = await create_session(a)
        await append_events(a, session.id, ev(n=1))
        # A handover (released) is not a takeover.
        await a.release(session.id)
        await b.acquire(session.id)
        assert (counts_b.taken_over, counts_a.fenced) == (0, 0)
        await b.release(session.id)
        await a.acquire(session.id)
        # a stops renewing; b takes the lapsed lease over; a's next write is fenced.
        stop_renewing(dsn, session.id)
        await b.acquire(session.id)
        assert counts_b.taken_over == 1
        with pytest.raises(LeaseLost):
            await append_events(a, session.id, ev(n=2))
        assert counts_a.fenced == 1 and counts_a.lost == 1
