"""The usage and cost ledger: per call, per turn (subtasks included), per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing

from agents import RuntimeConfig
from agents._core._budget import ModelCatalog, ModelLimits, estimate_tokens
from agents._core._model import SUBTASK_MARKER, ModelDelta, ModelRequest, TextDelta
from agents._errors import ModelError
from agents._providers._scripted import ScriptedModel, stream_words
from sessions import Event, Session

from .harness import Harness, open_runtime

PRICED = ModelLimits(4_096, 512, input_price=1.0, output_price=2.0, cached_input_price=0.5)


def usages(events: list[Event]) -> list[Event]:
    return [ev for ev in events if ev.type == "usage"]


async def test_turn_and_session_totals_are_the_sum_of_usage_subtasks_included() -> None:
    config = RuntimeConfig(models=ModelCatalog({"scripted": PRICED}))
    async with open_runtime(config) as h:
        s = await h.session("orchestrator")
        await h.message(s, "first explain the parser then explain the lexer")
        ended = await h.wait_for(s, "turn.ended")
        events = await h.events(s)
        calls = usages(events)
        assert any("subtask_id" in ev.data for ev in calls)  # delegated work was counted
        assert calls[0].data["purpose"] == "route"  # the orchestrator's routing call too
        assert all("estimated" not in ev.data for ev in calls)  # all reported by the model
        totals = ended.data["usage"]
        assert isinstance(totals, dict)
        assert totals["calls"] == len(calls)
        assert totals["prompt_tokens"] == sum(int(str(ev.data["prompt_tokens"])) for ev in calls)
        expected = sum(
            int(str(ev.data["prompt_tokens"])) * 1.0 + int(str(ev.data["completion_tokens"])) * 2.0
            for ev in calls
        )
        assert abs(float(str(totals["cost"])) - expected / 1_000_000) < 1e-9
        session = await h.store.get_session(s.id)
        assert session is not None
        assert (await h.supervisor.usage(session))["calls"] == len(calls)
        assert isinstance(ended.data["context_tokens"], int)
        assert ended.data["context_window"] == 4_096


async def test_an_unpriced_model_costs_null_not_zero() -> None:
    config = RuntimeConfig(model="unlisted", models=ModelCatalog({}))
    async with open_runtime(config) as h:
        s = await h.session("coder")
        await h.message(s, "hello")
        ended = await h.wait_for(s, "turn.ended")
        calls = usages(await h.events(s))
        assert calls and all("cost" in ev.data and ev.data["cost"] is None for ev in calls)
        totals = ended.data["usage"]
        assert isinstance(totals, dict) and totals["cost"] is None


def test_cached_tokens_are_priced_at_the_cached_rate() -> None:
    assert PRICED.cost(1_000_000, 0, cached_tokens=400_000) == 0.6 + 0.2
    assert ModelLimits().cost(10, 10) is None


def number(ev: Event, key: str) -> float:
    value = ev.data[key]
    assert isinstance(value, int | float), (key, value)
    return value


async def test_a_call_cut_while_answering_is_estimated_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The provider bills a cancelled stream; the ledger must not say it cost nothing."""
    config = RuntimeConfig(models=ModelCatalog({"scripted": PRICED}))
    async with open_runtime(config) as h:
        s = await h.session("ask")
        ack = await h.message(s, "stream 20 words then hold cut then 480 words")
        text: list[str] = []

        def head_sent(ev: Event) -> bool:
            text.append(str(ev.data["text"]))
            return "".join(text) == stream_words(20)

        with trio.fail_after(60):
            await h.wait_for(s, "text.delta", where=head_sent)
            cancel = await h.send(s, {"type": "cancel", "turn_id": ack.turn_id})
            assert cancel.status == "accepted"
            ended = await h.wait_for(s, "turn.ended")
        events = await h.events(s)
        assert [ev.type for ev in events][-3:] == ["message", "usage", "turn.ended"]
        usage = events[-2]
        assert usage.data["estimated"] is True and usage.data["purpose"] == "chat"
        completion = estimate_tokens(stream_words(20))
        # The request's size as the context meter saw it (the same estimate the
        # turn reports as its context), and the text that came before the cut.
        assert number(usage, "prompt_tokens") == number(ended, "context_tokens") > 0
        assert number(usage, "completion_tokens") == completion
        prompt = int(number(usage, "prompt_tokens"))
        assert number(usage, "cost") == PRICED.cost(prompt, completion)
        totals = ended.data["usage"]
        assert isinstance(totals, dict)
        assert (totals["calls"], totals["prompt_tokens"]) == (1, prompt)
        assert totals["completion_tokens"] == completion
        session = await h.store.get_session(s.id)
        assert session is not None
        assert (await h.supervisor.usage(session))["calls"] == 1
        # The counters are the ledger's: the estimate counts, and says it is one.
        assert counted(h, "agent_runtime_model_estimated_calls_total") == 1
        assert counted(h, "agent_runtime_model_tokens_total", kind="completion") == completion
        assert counted(h, "agent_runtime_model_cost_dollars_total") == number(usage, "cost")


def counted(h: Harness, name: str, **labels: str) -> float | None:
    """The scripted model's sample *name* in the runtime's metrics (None: never counted)."""
    registry = h.supervisor.metrics.registry
    return registry.get_sample_value(name, {"model": "scripted", **labels})


async def turns_then_compact(h: Harness, s: Session, turns: int) -> tuple[int, Event]:
    """*turns* one-message turns, then a ``compact``: the seq before it, and its turn.ended."""
    last = 0
    for i in range(turns):
        await h.message(s, f"remember fact {i}")
        last = (await h.wait_for(s, "turn.ended", after=last)).seq
    await h.send(s, {"type": "compact"})
    return last, await h.wait_for(s, "turn.ended", after=last)


async def test_the_metrics_count_each_committed_usage_once() -> None:
    """Chat, routing and summary calls: the token and cost counters are the log's sums."""
    config = RuntimeConfig(models=ModelCatalog({"scripted": PRICED}))
    async with open_runtime(config) as h:
        s = await h.session("orchestrator")
        await turns_then_compact(h, s, 3)
        calls = usages(await h.events(s))
        assert {str(ev.data["purpose"]) for ev in calls} == {"route", "chat", "compact"}
        for kind in ("prompt", "completion"):
            logged = sum(number(ev, f"{kind}_tokens") for ev in calls)
            assert counted(h, "agent_runtime_model_tokens_total", kind=kind) == logged
        cost = counted(h, "agent_runtime_model_cost_dollars_total")
        assert cost is not None and abs(cost - sum(number(ev, "cost") for ev in calls)) < 1e-12
        assert counted(h, "agent_runtime_model_estimated_calls_total") is None


async def test_a_call_cut_before_any_answer_is_not_estimated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Nothing came back, so nothing says the call was billed: no made-up usage."""
    config = RuntimeConfig(models=ModelCatalog({"scripted": PRICED}))
    async with open_runtime(config) as h:
        s = await h.session("ask")
        ack = await h.message(s, "stream 0 words then hold silent then 5 words")
        with trio.fail_after(60):
            await h.wait_for(s, "turn.started")
            await trio.testing.wait_all_tasks_blocked()
            cancel = await h.send(s, {"type": "cancel", "turn_id": ack.turn_id})
            assert cancel.status == "accepted"
            ended = await h.wait_for(s, "turn.ended")
        assert usages(await h.events(s)) == []
        totals = ended.data["usage"]
        assert isinstance(totals, dict) and totals["calls"] == 0


def is_subtask(request: ModelRequest) -> bool:
    return any(m.role == "system" and SUBTASK_MARKER in (m.content or "") for m in request.messages)


class BreaksMidAnswer:
    """The scripted model, except that the calls *breaks* picks fail after their first words."""

    name = "scripted"

    def __init__(self, breaks: Callable[[ModelRequest], bool]) -> None:
        self.inner = ScriptedModel()
        self.breaks = breaks

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        if not self.breaks(request):
            async with self.inner.stream(request) as deltas:
                yield deltas
            return

        async def broken() -> AsyncIterator[ModelDelta]:
            yield TextDelta('{"agent": "co')
            raise ModelError("connection reset mid-answer")

        yield broken()


async def test_a_routing_call_that_breaks_mid_answer_is_estimated_and_the_turn_goes_on() -> None:
    config = RuntimeConfig(models=ModelCatalog({"scripted": PRICED}))
    model = BreaksMidAnswer(lambda request: request.purpose == "route")
    async with open_runtime(config, model=model) as h:
        s = await h.session("orchestrator")
        await h.message(s, "explain the parser")
        ended = await h.wait_for(s, "turn.ended")
        assert ended.data["reason"] == "completed"  # routed by keywords instead
        calls = usages(await h.events(s))
        route = calls[0]
        assert (route.data["purpose"], route.data["estimated"]) == ("route", True)
        assert number(route, "completion_tokens") == estimate_tokens('{"agent": "co')
        assert number(route, "prompt_tokens") > 0
        assert all("estimated" not in ev.data for ev in calls[1:])
        totals = ended.data["usage"]
        assert isinstance(totals, dict) and totals["calls"] == len(calls)


async def test_a_subtask_call_that_breaks_mid_answer_is_estimated_before_the_subtask_ends() -> None:
    config = RuntimeConfig(models=ModelCatalog({"scripted": PRICED}))
    async with open_runtime(config, model=BreaksMidAnswer(is_subtask)) as h:
        s = await h.session("orchestrator")
        await h.message(s, "first explain the parser then explain the lexer")
        ended = await h.wait_for(s, "turn.ended")
        events = await h.events(s)
        failed = [ev for ev in events if ev.type == "subtask.ended" and ev.data["ok"] is False]
        assert failed, "the subtasks were to fail"
        for end in failed:
            sub = end.data["subtask_id"]
            own = [ev for ev in events if ev.data.get("subtask_id") == sub and ev.type == "usage"]
            assert len(own) == 1 and own[0].data["estimated"] is True, own
            assert own[0].seq < end.seq  # the subtask's usage, before the subtask ended
        totals = ended.data["usage"]
        assert isinstance(totals, dict) and totals["calls"] == len(usages(events))
        assert (await h.types(s)).count("turn.ended") == 1


async def test_a_summary_call_that_breaks_mid_answer_is_estimated() -> None:
    config = RuntimeConfig(models=ModelCatalog({"scripted": PRICED}))
    model = BreaksMidAnswer(lambda request: request.purpose == "compact")
    async with open_runtime(config, model=model) as h:
        s = await h.session("coder")
        last, ended = await turns_then_compact(h, s, 4)
        assert ended.data["reason"] == "error"  # a requested compaction that failed
        events = [ev for ev in await h.events(s) if ev.seq > last]
        # Committed when the call failed (so a crash later cannot lose it), not at the close.
        assert [ev.type for ev in events][-4:] == [
            "compaction.started",
            "usage",
            "error",
            "turn.ended",
        ]
        calls = usages(events)
        assert [(ev.data["purpose"], ev.data.get("estimated")) for ev in calls] == [
            ("compact", True)
        ]
        assert number(calls[0], "completion_tokens") == estimate_tokens('{"agent": "co')
        totals = ended.data["usage"]
        assert isinstance(totals, dict) and totals["calls"] == 1
