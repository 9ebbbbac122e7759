"""``submit``: appends that a callback hears about, in queue order.

A streaming turn submits its text instead of waiting for each commit
(:class:`~agents._text_commits.TextCommits`); these are the store's promises it
relies on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from sessions import (
    Append,
    Committed,
    GroupCommitStore,
    NewEvent,
    OnOutcome,
    StoreClosed,
    StoreError,
    Unstorable,
)
from tests.fakes.faulty_backend import POISON

from .helpers import append_events, assert_contiguous, create_session, ev, ints
from .test_faults import commits_held, open_faulty

Outcomes = list[tuple[int, Committed | StoreError]]


def recorder(outcomes: Outcomes, n: int) -> OnOutcome:
    def record(outcome: Committed | StoreError) -> None:
        outcomes.append((n, outcome))

    return record


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_submitted_appends_are_told_in_queue_order_without_being_waited_for(
    kind: str, db_path: Path
) -> None:
    async with open_faulty(kind, db_path) as (store, _backend, _):
        session = await create_session(store)
        outcomes: Outcomes = []
        for n in range(5):
            await store.submit(Append(session.id, (ev(n=n),)), recorder(outcomes, n))
        assert outcomes == []  # queued, not waited for
        await append_events(store, session.id, ev(n=5))  # queued behind them
        seen = [(n, o.events[0].seq if isinstance(o, Committed) else -1) for n, o in outcomes]
        assert seen == [(n, n + 1) for n in range(5)]
        assert ints(await store.read_events(session.id), "n") == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_poisoned_batch_of_submits_fails_only_the_culprit_in_order(
    kind: str, db_path: Path
) -> None:
    """The poisoned batch is retried one by one: the culprit fails alone, the
    others commit, and every callback still comes in queue order."""
    async with open_faulty(kind, db_path) as (store, backend, _):
        session = await create_session(store)
        outcomes: Outcomes = []
        all_told = trio.Event()

        def record(n: int) -> OnOutcome:
            def told(outcome: Committed | StoreError) -> None:
                outcomes.append((n, outcome))
                if len(outcomes) == 4:
                    all_told.set()

            return told

        async with commits_held(store, backend):  # the four form the next batch
            for n in range(4):
                event = NewEvent("text.delta", {"n": n, POISON: n == 1})
                await store.submit(Append(session.id, (event,)), record(n))
        with trio.fail_after(5):
            await all_told.wait()
        assert [n for n, _ in outcomes] == [0, 1, 2, 3]
        kinds = [type(outcome) for _, outcome in outcomes]
        assert kinds == [Committed, Unstorable, Committed, Committed]
        events = await store.read_events(session.id)
        assert_contiguous(events)
        assert ints(events, "n") == [0, 2, 3]
        assert backend.batches[-5:] == [4, 1, 1, 1, 1]  # the batch, then each alone


async def test_a_callback_that_raises_does_not_stop_the_writer(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_faulty("memory", db_path) as (store, _backend, _):
        session = await create_session(store)

        def broken(outcome: Committed | StoreError) -> None:
            raise RuntimeError("a bug in a callback")

        await store.submit(Append(session.id, (ev(n=0),)), broken)
        committed = await append_events(store, session.id, ev(n=1))
        assert committed.last_seq == 2
        assert "callback failed" in caplog.text
        assert store.health.ok


async def test_submit_on_a_closed_store_raises_and_queued_ones_are_told(db_path: Path) -> None:
    outcomes: Outcomes = []
    store: GroupCommitStore
    async with open_faulty("memory", db_path) as (store, backend, _):
        session = await create_session(store)
        backend.gate = trio.Event()
        backend.entered = trio.Event()
        await store.submit(Append(session.id, (ev(n=0),)), recorder(outcomes, 0))
        await backend.entered.wait()  # n=0 is in the backend; n=1 queues behind it
        await store.submit(Append(session.id, (ev(n=1),)), recorder(outcomes, 1))
        backend.gate.set()  # closing drains the queue: both commit
    with pytest.raises(StoreClosed):
        await store.submit(Append(session.id, (ev(n=2),)), recorder(outcomes, 2))
    assert [n for n, _ in outcomes] == [0, 1]
    assert all(isinstance(outcome, Committed) for _, outcome in outcomes)
