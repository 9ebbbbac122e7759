"""Cancellation, shutdown and failing transactions never leave a partial write."""

from __future__ import annotations

import itertools
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import trio
import trio.testing

from sessions import (
    Committed,
    GroupCommitStore,
    StoreClosed,
    StoreError,
    open_sqlite_store,
)

from .helpers import (
    GatedBackend,
    Opener,
    append_events,
    assert_contiguous,
    create_session,
    ev,
    ints,
    open_gated,
)


async def test_cancelled_before_it_is_queued_writes_nothing() -> None:
    backend = GatedBackend()
    async with open_gated(backend, queue_size=1) as store:
        session = await create_session(store)
        backend.gate = trio.Event()
        backend.entered = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(append_events, store, session.id, ev(name="a"))
            await backend.entered.wait()  # the writer holds "a" at the gate
            nursery.start_soon(append_events, store, session.id, ev(name="b"))  # fills the queue
            await trio.testing.wait_all_tasks_blocked()
            with trio.CancelScope() as blocked:
                nursery.start_soon(_cancel_when_blocked, blocked)
                await append_events(store, session.id, ev(name="c"))  # waits for room
            assert blocked.cancelled_caught
            backend.gate.set()
        names = [e.data["name"] for e in await store.read_events(session.id)]
        assert names == ["a", "b"]


async def _cancel_when_blocked(scope: trio.CancelScope) -> None:
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()


async def test_cancelled_while_waiting_for_its_commit_commits_whole() -> None:
    backend = GatedBackend()
    async with open_gated(backend) as store:
        session = await create_session(store)
        backend.gate = trio.Event()
        backend.entered = trio.Event()
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(append_events, store, session.id, ev(), ev(), ev())
                await backend.entered.wait()
                scope.cancel()
        assert scope.cancelled_caught
        backend.gate.set()
        # The append was already in the transaction: all of it is there.
        assert (await append_events(store, session.id, ev())).last_seq == 4
        assert_contiguous(await store.read_events(session.id))


async def test_cancelling_appenders_at_any_point_keeps_the_log_consistent(
    store: GroupCommitStore,
) -> None:
    session = await create_session(store)
    for tag in range(30):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(append_events, store, session.id, ev(tag=tag), ev(tag=tag))
                for _ in range(tag % 10):
                    await trio.lowlevel.checkpoint()
                scope.cancel()
    final = await append_events(store, session.id, ev(tag=-1))
    events = await store.read_events(session.id)
    assert_contiguous(events)
    assert final.last_seq == len(events)
    # Each append is whole or absent, and its two events are adjacent.
    counts = Counter(ints(events, "tag"))
    assert counts.pop(-1) == 1
    assert set(counts.values()) <= {2}
    for earlier, later in itertools.pairwise(events):
        if earlier.data["tag"] == later.data["tag"]:
            assert later.seq == earlier.seq + 1


async def test_closing_commits_what_is_queued(kind: str, opener: Opener) -> None:
    results: list[Committed] = []
    backend = GatedBackend()

    async def appender(store: GroupCommitStore, session_id: str, i: int) -> None:
        results.append(await append_events(store, session_id, ev(i=i)))

    # The appenders' nursery outlives the store: they are still waiting when it closes.
    async with (
        trio.open_nursery() as outside,
        opener() if kind == "sqlite" else open_gated(backend) as store,
    ):
        session = await create_session(store)
        backend.gate = gate = trio.Event()
        for i in range(100):
            outside.start_soon(appender, store, session.id, i)
        await trio.testing.wait_all_tasks_blocked()
        # Opened only once the store is already closing.
        outside.start_soon(_open_when_blocked, gate)
    assert len(results) == 100
    if kind == "sqlite":
        async with opener() as reopened:
            events = await reopened.read_events(session.id)
    else:
        events = await backend.read_events(session.id)
    assert_contiguous(events)
    assert sorted(ints(events, "i")) == list(range(100))


async def _open_when_blocked(gate: trio.Event) -> None:
    await trio.testing.wait_all_tasks_blocked()
    gate.set()


async def test_drain_deadline_fails_what_is_still_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = GatedBackend()
    outcomes: list[Committed | StoreError] = []

    async def appender(store: GroupCommitStore, session_id: str) -> None:
        try:
            outcomes.append(await append_events(store, session_id, ev()))
        except StoreError as exc:
            outcomes.append(exc)

    async with trio.open_nursery() as outside:
        async with open_gated(backend, drain_timeout=1.0) as store:
            session = await create_session(store)
            backend.gate = gate = trio.Event()
            backend.entered = trio.Event()
            outside.start_soon(appender, store, session.id)
            await backend.entered.wait()
            for _ in range(5):
                outside.start_soon(appender, store, session.id)
            await trio.testing.wait_all_tasks_blocked()
            outside.start_soon(_open_after, gate, 5.0)
            started = trio.current_time()
        # The batch inside the backend was never abandoned: close waited for it.
        assert trio.current_time() - started == pytest.approx(5.0)
    assert [type(o) for o in outcomes] == [Committed] + [StoreClosed] * 5
    assert len(await backend.read_events(session.id)) == 1


async def _open_after(gate: trio.Event, delay: float) -> None:
    await trio.sleep(delay)
    gate.set()


async def test_failed_transaction_fails_only_its_waiters() -> None:
    backend = GatedBackend()
    async with open_gated(backend) as store:
        session = await create_session(store)
        backend.fail_next = 1
        with pytest.raises(StoreError, match="nothing was written") as caught:
            await append_events(store, session.id, ev(n=1))
        assert type(caught.value) is StoreError
        # The writer kept going, and the failed batch used no seqs.
        assert (await append_events(store, session.id, ev(n=2))).last_seq == 1
        assert [e.data["n"] for e in await store.read_events(session.id)] == [2]
        assert store.stats.failed_batches == 1


async def test_sqlite_error_fails_the_batch_and_the_writer_recovers(db_path: Path) -> None:
    async with open_sqlite_store(db_path, busy_timeout=0.05) as store:
        session = await create_session(store)
        # Another connection (say, a backup tool) holds the write lock.
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="locked"):
                await append_events(store, session.id, ev(n=1))
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert (await append_events(store, session.id, ev(n=2))).last_seq == 1
        assert [e.data["n"] for e in await store.read_events(session.id)] == [2]


async def test_appenders_waiting_for_room_are_refused_at_close() -> None:
    backend = GatedBackend()
    outcomes: list[Committed | StoreError] = []

    async def appender(store: GroupCommitStore, session_id: str) -> None:
        try:
            outcomes.append(await append_events(store, session_id, ev()))
        except StoreError as exc:
            outcomes.append(exc)

    async with trio.open_nursery() as outside, open_gated(backend, queue_size=1) as store:
        session = await create_session(store)
        backend.gate = gate = trio.Event()
        backend.entered = trio.Event()
        outside.start_soon(appender, store, session.id)
        await backend.entered.wait()  # one in the transaction
        outside.start_soon(appender, store, session.id)  # one queued
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(3):
            outside.start_soon(appender, store, session.id)  # waiting for room
        await trio.testing.wait_all_tasks_blocked()
        outside.start_soon(_open_when_blocked, gate)
    assert sorted(type(o).__name__ for o in outcomes) == [
        "Committed",
        "Committed",
        "StoreClosed",
        "StoreClosed",
        "StoreClosed",
    ]


async def test_errors_of_the_callers_body_are_not_wrapped(opener: Opener) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with opener():
            raise KeyError("mine")
