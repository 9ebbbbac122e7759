"""Many appenders, subscribers racing with appends, slow subscribers, group commit."""

from __future__ import annotations

from collections import Counter

import pytest
import trio
import trio.testing

from sessions import (
    Event,
    GroupCommitStore,
    SubscriberTooSlow,
)

from .helpers import (
    GatedBackend,
    append_events,
    assert_contiguous,
    create_session,
    ev,
    open_gated,
)

SESSIONS = 50
APPENDERS = 20
APPENDS_EACH = 3
EVENTS_PER_APPEND = 2


async def test_many_concurrent_appenders_keep_every_log_contiguous(
    store: GroupCommitStore,
) -> None:
    sessions = [await create_session(store) for _ in range(SESSIONS)]
    returned: dict[str, list[int]] = {s.id: [] for s in sessions}

    async def appender(session_id: str, worker: int) -> None:
        for n in range(APPENDS_EACH):
            result = await append_events(
                store, session_id, *(ev(w=worker, n=n, k=k) for k in range(EVENTS_PER_APPEND))
            )
            seqs = [e.seq for e in result.events]
            # One append's events are adjacent, whatever else shares the batch.
            assert seqs == list(range(seqs[0], seqs[0] + EVENTS_PER_APPEND))
            returned[session_id].extend(seqs)

    async with trio.open_nursery() as nursery:
        for session in sessions:
            for worker in range(APPENDERS):
                nursery.start_soon(appender, session.id, worker)

    per_session = APPENDERS * APPENDS_EACH * EVENTS_PER_APPEND
    for session in sessions:
        events = await store.read_events(session.id)
        assert len(events) == per_session
        assert_contiguous(events)
        assert sorted(returned[session.id]) == list(range(1, per_session + 1))
        payloads = Counter((e.data["w"], e.data["n"], e.data["k"]) for e in events)
        assert len(payloads) == per_session  # nothing lost, nothing twice
    stats = store.stats
    assert stats.appends == SESSIONS + SESSIONS * APPENDERS * APPENDS_EACH
    # Concurrent appenders really were committed together.
    assert stats.batches < stats.appends
    assert stats.largest_batch > 1


async def test_subscriber_joining_mid_way_sees_exactly_the_rest(store: GroupCommitStore) -> None:
    session = await create_session(store)
    await append_events(store, session.id, *(ev(i=i) for i in range(10)))
    seen: list[Event] = []
    subscribed = trio.Event()

    async def follow() -> None:
        async with store.subscribe(session.id, after=4, buffer=10_000) as sub:
            subscribed.set()
            async for event in sub:
                seen.append(event)
                if event.type == "end":
                    return

    async def appender(worker: int) -> None:
        for n in range(10):
            await append_events(store, session.id, ev(w=worker, n=n))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await subscribed.wait()
        async with trio.open_nursery() as appenders:
            for worker in range(10):
                appenders.start_soon(appender, worker)
        await append_events(store, session.id, ev("end"))

    assert_contiguous(seen, first=5)
    assert seen == (await store.read_events(session.id))[4:]
    assert len(seen) == 10 - 4 + 100 + 1


async def test_replay_racing_with_appends_small_pages(store: GroupCommitStore) -> None:
    """Pages smaller than what is appended meanwhile: still no gap, no duplicate."""
    session = await create_session(store)
    await append_events(store, session.id, *(ev(i=i) for i in range(1200)))
    seen: list[int] = []

    async def follow() -> None:
        async with store.subscribe(session.id, buffer=100_000) as sub:
            while True:
                batch = await sub.receive_batch()
                seen.extend(e.seq for e in batch)
                if batch[-1].type == "end":
                    return

    async def appender() -> None:
        for n in range(50):
            await append_events(store, session.id, ev(n=n), ev(n=n))
        await append_events(store, session.id, ev("end"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        nursery.start_soon(appender)
    assert seen == list(range(1, 1200 + 100 + 2))


async def test_too_slow_subscriber_is_told_and_resumes_without_gap(
    store: GroupCommitStore,
) -> None:
    session = await create_session(store)
    await append_events(store, session.id, ev(i=0), ev(i=1))
    async with store.subscribe(session.id, buffer=4) as sub:
        assert [e.seq for e in await sub.receive_batch()] == [1, 2]
        await append_events(store, session.id, ev(i=2))
        assert [e.seq for e in await sub.receive_batch()] == [3]
        # Caught up and following live; now stop reading while 30 events commit.
        for i in range(30):
            await append_events(store, session.id, ev(i=3 + i))  # never blocked
        delivered: list[int] = []
        with pytest.raises(SubscriberTooSlow) as caught:
            async for event in sub:
                delivered.append(event.seq)
    last = caught.value.last_seq
    assert caught.value.session_id == session.id
    assert last == sub.last_seq
    # It got what its buffer held, contiguously, then the error.
    assert delivered == list(range(4, last + 1))
    assert 3 < last <= 3 + 4

    rest: list[int] = []
    async with store.subscribe(session.id, after=last) as again:
        while len(rest) < 33 - last:
            rest.extend(e.seq for e in await again.receive_batch())
    assert rest == list(range(last + 1, 34))


async def test_overflow_during_catch_up_is_not_too_slow(store: GroupCommitStore) -> None:
    session = await create_session(store)
    await append_events(store, session.id, ev())
    async with store.subscribe(session.id, buffer=2) as sub:
        assert [e.seq for e in await sub.receive_batch()] == [1]
        # Registered but still catching up from storage: overflowing now loses
        # nothing, so it must not count as falling behind.
        for _ in range(10):
            await append_events(store, session.id, ev())
        got: list[int] = []
        while len(got) < 10:
            got.extend(e.seq for e in await sub.receive_batch())
        assert got == list(range(2, 12))
        await append_events(store, session.id, ev())
        assert [e.seq for e in await sub.receive_batch()] == [12]


async def test_slow_subscriber_does_not_block_the_writer_or_others() -> None:
    backend = GatedBackend()
    async with open_gated(backend) as store:
        session = await create_session(store)
        await append_events(store, session.id, ev())
        fast_seen: list[int] = []
        async with (
            store.subscribe(session.id, buffer=1) as slow,
            store.subscribe(session.id, buffer=1000) as fast,
        ):
            await slow.receive_batch()
            await fast.receive_batch()
            await append_events(store, session.id, ev())
            # Both caught up with storage and now follow live events.
            assert [e.seq for e in await slow.receive_batch()] == [2]
            assert [e.seq for e in await fast.receive_batch()] == [2]
            for i in range(100):
                await append_events(store, session.id, ev(i=i))
            while len(fast_seen) < 100:
                fast_seen.extend(e.seq for e in await fast.receive_batch())
            with pytest.raises(SubscriberTooSlow) as caught:
                while True:
                    await slow.receive_batch()
            # Its one-slot buffer still held seq 2 (already delivered), so 3 overflowed.
            assert caught.value.last_seq == 2
        assert fast_seen == list(range(3, 103))


async def test_group_commit_batches_what_is_queued() -> None:
    backend = GatedBackend()
    async with open_gated(backend, max_batch=8) as store:
        session = await create_session(store)
        backend.gate = trio.Event()
        backend.batches.clear()
        results: list[int] = []

        async def one(i: int) -> None:
            result = await append_events(store, session.id, ev(i=i))
            assert result.last_seq is not None
            results.append(result.last_seq)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, i)
            # The writer holds its first batch at the gate; the rest queue up.
            await trio.testing.wait_all_tasks_blocked()
            backend.gate.set()
        assert sorted(results) == list(range(1, 21))
        batches = backend.batches
        assert sum(batches) == 20
        assert max(batches) <= 8
        # After the first, every batch but the last is full: queued appends
        # are committed together, never one transaction each.
        assert all(size == 8 for size in batches[1:-1])
        assert len(batches) <= 4
