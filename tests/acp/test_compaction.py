"""Compactions → ACP ``compaction_update``: the pure fold, and the adapter end to end.

Every update is checked against ``SessionUpdate`` in both ACP v1 schemas; the end to
end tests run the adapter over the embedded runtime (``test_adapter.py``'s client).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.acp import EmbeddedLink
from server.acp._compaction import FAILED, CompactionUpdates
from server.acp._mapping import Translator
from tests.acp.conformance import problems
from tests.acp.test_adapter import CAPS, Client, connected, load_params

COMPACTION_CAPS = CAPS | {"session": {"compaction": {}}}


def event(seq: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"seq": seq, "session_id": "ses_1", "type": kind, "turn_id": "t1", **fields}


def started(seq: int) -> dict[str, Any]:
    return event(seq, "compaction.started", reason="requested", tokens_before=900)


def compacted(seq: int, summary: str = "Summary: the facts") -> dict[str, Any]:
    return event(seq, "context.compacted", summary=summary, from_seq=1, to_seq=seq - 1)


def fold(*events: dict[str, Any]) -> list[dict[str, Any]]:
    updates = CompactionUpdates()
    out: list[dict[str, Any]] = [u for e in events for u in updates.feed(e)]
    for update in out:
        assert problems("SessionUpdate", update) == [], update
    return out


def test_a_compaction_is_in_progress_then_completed_with_its_summary() -> None:
    assert fold(started(7), event(8, "usage", purpose="compact"), compacted(9)) == [
        {
            "sessionUpdate": "compaction_update",
            "compactionId": "compaction-7",
            "status": "in_progress",
        },
        {
            "sessionUpdate": "compaction_update",
            "compactionId": "compaction-7",
            "status": "completed",
            "summary": [{"type": "text", "text": "Summary: the facts"}],
        },
    ]


@pytest.mark.parametrize(
    ("after", "status", "error"),
    [
        (
            event(8, "error", code="model_error", message="the model failed"),
            "failed",
            "the model failed",
        ),
        (event(8, "text.delta", message_id="m1", text="Hi"), "failed", FAILED),
        (event(8, "message", message_id="m1", content="Hi"), "failed", FAILED),
        (event(8, "turn.ended", reason="completed"), "failed", FAILED),
        (event(8, "turn.ended", reason="cancelled"), "cancelled", None),
        (event(8, "turn.ended", reason="interrupted"), "cancelled", None),
    ],
)
def test_a_compaction_with_no_summary_ends_when_the_turn_goes_past_it(
    after: dict[str, Any], status: str, error: str | None
) -> None:
    updates = fold(started(7), after, event(9, "turn.ended", reason="completed"))
    expected: dict[str, Any] = {
        "sessionUpdate": "compaction_update",
        "compactionId": "compaction-7",
        "status": status,
    }
    if error is not None:
        expected["error"] = error
    assert updates[1:] == [expected]  # ended once: the later turn.ended adds nothing


def test_other_events_leave_it_in_progress() -> None:
    updates = fold(
        started(7),
        event(8, "usage", purpose="compact"),
        event(9, "user.message", content="queued by another client"),
        event(10, "tool.call", call_id="c1", name="read_file", arguments={}),
    )
    assert [u["status"] for u in updates] == ["in_progress"]


def test_a_second_start_fails_the_first_and_a_summary_without_a_start_stands_alone() -> None:
    updates = fold(started(3), started(5), compacted(6), compacted(9, "Summary: again"))
    assert [(u["compactionId"], u["status"]) for u in updates] == [
        ("compaction-3", "in_progress"),
        ("compaction-3", "failed"),
        ("compaction-5", "in_progress"),
        ("compaction-5", "completed"),
        ("compaction-9", "completed"),
    ]


def test_an_empty_summary_is_an_empty_list() -> None:
    assert fold(started(1), compacted(2, summary=""))[-1]["summary"] == []


def test_the_translator_shows_compactions_only_to_a_client_that_takes_them() -> None:
    events = [started(7), compacted(8), event(9, "turn.ended", reason="completed")]
    plain, taking = Translator("/work"), Translator("/work", compaction=True)
    assert not [u for e in events for u in plain.feed(e) if "compactionId" in u]
    shown = [u["status"] for e in events for u in taking.feed(e) if "compactionId" in u]
    assert shown == ["in_progress", "completed"]


async def facts_then_compact(client: Client) -> str:
    """A new session with three turns, then ``/compact``: its id."""
    session_id = await client.new_session()
    for i in range(3):
        await client.prompt(session_id, f"remember fact {i}")
    assert (await client.prompt(session_id, "/compact"))["result"]["stopReason"] == "end_turn"
    return session_id


async def test_slash_compact_shows_the_compaction_live_and_on_load(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize(COMPACTION_CAPS)
        session_id = await facts_then_compact(client)
        live = client.updates("compaction_update")
    assert [u["status"] for u in live] == ["in_progress", "completed"]
    assert live[0]["compactionId"] == live[1]["compactionId"]
    (summary,) = live[1]["summary"]
    assert summary["type"] == "text" and "remember fact 0" in summary["text"]
    async with connected(link, tmp_path) as reader:
        await reader.initialize(COMPACTION_CAPS)
        loaded = await reader.call("session/load", load_params(session_id, reader.workspace))
        assert "result" in loaded, loaded
        assert reader.updates("compaction_update") == live


async def test_a_client_that_did_not_advertise_compaction_gets_no_update(
    link: EmbeddedLink, tmp_path: Path
) -> None:
    async with connected(link, tmp_path) as client:
        await client.initialize()
        session_id = await facts_then_compact(client)
        assert client.updates("compaction_update") == []
    assert any(e["type"] == "context.compacted" for e in await link.read_events(session_id))
