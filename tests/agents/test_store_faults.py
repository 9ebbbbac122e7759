"""Turns on a store whose storage fails (disk full): no crash, one ``turn.ended``, recovery.

The memory store is wrapped in :class:`~tests.fakes.faulty_backend.FaultyBackend`;
time is the autojump clock (no threads, no sockets).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio

from agents import RuntimeConfig, ScriptedModel
from agents._providers._scripted import stream_words
from sessions import JSON, Event, GroupCommitStore, Session, StorageUnavailable
from sessions._memory import MemoryBackend
from sessions._store import open_store
from tests.fakes.faulty_backend import FaultyBackend

from .harness import Harness, open_runtime, seqs_contiguous


def healthy(store: GroupCommitStore) -> bool:
    return store.health.ok


@asynccontextmanager
async def faulty_store() -> AsyncIterator[tuple[GroupCommitStore, FaultyBackend]]:
    backend = FaultyBackend(MemoryBackend())
    async with open_store(backend, queue_size=64, max_batch=64, drain_timeout=5) as store:
        yield store, backend


def runtime_on(store: GroupCommitStore) -> AbstractAsyncContextManager[Harness]:
    return open_runtime(RuntimeConfig(store_retry=0.5), model=ScriptedModel(pace=0.01), store=store)


@asynccontextmanager
async def faulty_runtime() -> AsyncIterator[tuple[Harness, FaultyBackend, GroupCommitStore]]:
    async with faulty_store() as (store, backend), runtime_on(store) as harness:
        yield harness, backend, store


async def test_a_turn_whose_store_fills_up_ends_once_when_space_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with faulty_runtime() as (harness, backend, store):
        session = await harness.session(agent="coder")
        await harness.message(session, "stream 200 words")
        await harness.wait_for(session, "text.delta")
        backend.failing = "disk_full"
        # The turn fails on its next write and cannot even write its end yet.
        await trio.sleep(5)  # mock time: the first close and a few retries fail
        assert store.stats.storage_failures >= 3
        assert not healthy(store)
        with pytest.raises(StorageUnavailable):
            await harness.message(session, "hello")
        # Nothing crashed: the supervisor keeps retrying the close with backoff.
        await trio.sleep(30)
        assert await harness.supervisor.running_turns([session.id]) == {}
        backend.failing = None
        ended = await harness.wait_for(session, "turn.ended")
        assert ended.data["reason"] == "interrupted"
        assert healthy(store)
        # The session works again: a new turn runs to completion.
        await harness.message(session, "hi there")
        await harness.wait_for(session, "turn.ended", after=ended.seq)
        events = await harness.events(session)
        assert seqs_contiguous(events)
        ends = [e.data["reason"] for e in events if e.type == "turn.ended"]
        assert ends == ["interrupted", "completed"]
        await harness.assert_paired(session)


async def test_a_brief_storage_failure_ends_the_turn_with_a_retryable_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with faulty_runtime() as (harness, backend, store):
        session = await harness.session(agent="coder")
        await harness.message(session, "stream 200 words")
        await harness.wait_for(session, "text.delta")
        backend.fail_next("io_error")
        ended = await harness.wait_for(session, "turn.ended")
        assert ended.data["reason"] == "error"
        errors = [e for e in await harness.events(session) if e.type == "error"]
        assert [(e.data["code"], e.data["retryable"]) for e in errors] == [
            ("storage_unavailable", True)
        ]
        assert store.health.ok
        await harness.assert_paired(session)


async def test_shutdown_while_a_turn_waits_for_storage_leaves_it_to_recovery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with faulty_store() as (store, backend):
        async with runtime_on(store) as harness:
            session = await harness.session(agent="coder")
            await harness.message(session, "stream 200 words")
            await harness.wait_for(session, "text.delta")
            backend.failing = "disk_full"
            await trio.sleep(5)
            started = trio.current_time()
        # Leaving the runtime did not wait on the retry loop.
        assert trio.current_time() - started < 10
        backend.failing = None
        # The turn is still open in the store: restart recovery closes it.
        assert [t.session_id for t in await store.active_turns()] == [session.id]
        async with open_runtime(store=store) as again:
            ended = await again.wait_for(session, "turn.ended")
            assert ended.data["reason"] == "interrupted"


async def test_a_close_held_up_past_the_grace_still_writes_turn_ended(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The closing write waits behind other commands' slow commits for longer than
    ``cancel_grace``: it is retried, never dropped (SPEC §3.3 rules 4 and 5)."""
    async with faulty_runtime() as (harness, backend, _store):
        session = await harness.session(agent="coder")
        await harness.message(session, "stream 200 words")
        await harness.wait_for(session, "text.delta")
        backend.failing = "slow"
        backend.slow_s = 0.5
        async with trio.open_nursery() as nursery:
            cancel: dict[str, JSON] = {"type": "cancel"}
            nursery.start_soon(harness.send, session, cancel)
            await trio.testing.wait_all_tasks_blocked()  # the cancel holds the lock
            for n in range(4):  # each a rejected ack, committed under the lock
                command: dict[str, JSON] = {"type": "answer", "question_id": f"q{n}", "text": "x"}
                nursery.start_soon(harness.send, session, command)
            await trio.testing.wait_all_tasks_blocked()
        backend.failing = None
        with trio.fail_after(60):  # mock time: fails at once if turn.ended never comes
            ended = await harness.wait_for(session, "turn.ended")
        assert ended.data["reason"] == "cancelled"
        events = await harness.events(session)
        assert [e.type for e in events].count("turn.ended") == 1
        assert seqs_contiguous(events)
        await harness.assert_paired(session)


async def stream_with_a_commit_held(
    harness: Harness, backend: FaultyBackend
) -> tuple[Session, trio.Event]:
    """A session streaming 200 words whose next transaction (a chunk of text) is held.

    Returns the session and the gate. The turn waits for the chunk in flight, so
    the words the model sends meanwhile (mock time: 0.1 s is 10) wait in its channel.
    """
    session = await harness.session(agent="coder")
    await harness.message(session, "stream 200 words")
    await harness.wait_for(session, "text.delta")
    backend.gate = gate = trio.Event()
    backend.entered = trio.Event()
    await backend.entered.wait()
    await trio.sleep(0.1)
    return session, gate


def streamed_text(events: list[Event]) -> str:
    return "".join(str(e.data["text"]) for e in events if e.type == "text.delta")


async def test_words_that_arrive_while_a_chunk_commits_go_out_as_one_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One chunk in flight at most: what the model sends while it commits is
    committed next, together, as one event (fewer events per token under load)."""
    async with faulty_runtime() as (harness, backend, _store):
        session, gate = await stream_with_a_commit_held(harness, backend)
        backend.gate = None
        gate.set()
        ended = await harness.wait_for(session, "turn.ended")
        assert ended.data["reason"] == "completed"
        events = await harness.events(session)
        words = [len(str(e.data["text"]).split()) for e in events if e.type == "text.delta"]
        assert sum(words) == 200
        assert max(words) >= 5, words  # ~10: the 0.1 s the gate was held


async def test_a_refused_chunk_is_the_last_text_of_the_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Nothing is queued behind the chunk in flight, so the chunk the store
    refuses is the turn's last text: the log shows no text after a gap."""
    async with faulty_runtime() as (harness, backend, _store):
        session, gate = await stream_with_a_commit_held(harness, backend)
        backend.gate = None
        backend.fail_next("io_error")
        gate.set()
        ended = await harness.wait_for(session, "turn.ended")
        assert ended.data["reason"] == "error"
        events = await harness.events(session)
        text = streamed_text(events)
        assert stream_words(200).startswith(text), text
        truncated = [e for e in events if e.type == "message"]
        assert [e.data["content"] for e in truncated] == [text]
        await harness.assert_paired(session)


async def test_a_turn_stopped_while_text_is_queued_closes_with_all_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The closing reads the state only once the chunk in flight is folded: the
    truncated message holds exactly the text the log streamed."""
    async with faulty_runtime() as (harness, backend, _store):
        session, gate = await stream_with_a_commit_held(harness, backend)
        before = streamed_text(await harness.events(session))
        live = harness.supervisor.sessions.get(session.id)
        assert live is not None and live.running is not None
        # Stopped as shutdown stops it: no command commits first under the lock.
        live.running.stop("interrupted")
        await trio.testing.wait_all_tasks_blocked()  # the closing waits for the folds
        backend.gate = None
        gate.set()
        ended = await harness.wait_for(session, "turn.ended")
        assert ended.data["reason"] == "interrupted"
        events = await harness.events(session)
        text = streamed_text(events)
        assert len(text) > len(before)  # the chunk held in flight when it stopped
        messages = [e for e in events if e.type == "message"]
        assert [(e.data["content"], e.data["truncated"]) for e in messages] == [(text, True)]
        await harness.assert_paired(session)
