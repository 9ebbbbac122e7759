"""The README's examples, end to end on the memory store and the scripted model.

The tour ("Try it" in README.md) runs in one fresh session, in order, as a person
would type it; every approval is approved and every tool call answered like the
terminal client would. The messages are read from the README itself, so the tour
and this test cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sessions import JSON, Event, Session

from .harness import Harness, open_runtime

README = Path(__file__).parents[2] / "README.md"

TOUR = [
    "create hello.py with print('hi')",
    "read hello.py",
    "run python3 hello.py",
    "first create test_hello.py with def test_hi(): assert True then run pytest -q",
    "explain hello.py",
    "switch to debug",
    "switch to orchestrator",
]

_RESULTS: dict[str, JSON] = {
    "write_file": "wrote 11 bytes",
    "read_file": "print('hi')",
    "execute_command": {"exit_code": 0, "output": "hi"},
    "list_files": ["hello.py"],
    "delete_file": "deleted hello.py",
}


def readme_tour() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    lines = [m[1] for m in re.finditer(r"^you> (.+?)(?:\s{2,}#.*)?$", section, re.MULTILINE)]
    return [line for line in lines if not line.startswith("/")]  # the client's own commands


async def converse(h: Harness, s: Session, content: str) -> list[Event]:
    """Send *content*, answer everything the turn asks for, and return the turn's events."""
    before = await h.events(s)
    after = before[-1].seq if before else 0
    ack = await h.message(s, content)
    async with h.store.subscribe(s.id, after=after) as sub:
        async for ev in sub:
            if ev.type == "approval.requested":
                await h.send(
                    s, {"type": "approval", "call_id": ev.data["call_id"], "decision": "approve"}
                )
            elif ev.type == "tool.call":
                result = _RESULTS[str(ev.data["name"])]
                await h.send(
                    s, {"type": "tool_result", "call_id": ev.data["call_id"], "result": result}
                )
            elif ev.type == "question.asked":
                await h.send(
                    s, {"type": "answer", "question_id": ev.data["question_id"], "text": "hello.py"}
                )
            elif ev.type == "turn.ended" and ev.turn_id == ack.turn_id:
                break
    turn = [ev for ev in await h.events(s) if ev.seq > after]
    assert turn[-1].data["reason"] == "completed", (content, turn[-1].data)
    refused = [ev.data for ev in turn if ev.type == "tool.result" and ev.data["ok"] is False]
    assert not refused, (content, refused)
    assert "error" not in [ev.type for ev in turn], content
    return turn


def of(turn: list[Event], type_: str) -> list[Event]:
    return [ev for ev in turn if ev.type == type_]


def switches(turn: list[Event]) -> list[tuple[JSON, JSON]]:
    return [(ev.data["from"], ev.data["to"]) for ev in of(turn, "agent.switched")]


def calls(turn: list[Event]) -> list[JSON]:
    return [ev.data["name"] for ev in of(turn, "tool.call")]


def last_text(turn: list[Event]) -> str:
    messages = [ev for ev in of(turn, "message") if "subtask_id" not in ev.data]
    return str(messages[-1].data["content"])


def test_the_readme_tour_is_this_one() -> None:
    assert readme_tour() == TOUR


async def test_the_readme_tour_works_from_a_fresh_session() -> None:
    async with open_runtime() as h:
        s = await h.session()
        turns = [await converse(h, s, content) for content in TOUR]
        create, read, run, first_then, explain, to_debug, to_orchestrator = turns

        assert switches(create) == [("orchestrator", "coder")]
        assert calls(create) == ["write_file"] and len(of(create, "approval.resolved")) == 1

        assert switches(read) == [] and calls(read) == ["read_file"]
        assert of(read, "approval.requested") == []

        assert calls(run) == ["execute_command"] and len(of(run, "approval.resolved")) == 1

        # The session is sticky on coder; the two steps still get delegated.
        assert switches(first_then) == [("coder", "orchestrator")]
        started = of(first_then, "subtask.started")
        assert [ev.data["agent"] for ev in started] == ["coder", "coder"]
        assert [ev.data["ok"] for ev in of(first_then, "subtask.ended")] == [True, True]
        assert calls(first_then) == ["write_file", "execute_command"]
        assert len(of(first_then, "approval.resolved")) == 2

        assert switches(explain) == [("orchestrator", "ask")]
        assert "ask agent" in last_text(explain)

        assert switches(to_debug) == [("ask", "debug")]
        assert last_text(to_debug) == "I am already the debug agent."
        assert switches(to_orchestrator) == [("debug", "orchestrator")]
        assert last_text(to_orchestrator) == "I am already the orchestrator agent."

        again = await h.store.get_session(s.id)
        assert again is not None and again.current_agent == "orchestrator"
        await h.assert_paired(s)


@pytest.mark.parametrize(
    ("agent", "message"),
    [(agent, "switch to orchestrator") for agent in ("coder", "architect", "debug", "ask")]
    + [(agent, "switch to coder") for agent in ("orchestrator", "architect", "debug", "ask")]
    + [(None, "switch to architect"), (None, "switch to orchestrator")],
)
async def test_switch_to_never_bounces(agent: str | None, message: str) -> None:
    async with open_runtime() as h:
        s = await h.session(agent)
        turn = await converse(h, s, message)
        target = message.removeprefix("switch to ")
        assert len(switches(turn)) <= 1
        assert last_text(turn) == f"I am already the {target} agent."
        again = await h.store.get_session(s.id)
        assert again is not None and again.current_agent == target


@pytest.mark.parametrize("agent", ["coder", "architect", "debug", "ask"])
async def test_first_then_delegates_from_any_agent(agent: str) -> None:
    async with open_runtime() as h:
        s = await h.session(agent)
        turn = await converse(h, s, "first explain the log then read hello.py")
        assert switches(turn) == [(agent, "orchestrator")]
        assert [ev.data["agent"] for ev in of(turn, "subtask.started")] == ["ask", "coder"]
        summary = str(of(turn, "tool.result")[-1].data["content"])
        assert summary.startswith("Both steps are done. Step 1 (ask): ") and ".;" not in summary


# Every other message the README shows (the script example, the curl and
# WebSocket examples, the scripted rules in the providers table), each in a
# fresh session: the orchestrator routes it and the turn completes cleanly.
README_MESSAGES = [
    ("run pytest -q", "coder", ["execute_command"]),
    ("explain the event log", "ask", []),
    ("what is a turn?", "ask", []),
    ("explain turns", "ask", []),
    ("list src", "coder", ["list_files"]),
    ("delete hello.py", "coder", ["delete_file"]),
    ("ask which file should I read?", "coder", []),
    ("stream 5 words", "coder", []),
    ("first read hello.py then list src", "orchestrator", ["read_file", "list_files"]),
]


@pytest.mark.parametrize(("message", "agent", "tools"), README_MESSAGES)
async def test_other_readme_examples(message: str, agent: str, tools: list[str]) -> None:
    async with open_runtime() as h:
        s = await h.session()
        turn = await converse(h, s, message)
        assert calls(turn) == tools
        again = await h.store.get_session(s.id)
        assert again is not None and again.current_agent == agent
