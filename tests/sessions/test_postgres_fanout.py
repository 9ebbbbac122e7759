"""Live events across replicas: two stores on one schema, LISTEN/NOTIFY in between.

A subscriber may be served by any replica, not only by the one that writes its
session. These tests check what the seam contract (``test_seam_fanout.py``)
cannot see with one writer: many batches from the other replica, coalescing,
a session whose lease moves between replicas, and a lost listening connection.
Nothing sleeps: every wait is on a subscription or an event, under a bound.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import trio
import trio.testing

from sessions import Event, GroupCommitStore, Subscription, open_postgres_store
from sessions._fanout_pg import PgFanout

from ..pg import fresh_schema
from .helpers import append_events, assert_contiguous, create_session, ev

BOUND = 20  # seconds any one wait may take before the test fails


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_schema() as value:
        yield value


def fanout_of(store: GroupCommitStore) -> PgFanout:
    fanout = store._fanout
    assert isinstance(fanout, PgFanout)
    return fanout


async def take_until(sub: Subscription, last: int) -> list[Event]:
    """Events from *sub* until it delivered seq *last*."""
    got: list[Event] = []
    with trio.fail_after(BOUND):
        while not got or got[-1].seq < last:
            batch = await sub.receive_batch()
            assert batch, "the subscription ended early"
            got.extend(batch)
    return got


def listener_pids(dsn: str, fanout: PgFanout) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (fanout.application_name,),
        ).fetchall()
    return [int(row[0]) for row in rows]


async def test_a_subscriber_on_another_replica_follows_many_batches_live(dsn: str) -> None:
    async with open_postgres_store(dsn) as a, open_postgres_store(dsn) as b:
        session = await create_session(a)
        total = 3 * 40 * 2
        seen: list[Event] = []
        following = trio.Event()

        async def follow() -> None:
            async with b.subscribe(session.id) as sub:
                following.set()
                while len(seen) < total // 2:
                    seen.extend(await sub.receive_batch())
                resume_at = sub.last_seq
            async with b.subscribe(session.id, after=resume_at) as sub:
                while len(seen) < total:
                    seen.extend(await sub.receive_batch())

        async def write(worker: int) -> None:
            await following.wait()
            for n in range(40):
                await append_events(a, session.id, ev(w=worker, n=n), ev(w=worker, n=n))

        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                for worker in range(3):
                    nursery.start_soon(write, worker)
        assert_contiguous(seen)
        assert seen == await a.read_events(session.id)
        stats = fanout_of(b).stats
        assert stats.batches >= 1 and stats.reads >= stats.batches
        assert stats.lag_sum > 0 and stats.lag_max <= stats.lag_sum


async def test_notifications_are_coalesced_per_batch_and_reads_per_burst(dsn: str) -> None:
    async with open_postgres_store(dsn) as a, open_postgres_store(dsn) as b:
        session = await create_session(a)
        await append_events(a, session.id, ev(n=-1))
        async with b.subscribe(session.id) as sub:
            assert [e.seq for e in await take_until(sub, 1)] == [1]  # now live
            before = a.stats.batches

            async def write(worker: int) -> None:
                for n in range(25):
                    await append_events(a, session.id, ev(w=worker, n=n))

            async with trio.open_nursery() as nursery:
                for worker in range(20):
                    nursery.start_soon(write, worker)
            got = await take_until(sub, 501)
            await trio.testing.wait_all_tasks_blocked()  # B's reads are done
            followed = fanout_of(b)._sessions[session.id]
            # Caught up: no notification is waiting to be read, so none may be
            # left timing a lag sample (a stale start made the metric seconds off).
            assert followed.since is None
        assert [e.seq for e in got] == list(range(2, 502))
        batches = a.stats.batches - before
        stats = fanout_of(b).stats
        assert stats.notifications <= batches + 1  # one per batch, the first event's too
        assert stats.reads <= stats.notifications


async def test_own_commits_are_published_locally_and_their_notifications_ignored(
    dsn: str,
) -> None:
    async with open_postgres_store(dsn) as a, open_postgres_store(dsn) as b:
        own, other = await create_session(b), await create_session(a)
        await append_events(b, own.id, ev())
        await append_events(a, other.id, ev())
        async with b.subscribe(own.id) as sub, b.subscribe(other.id) as witness:
            assert [e.seq for e in await sub.receive_batch()] == [1]  # registered
            assert [e.seq for e in await witness.receive_batch()] == [1]  # registered
            await append_events(b, own.id, ev())
            await append_events(b, own.id, ev())
            assert [e.seq for e in await take_until(sub, 3)] == [2, 3]
            stats = fanout_of(b).stats
            assert stats.reads == 0  # nothing read: the writer handed them over
            # Notifications arrive in commit order: once a's later commit reached
            # b, so had the three of b's own, ignored.
            await append_events(a, other.id, ev())
            assert [e.seq for e in await take_until(witness, 2)] == [2]
        assert stats.own == 3


async def test_a_small_buffer_after_a_long_replay_is_not_cut_off(dsn: str) -> None:
    # The subscription registers with its cursor from before its last replayed
    # page (here all 100 events): a feed that read from there would overflow.
    async with open_postgres_store(dsn) as a, open_postgres_store(dsn) as b:
        remote, local = await create_session(a), await create_session(b)
        await append_events(a, remote.id, *(ev(n=n) for n in range(100)))
        await append_events(b, local.id, *(ev(n=n) for n in range(100)))
        async with b.subscribe(remote.id, buffer=5) as on_remote:
            async with b.subscribe(local.id, buffer=5) as on_local:
                await take_until(on_remote, 100)
                await take_until(on_local, 100)
                await append_events(a, remote.id, ev())
                await append_events(b, local.id, ev())
                assert [e.seq for e in await take_until(on_remote, 101)] == [101]
                assert [e.seq for e in await take_until(on_local, 101)] == [101]
        assert fanout_of(b).stats.reads == 1  # the remote one; the local was handed over


async def test_a_session_moving_between_replicas_reaches_both_in_order(dsn: str) -> None:
    async with open_postgres_store(dsn) as a, open_postgres_store(dsn) as b:
        session = await create_session(a)
        async with a.subscribe(session.id) as on_a, b.subscribe(session.id) as on_b:
            await append_events(a, session.id, ev(by="a"), ev(by="a"))
            await take_until(on_a, 2)
            await take_until(on_b, 2)
            await a.release(session.id)
            await append_events(b, session.id, ev(by="b"))  # b takes the lease on demand
            await b.release(session.id)
            await append_events(a, session.id, ev(by="a"), ev(by="a"))
            seen_a = await take_until(on_a, 5)
            seen_b = await take_until(on_b, 5)
        log = await a.read_events(session.id)
        assert [e.data["by"] for e in log] == ["a", "a", "b", "a", "a"]
        assert [e.seq for e in seen_a] == [3, 4, 5]
        assert [e.seq for e in seen_b] == [3, 4, 5]


async def test_a_lost_listener_is_caught_up_from_storage_and_reconnects(dsn: str) -> None:
    """A database restart drops the LISTEN connection: notifications may be lost,
    so every feed ends interrupted, and each subscription reads storage from its
    cursor again and registers anew. The subscriber sees no break and no gap."""
    async with open_postgres_store(dsn) as a, open_postgres_store(dsn) as b:
        fanout = fanout_of(b)
        session = await create_session(a)
        await append_events(a, session.id, ev(), ev(), ev())
        async with b.subscribe(session.id) as sub:
            await take_until(sub, 3)
            await append_events(a, session.id, ev())
            assert [e.seq for e in await take_until(sub, 4)] == [4]  # live
            [pid] = listener_pids(dsn, fanout)
            assert pid == fanout.listener_pid
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await append_events(a, session.id, ev())  # 5, maybe while b reconnects
            with trio.fail_after(BOUND):
                assert [e.seq for e in await take_until(sub, 5)] == [5]
                await fanout.wait_listening()
            await append_events(a, session.id, ev())
            assert [e.seq for e in await take_until(sub, 6)] == [6]
        assert fanout.stats.drops == 1
        assert listener_pids(dsn, fanout) == [fanout.listener_pid] != [pid]
        # A subscriber arriving after the reconnection is fed live as before.
        async with b.subscribe(session.id, after=6) as later:
            await append_events(a, session.id, ev())
            assert [e.seq for e in await take_until(later, 7)] == [7]  # replayed; registered
            await append_events(a, session.id, ev())
            assert [e.seq for e in await take_until(later, 8)] == [8]  # re-read, or live
            batches = fanout.stats.batches
            await append_events(a, session.id, ev())
            assert [e.seq for e in await take_until(later, 9)] == [9]  # live only
        assert fanout.stats.batches > batches
