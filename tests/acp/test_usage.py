"""The ledger → ACP usage: the ``usage_update`` meter a session's turns fold into, and a
prompt's ``usage``. Every payload is checked against its definition in the ACP schema."""

from __future__ import annotations

from typing import Any

import pytest

from server.acp._mapping import Translator
from server.acp._usage import UsageMeter, prompt_usage
from sessions import JSON
from tests.acp.conformance import problems

CWD = "/work/project"


def ended(**fields: Any) -> dict[str, Any]:
    return {"seq": 9, "session_id": "ses_1", "type": "turn.ended", "turn_id": "t", **fields}


def priced(cost: float | None, used: int = 100, size: int = 4096) -> dict[str, Any]:
    usage = {"prompt_tokens": 90, "completion_tokens": 10, "cost": cost, "calls": 1}
    return ended(reason="completed", usage=usage, context_tokens=used, context_window=size)


def meter_of(*events: dict[str, Any]) -> dict[str, Any] | None:
    meter = UsageMeter()
    for event in events:
        meter.turn_ended(event)
    update = meter.update()
    if update is not None:
        assert problems("SessionUpdate", update) == [], update
    return update


def fed(translator: Translator, event: dict[str, Any]) -> list[dict[str, Any]]:
    updates: list[dict[str, Any]] = translator.feed(event)
    return updates


def test_the_meter_is_the_last_context_and_the_sum_of_the_costs() -> None:
    update = meter_of(priced(0.1, used=100), priced(0.2, used=250, size=8192))
    assert update == {
        "sessionUpdate": "usage_update",
        "used": 250,
        "size": 8192,
        "cost": {"amount": 0.3, "currency": "USD"},  # rounded: 0.1 + 0.2 is not 0.3 in floats
    }


def test_an_unpriced_session_has_no_cost_and_an_unpriced_turn_adds_nothing() -> None:
    assert meter_of(priced(None)) == {"sessionUpdate": "usage_update", "used": 100, "size": 4096}
    mixed = meter_of(priced(0.5), priced(None))
    assert isinstance(mixed, dict) and mixed["cost"] == {"amount": 0.5, "currency": "USD"}
    # A priced turn that cost nothing is a real 0, not an unknown.
    free = meter_of(priced(0.0))
    assert isinstance(free, dict) and free["cost"] == {"amount": 0.0, "currency": "USD"}


def test_a_turn_without_its_context_keeps_the_last_meter_and_adds_its_cost() -> None:
    assert meter_of(ended(reason="error")) is None  # nothing known yet: nothing sent
    assert meter_of(ended(reason="error", usage={"cost": 0.25})) is None
    update = meter_of(priced(0.25, used=300), ended(reason="error", usage={"cost": 0.5}))
    assert update == {
        "sessionUpdate": "usage_update",
        "used": 300,
        "size": 4096,
        "cost": {"amount": 0.75, "currency": "USD"},
    }


@pytest.mark.parametrize("bad", [-1, True, 1.5, "100", None])
def test_context_figures_that_are_not_counts_are_ignored(bad: object) -> None:
    assert meter_of(ended(context_tokens=bad, context_window=4096)) is None
    assert meter_of(ended(context_tokens=100, context_window=bad)) is None


@pytest.mark.parametrize("bad", [-0.5, True, "0.1", None, [1]])
def test_costs_that_are_not_amounts_are_ignored(bad: object) -> None:
    update = meter_of(priced(0.5), ended(usage={"cost": bad}))
    assert isinstance(update, dict) and update["cost"]["amount"] == 0.5


def test_live_every_turn_ends_with_the_meter_after_its_other_updates() -> None:
    translator = Translator(CWD)
    first = fed(translator, priced(0.1))
    assert first == [{**first[0], "used": 100, "cost": {"amount": 0.1, "currency": "USD"}}]
    second = fed(translator, priced(0.2, used=180))
    assert [(u["used"], u["cost"]["amount"]) for u in second] == [(180, 0.3)]
    assert all(problems("SessionUpdate", u) == [] for u in first + second)


def test_a_replay_sends_one_meter_at_its_end_with_the_whole_log_counted() -> None:
    translator = Translator(CWD, replay=True)
    assert translator.feed(priced(0.1)) == []
    assert translator.feed(priced(0.2, used=180)) == []
    assert translator.end_replay() == [
        {
            "sessionUpdate": "usage_update",
            "used": 180,
            "size": 4096,
            "cost": {"amount": 0.3, "currency": "USD"},
        }
    ]
    # Live from there, counting on from the replayed total.
    (live,) = fed(translator, priced(0.4, used=200))
    assert live["cost"]["amount"] == pytest.approx(0.7)
    # A log with no turn that knew its context: no meter.
    assert Translator(CWD, replay=True).end_replay() == []


def test_a_prompt_s_usage_is_the_turn_s_tokens() -> None:
    usage: JSON = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "cached_tokens": 1000,
        "reasoning_tokens": 120,
        "cost": None,
        "calls": 3,
    }
    answer = prompt_usage(usage)
    assert answer == {
        "inputTokens": 1200,
        "outputTokens": 300,
        "totalTokens": 1500,
        "cachedReadTokens": 1000,
        "thoughtTokens": 120,
    }
    assert problems("Usage", answer) == []
    assert prompt_usage({"prompt_tokens": 5, "completion_tokens": 0}) == {
        "inputTokens": 5,
        "outputTokens": 0,
        "totalTokens": 5,
    }
    nothings: list[JSON] = [None, "x", {}, {"prompt_tokens": 5}]
    nothings.append({"prompt_tokens": -1, "completion_tokens": 1})
    for nothing in nothings:
        assert prompt_usage(nothing) is None
