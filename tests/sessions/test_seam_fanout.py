"""Contract tests of the fan-out seam (:class:`~sessions._fanout.Fanout`) and the
replay-then-live handover built on it.

Any implementation must pass them. The fixture is parametrised over the
implementations there are, under each store they serve: the in-process
:class:`~sessions._fanout_local.LocalFanout` under the memory and SQLite
backends, and :class:`~sessions._fanout_pg.PgFanout` under PostgreSQL twice:
fed by its own store's writer ("pg-local"), and by another replica's commits on
the same schema through LISTEN/NOTIFY ("pg-remote": the store that writes is
not the one whose fan-out is checked).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Literal

import attrs
import pytest
import trio

from sessions import (
    Append,
    ApprovalStatus,
    Conflict,
    Event,
    GroupCommitStore,
    StorageUnavailable,
    SubscriberTooSlow,
    open_postgres_store,
)
from sessions._fanout import Fanout, LiveFeed
from sessions._fanout_local import LocalFanout
from sessions._store import Backend
from sessions._subscription import ReplaySubscription

from ..pg import fresh_schema
from .helpers import append_events, command, create_session, ev, make_approval, open_backed


@attrs.frozen
class Fanned:
    store: GroupCommitStore  # the one that writes
    fanout: Fanout  # the one checked
    backend: Backend  # the checked fan-out's store's


@pytest.fixture(params=["local-memory", "local-sqlite", "pg-local", "pg-remote"])
async def fanned(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[Fanned]:
    kind: str = request.param
    if not kind.startswith("pg-"):
        fanout = LocalFanout()
        async with open_backed(kind, db_path, fanout=fanout) as (store, backend):
            yield Fanned(store, fanout, backend)
        return
    with fresh_schema() as dsn:
        async with open_postgres_store(dsn) as writer:
            if kind == "pg-local":
                yield Fanned(writer, writer._fanout, writer._backend)
                return
            async with open_postgres_store(dsn) as reader:
                yield Fanned(writer, reader._fanout, reader._backend)


async def _take(feed: LiveFeed, count: int, above: int = 0) -> list[Event]:
    """The feed's next *count* events above *above* (it may repeat those at or below)."""
    got: list[Event] = []
    with trio.fail_after(10):
        while len(got) < count:
            batch = await feed.receive()
            assert batch, "the feed ended early"
            got.extend(e for e in batch if e.seq > above)
    return got


async def _drain(feed: LiveFeed) -> list[Event]:
    """Everything the feed still delivers, until it ends."""
    got: list[Event] = []
    with trio.fail_after(10):
        while batch := await feed.receive():
            got.extend(batch)
    return got


async def test_a_feed_gets_what_commits_after_it_registered_in_seq_order(
    fanned: Fanned,
) -> None:
    store, fanout = fanned.store, fanned.fanout
    a, b = await create_session(store), await create_session(store)
    await append_events(store, a.id, ev(n=0))
    feed_a = fanout.register(a.id, 1, 100)
    feed_b = fanout.register(b.id, 0, 100)
    try:

        async def appender(session_id: str, worker: int) -> None:
            for n in range(3):
                await append_events(store, session_id, ev(w=worker, n=n), ev(w=worker, n=n))

        async with trio.open_nursery() as nursery:
            for worker in range(3):
                nursery.start_soon(appender, a.id, worker)
            nursery.start_soon(appender, b.id, 9)
        got_a = await _take(feed_a, 18, above=1)
        got_b = await _take(feed_b, 6)
    finally:
        feed_a.close()
        feed_b.close()
    assert got_a == (await store.read_events(a.id))[1:]
    assert got_b == await store.read_events(b.id)
    assert {e.session_id for e in got_a} == {a.id}


async def test_failed_and_duplicate_appends_publish_nothing(fanned: Fanned) -> None:
    store = fanned.store
    session = await create_session(store)
    feed = fanned.fanout.register(session.id, 0, 100)
    try:
        await store.append(Append(session.id, (ev(n=1),), command=command(session.id, "c1")))
        never_requested = make_approval(session.id, status=ApprovalStatus.APPROVED)
        with pytest.raises(Conflict):
            await store.append(Append(session.id, (ev(n=2),), approval=never_requested))
        again = await store.append(
            Append(session.id, (ev(n=3),), command=command(session.id, "c1"))
        )
        assert again.duplicate
        await append_events(store, session.id, ev("end"))
        got = await _take(feed, 2)
    finally:
        feed.close()
    assert [(e.seq, e.type, e.data.get("n")) for e in got] == [
        (1, "text.delta", 1),
        (2, "end", None),
    ]


async def test_a_feed_that_falls_behind_is_cut_off_after_what_it_holds(fanned: Fanned) -> None:
    store = fanned.store
    session = await create_session(store)
    small = fanned.fanout.register(session.id, 0, 2)
    roomy = fanned.fanout.register(session.id, 0, 10)
    try:
        await append_events(store, session.id, ev(), ev(), ev())  # never blocked
        # Roomy first: a feed fed after the commit returned (pg-remote) would
        # hand its first event straight to a reader already waiting on small.
        assert [e.seq for e in await _take(roomy, 3)] == [1, 2, 3]
        assert [e.seq for e in await _drain(small)] == [1, 2]
        assert small.overflowed
        assert not roomy.overflowed
    finally:
        small.close()
        roomy.close()


async def test_publish_after_close_is_harmless(fanned: Fanned) -> None:
    store, fanout = fanned.store, fanned.fanout
    session = await create_session(store)
    feed = fanout.register(session.id, 0, 10)
    witness = fanout.register(session.id, 0, 10)
    await append_events(store, session.id, ev())
    # A fan-out fed from elsewhere delivers after the commit returned: once one
    # feed of the session has it, every feed of the session holds it.
    assert [e.seq for e in await _take(witness, 1)] == [1]
    fanout.close()
    fanout.close()
    assert fanout.closed
    # The writer still commits and publishes (as while draining on shutdown).
    committed = await append_events(store, session.id, ev())
    fanout.publish(session.id, committed.events)
    late = fanout.register(session.id, 2, 10)
    with trio.fail_after(10):
        assert await late.receive() == []
    assert not late.overflowed
    # What the feed held before the close is still delivered, then it ends.
    assert [e.seq for e in await _drain(feed)] == [1]
    assert not feed.overflowed
    late.close()
    feed.close()
    witness.close()


async def test_a_closed_feed_gets_nothing_more(fanned: Fanned) -> None:
    store = fanned.store
    session = await create_session(store)
    closed = fanned.fanout.register(session.id, 0, 10)
    other = fanned.fanout.register(session.id, 0, 10)
    closed.close()
    closed.close()
    await append_events(store, session.id, ev())
    with trio.fail_after(10):
        assert await closed.receive() == []
    assert [e.seq for e in await _take(other, 1)] == [1]
    other.close()


class _RacingReader:
    """Storage reads, each with one more event of the session committed right
    before or right after it: appends racing every step of the handover."""

    def __init__(
        self, inner: Backend, store: GroupCommitStore, when: Literal["before", "after"], times: int
    ) -> None:
        self._inner = inner
        self._store = store
        self._when = when
        self._times = times
        self.reads = 0

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        self.reads += 1
        race = self.reads <= self._times
        if race and self._when == "before":
            await append_events(self._store, session_id, ev(read=self.reads))
        page = await self._inner.read_events(session_id, after=after, limit=limit)
        if race and self._when == "after":
            await append_events(self._store, session_id, ev(read=self.reads))
        return page


@pytest.mark.parametrize("when", ["before", "after"])
async def test_the_handover_has_no_gap_or_duplicate(
    fanned: Fanned, when: Literal["before", "after"]
) -> None:
    store = fanned.store
    session = await create_session(store)
    await append_events(store, session.id, *(ev(i=i) for i in range(7)))
    # Pages of 3 over 7 events, one more committed at each read: reads 1-3 are
    # full pages, read 4 is short (the feed registers), read 5 is the re-read.
    # "after": seq 11 commits between the last page and the registration (only
    # the re-read has it), seq 12 after the re-read (only the feed has it).
    # "before": seq 12 commits between registration and re-read (both have it).
    reader = _RacingReader(fanned.backend, store, when, times=5)
    sub = ReplaySubscription(session.id, 0, 100, reader, fanned.fanout, page_size=3)
    seen: list[Event] = []
    reached = trio.Event()

    async def follow() -> None:
        while True:
            batch = await sub.receive_batch()
            seen.extend(batch)
            if seen[-1].seq >= 12:
                reached.set()
            if batch[-1].type == "end":
                return

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                await reached.wait()
                await append_events(store, session.id, ev("end"))
    finally:
        sub.close()
    assert reader.reads == 5
    assert [e.seq for e in seen] == list(range(1, 14))
    assert seen == await store.read_events(session.id)


class _SkippingFanout:
    """A faulty fan-out whose feeds lose one seq: the handover must not pass a gap on."""

    def __init__(self, inner: LocalFanout, lost: int) -> None:
        self._inner = inner
        self._lost = lost

    @property
    def closed(self) -> bool:
        return self._inner.closed

    def publish(self, session_id: str, events: Sequence[Event]) -> None:
        self._inner.publish(session_id, [e for e in events if e.seq != self._lost])

    def register(self, session_id: str, after: int, size: int) -> LiveFeed:
        return self._inner.register(session_id, after, size)

    def close(self) -> None:
        self._inner.close()


async def test_a_gap_in_the_feed_ends_the_subscription_as_too_slow(db_path: Path) -> None:
    fanout = _SkippingFanout(LocalFanout(), lost=4)
    async with open_backed("memory", db_path, fanout=fanout) as (store, _):
        session = await create_session(store)
        await append_events(store, session.id, ev(), ev())
        async with store.subscribe(session.id) as sub:
            assert [e.seq for e in await sub.receive_batch()] == [1, 2]  # now registered
            await append_events(store, session.id, ev())
            assert [e.seq for e in await sub.receive_batch()] == [3]  # the re-read: live
            await append_events(store, session.id, ev())
            await append_events(store, session.id, ev())
            for _ in range(2):  # and again on the next call: it stays ended
                with pytest.raises(SubscriberTooSlow) as caught:
                    await sub.receive_batch()
                assert caught.value.last_seq == 3
        async with store.subscribe(session.id, after=3) as again:
            assert [e.seq for e in await again.receive_batch()] == [4, 5]


class _InterruptibleFanout(LocalFanout):
    """A fan-out that can lose its own source, as PgFanout does when LISTEN drops."""

    def interrupt(self) -> None:
        for feeds in self._live.values():
            for feed in feeds:
                feed.interrupted = True
                feed.send.close()
        self._live.clear()


class _FailingReader:
    """The store's reads, failing while ``down`` (the database away)."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.down = False

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        if self.down:
            raise StorageUnavailable("the database is unavailable (57P01): restarting")
        return await self._inner.read_events(session_id, after=after, limit=limit)


async def test_an_interrupted_feed_is_caught_up_from_storage(db_path: Path) -> None:
    """Not the subscriber's fault: it is not cut off. What committed while the feed
    was gone comes from storage, then a new feed takes over, without a gap."""
    fanout = _InterruptibleFanout()
    async with open_backed("memory", db_path, fanout=fanout) as (store, backend):
        session = await create_session(store)
        await append_events(store, session.id, ev(), ev())
        reader = _FailingReader(backend)
        sub = ReplaySubscription(session.id, 0, 100, reader, fanout)
        try:
            assert [e.seq for e in await sub.receive_batch()] == [1, 2]  # registered
            await append_events(store, session.id, ev())
            assert [e.seq for e in await sub.receive_batch()] == [3]  # the re-read: live
            fanout.interrupt()
            await append_events(store, session.id, ev())  # 4: published to no feed
            assert [e.seq for e in await sub.receive_batch()] == [4]  # from storage
            await append_events(store, session.id, ev())
            assert [e.seq for e in await sub.receive_batch()] == [5]  # the re-read
            reader.down = True  # from here on only a feed can deliver
            await append_events(store, session.id, ev())
            assert [e.seq for e in await sub.receive_batch()] == [6]  # the new feed
            # Interrupted while the database is away: resume later from the cursor.
            fanout.interrupt()
            with pytest.raises(SubscriberTooSlow) as caught:
                await sub.receive_batch()
            assert caught.value.last_seq == 6
        finally:
            sub.close()
