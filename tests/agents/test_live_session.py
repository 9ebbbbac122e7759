"""The live session: approvals decided from the folded log, a turn's own wake-ups.

Approval state has one source, the session's folded state; the store's approval
row is its durable projection, which the runtime writes and never reads back.
These tests count the backend's approval reads to hold it to that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from agents import RuntimeConfig
from agents._signal import Signal
from sessions import Approval, GroupCommitStore
from sessions._memory import MemoryBackend
from sessions._store import open_store
from tests.fakes.faulty_backend import FaultyBackend

from .harness import open_runtime, settle


class CountedApprovalReads(FaultyBackend):
    """Counts ``get_approval``: the runtime must decide approvals from the log alone."""

    approval_reads = 0

    async def get_approval(self, session_id: str, call_id: str) -> Approval | None:
        self.approval_reads += 1
        return await super().get_approval(session_id, call_id)


@asynccontextmanager
async def counted_store() -> AsyncIterator[tuple[GroupCommitStore, CountedApprovalReads]]:
    backend = CountedApprovalReads(MemoryBackend())
    async with open_store(backend, queue_size=64, max_batch=64, drain_timeout=5) as store:
        yield store, backend


async def test_a_decision_after_eviction_is_refused_from_the_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = RuntimeConfig(session_idle_ttl=1)
    async with counted_store() as (store, backend), open_runtime(config, store=store) as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        req = await h.approve_next(s)
        await h.answer_tool(s, "ok")
        await h.wait_for(s, "turn.ended")
        await settle()
        await trio.sleep(5)
        assert h.supervisor.sessions.get(s.id) is None  # evicted: reloaded from the log
        again = await h.send(
            s, {"type": "approval", "call_id": req.data["call_id"], "decision": "reject"}
        )
        assert (again.status, again.code) == ("rejected", "already_resolved")
        assert again.error == f"approval {req.data['call_id']!r} was already resolved (approved)"
        approval = await h.store.get_approval(s.id, str(req.data["call_id"]))
        assert approval is not None and approval.status.value == "approved"
        assert backend.approval_reads == 1  # the test's own read above, none by the runtime


async def test_a_resumed_approval_expires_at_its_logged_expiry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with counted_store() as (store, backend):
        async with open_runtime(RuntimeConfig(approval_timeout=100), store=store) as h:
            s = await h.session("coder")
            await h.message(s, "create a.py with x")
            req = await h.wait_for(s, "approval.requested")
        # Restarted with a longer timeout: the logged expires_at (100 s after the
        # request, in wall-clock time, which has hardly moved) still decides.
        async with open_runtime(RuntimeConfig(approval_timeout=1000), store=store) as h2:
            restarted = trio.current_time()
            resolved = await h2.wait_for(s, "approval.resolved")
            assert resolved.data["by"] == "timeout"
            assert 99 <= trio.current_time() - restarted <= 100
            approval = await h2.store.get_approval(s.id, str(req.data["call_id"]))
            assert approval is not None and approval.status.value == "expired"
            assert approval.resolved_by == "timeout"
        assert backend.approval_reads == 1  # the test's own read


async def test_a_turn_cancelled_while_awaiting_approval_closes_it_from_the_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with counted_store() as (store, backend), open_runtime(store=store) as h:
        s = await h.session("coder")
        ack = await h.message(s, "create a.py with x")
        req = await h.wait_for(s, "approval.requested")
        cancel = await h.send(s, {"type": "cancel", "turn_id": ack.turn_id})
        assert cancel.status == "accepted"
        resolved = await h.wait_for(s, "approval.resolved")
        assert (resolved.data["decision"], resolved.data["by"]) == ("cancel", "cancel")
        assert backend.approval_reads == 0
        approval = await h.store.get_approval(s.id, str(req.data["call_id"]))
        assert approval is not None and approval.status.value == "cancelled"
        assert await h.store.pending_approvals(s.id) == []
        await h.assert_paired(s)


async def test_a_signal_wakes_every_waiter_once_per_fire() -> None:
    signal = Signal()
    signal.fire()  # nobody waits: nothing is remembered for a later waiter
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await signal.wait()
        woken.append(n)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, 1)
        nursery.start_soon(waiter, 2)
        await trio.testing.wait_all_tasks_blocked()
        assert woken == []
        signal.fire()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(woken) == [1, 2]
        nursery.start_soon(waiter, 3)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(woken) == [1, 2]  # the earlier fire does not wake a later waiter
        signal.fire()
    assert sorted(woken) == [1, 2, 3]
