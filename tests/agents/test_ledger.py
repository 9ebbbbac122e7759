"""The usage and cost ledger: per call, per turn (subtasks included), per session."""

from __future__ import annotations

from agents import RuntimeConfig
from agents._core._budget import ModelCatalog, ModelLimits
from sessions import Event

from .harness import open_runtime

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
