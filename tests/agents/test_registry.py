"""The registry of live sessions: idle eviction, exact reload, per-session loads, wind-down.

Everything runs on the in-memory store and the scripted model under the autojump
clock, so idle TTLs and shutdown graces pass in mock time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from agents import Policy, RuntimeConfig
from agents._metrics import RuntimeMetrics
from agents._registry import SessionRegistry
from agents.testing import SessionState
from sessions import Append, Event, GroupCommitStore, Session, new_id, now, open_memory_store
from sessions._memory import MemoryBackend
from sessions._store import open_store
from tests.fakes.faulty_backend import FaultyBackend

from .harness import Harness, open_runtime, settle


class GatedReads(FaultyBackend):
    """Reads of the sessions in :attr:`gated` wait for :attr:`read_gate`; every read is logged."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.gated: set[str] = set()
        self.read_gate = trio.Event()
        self.reads: list[str] = []

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[Event]:
        self.reads.append(session_id)
        if session_id in self.gated:
            await self.read_gate.wait()
        return await super().read_events(session_id, after=after, limit=limit)


@asynccontextmanager
async def gated_store() -> AsyncIterator[tuple[GroupCommitStore, GatedReads]]:
    backend = GatedReads(MemoryBackend())
    async with open_store(backend, queue_size=64, max_batch=64, drain_timeout=5) as store:
        yield store, backend


def config(*, ttl: float = 60.0, cap: int = 1000, shutdown_grace: float = 5.0) -> RuntimeConfig:
    return RuntimeConfig(session_idle_ttl=ttl, max_idle_sessions=cap, shutdown_grace=shutdown_grace)


async def one_turn(h: Harness, session: Session, content: str = "hello") -> None:
    """Run one turn to its end and let its driver finish (the session is then idle)."""
    events = await h.events(session)
    after = events[-1].seq if events else 0
    await h.message(session, content)
    await h.wait_for(session, "turn.ended", after=after)
    await settle()


# -- eviction ----------------------------------------------------------------------


async def test_idle_sessions_beyond_the_cap_are_evicted_longest_idle_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(config(cap=2)) as h:
        sessions = [await h.session("ask") for _ in range(4)]
        for session in sessions:
            await one_turn(h, session)
        registry = h.supervisor.sessions
        live = [registry.get(s.id) is not None for s in sessions]
        assert live == [False, False, True, True]
        assert (len(registry), registry.idle, registry.evictions) == (2, 2, 2)


async def test_idle_sessions_are_evicted_after_the_ttl_counted_from_the_last_use(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(config(ttl=60)) as h:
        registry = h.supervisor.sessions
        session = await h.session("ask")
        await one_turn(h, session)
        await trio.sleep(40)
        assert registry.get(session.id) is not None
        await h.supervisor.history(session)  # a use: the TTL starts again
        await trio.sleep(59)
        assert registry.get(session.id) is not None
        await trio.sleep(2)
        assert registry.get(session.id) is None
        assert len(registry) == 0


async def test_reading_history_does_not_keep_sessions_loaded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(config(cap=2, ttl=60)) as h:
        sessions = [await h.session("ask") for _ in range(5)]
        for session in sessions:
            assert await h.supervisor.history(session) == []
        assert len(h.supervisor.sessions) == 2
        await trio.sleep(61)
        assert len(h.supervisor.sessions) == 0


async def test_a_session_reloads_exactly_mid_conversation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(config(ttl=60)) as h:
        s = await h.session()  # orchestrator; routing makes the session's agent coder
        await h.message(s, "create a.py with x")
        await h.approve_next(s)
        await h.answer_tool(s, "ok")
        await h.wait_for(s, "turn.ended")
        await settle()
        before = await h.supervisor.history(s)
        await trio.sleep(61)
        assert h.supervisor.sessions.get(s.id) is None
        # `s` is the caller's stale copy (agent orchestrator, no title): the
        # reload must take the session as stored, not as the caller knew it.
        assert await h.supervisor.history(s) == before
        last = (await h.events(s))[-1].seq
        await h.message(s, "create b.py with y")
        started = await h.wait_for(s, "turn.started", after=last)
        assert started.data["agent"] == "coder"
        req = await h.approve_next(s, after=last)
        # The scripted model numbers calls by the history it was sent: call_2
        # only if the first turn's call is still in it.
        assert req.data["call_id"] == "call_2"
        await h.answer_tool(s, "ok", after=last)
        ended = await h.wait_for(s, "turn.ended", after=last)
        assert ended.data["reason"] == "completed"
        history = await h.supervisor.history(s)
        assert history[: len(before)] == before
        assert [m.role for m in history[len(before) :]] == [
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        stored = await h.store.get_session(s.id)
        assert stored is not None and stored.title == "create a.py with x"
        await h.assert_paired(s)


async def test_a_long_log_loads_in_pages() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        for n in range(3):
            await one_turn(h, s, f"stream {n + 5} words")
        events = await h.events(s)
        registry = SessionRegistry(
            h.store, Policy(), RuntimeMetrics(), idle_ttl=60, max_idle=10, load_page=4
        )
        assert len(events) > 3 * registry.load_page
        whole = SessionState(s.id)
        whole.apply_all(events)
        async with registry.use(s) as actor:
            assert actor.state.last_seq == events[-1].seq
            assert actor.state.messages == whole.messages


async def test_an_actor_in_use_is_never_evicted(autojump_clock: trio.testing.MockClock) -> None:
    async with open_memory_store() as store, trio.open_nursery() as nursery:
        registry = SessionRegistry(store, Policy(), RuntimeMetrics(), idle_ttl=1, max_idle=1)
        await nursery.start(registry.run_evictor)
        sessions = [await _new_session(store, n) for n in range(3)]
        async with registry.use(sessions[0]) as first:
            pass  # idle now, the longest idle of all
        async with registry.use(sessions[0]) as held:
            assert held is first
            for other in sessions[1:]:
                async with registry.use(other):
                    pass
            await trio.sleep(10)
            assert registry.get(sessions[0].id) is held
        assert registry.get(sessions[0].id) is held  # idle again, not yet expired
        await trio.sleep(2)
        assert len(registry) == 0
        registry.stop_evictor()


async def _new_session(store: GroupCommitStore, n: int) -> Session:
    t = now()
    session = Session(new_id("ses"), "alice", f"s{n}", t, t, "ask")
    await store.append(Append(session.id, session=session))
    return session


async def test_busy_sessions_are_never_evicted_and_a_recovered_approval_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_store() as store:
        async with open_runtime(store=store) as h:
            s = await h.session("coder")
            await h.message(s, "create a.py with x")
            req = await h.wait_for(s, "approval.requested")
        # Restarted: the turn waiting for the approval is resumed from the log.
        async with open_runtime(config(cap=0, ttl=1), store=store) as h2:
            registry = h2.supervisor.sessions
            actor = registry.get(s.id)
            assert actor is not None
            others = [await h2.session("ask") for _ in range(3)]
            for other in others:
                await one_turn(h2, other)
            await trio.sleep(120)
            assert registry.get(s.id) is actor
            assert [registry.get(o.id) for o in others] == [None, None, None]
            ack = await h2.send(
                s, {"type": "approval", "call_id": req.data["call_id"], "decision": "approve"}
            )
            assert ack.status == "accepted"
            assert registry.get(s.id) is actor
            await h2.answer_tool(s, "ok")
            ended = await h2.wait_for(s, "turn.ended")
            assert ended.data["reason"] == "completed"
            await settle()
            assert registry.get(s.id) is None  # idle at last, and the cap is 0
            history = await h2.supervisor.history(s)
            assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
            await h2.assert_paired(s)


# -- loading -----------------------------------------------------------------------


async def test_sessions_load_concurrently_and_one_session_loads_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with gated_store() as (store, backend), open_runtime(store=store) as h:
        a, b = await h.session("ask"), await h.session("ask")
        backend.gated.add(a.id)
        results: list[int] = []

        async def read_a() -> None:
            results.append(len(await h.supervisor.history(a)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_a)
            nursery.start_soon(read_a)
            await settle()
            assert backend.reads.count(a.id) == 1  # the second access waits for the first load
            with trio.fail_after(5):  # a global load lock would hold b behind a
                assert await h.supervisor.history(b) == []
            assert results == []
            backend.read_gate.set()
        assert results == [0, 0]
        assert backend.reads.count(a.id) == 1
        assert len(h.supervisor.sessions) == 2


async def test_a_cancelled_load_is_taken_over_by_the_next_access(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with gated_store() as (store, backend), open_runtime(store=store) as h:
        a = await h.session("ask")
        backend.gated.add(a.id)
        with trio.move_on_after(1):
            await h.supervisor.history(a)
        backend.read_gate.set()
        with trio.fail_after(5):  # nobody waits for the abandoned load
            assert await h.supervisor.history(a) == []
        assert backend.reads.count(a.id) == 2


# -- shutdown ----------------------------------------------------------------------


async def test_shutdown_ends_every_running_turn_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    grace, slow, turns = 1.0, 0.25, 5
    backend = FaultyBackend(MemoryBackend(), slow_s=slow)
    async with open_store(backend, queue_size=64, max_batch=64, drain_timeout=5) as store:
        async with open_runtime(config(shutdown_grace=grace), store=store) as h:
            sessions = [await h.session("ask") for _ in range(turns)]
            for session in sessions:
                await h.message(session, "slow stream 100000 words")
                await h.wait_for(session, "text.delta")
            backend.failing = "slow"  # every write, the closing ones too, takes `slow`
            started = trio.current_time()
        took = trio.current_time() - started
        # One after another would be grace + turns * slow at least.
        assert took < grace + 3 * slow, took
        for session in sessions:
            ends = [ev for ev in await store.read_events(session.id) if ev.type == "turn.ended"]
            assert [ev.data["reason"] for ev in ends] == ["interrupted"]
