"""More turn scenarios: parallel calls, questions, subtask failure, model failure, caps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from agents import ModelError, PairingViolation, Policy, RuntimeConfig, ScriptedModel
from agents._core._model import SUBTASK_MARKER
from agents.model import (
    ChatMessage,
    FinishDelta,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
)
from agents.testing import Rule, check_pairing
from sessions import JSON

from .harness import open_runtime


async def test_two_tool_calls_in_one_message_each_get_a_result() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with 1 and create b.py with 2")
        first = await h.wait_for(s, "approval.requested")
        second = await h.wait_for(s, "approval.requested", after=first.seq)
        assert first.data["call_id"] != second.data["call_id"]
        for req in (second, first):  # answered out of order on purpose
            ack = await h.send(
                s, {"type": "approval", "call_id": req.data["call_id"], "decision": "approve"}
            )
            assert ack.status == "accepted"
        calls = [ev for ev in await h.events(s) if ev.type == "tool.call"]
        for call in calls:
            ack = await h.send(
                s, {"type": "tool_result", "call_id": call.data["call_id"], "result": "ok"}
            )
            assert ack.status == "accepted"
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "completed"
        message = next(ev for ev in await h.events(s) if ev.type == "message")
        tool_calls = message.data["tool_calls"]
        assert isinstance(tool_calls, list) and len(tool_calls) == 2
        await h.assert_paired(s)


async def test_followup_question_is_answered() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "ask which database should I use?")
        asked = await h.wait_for(s, "question.asked")
        assert asked.data["text"] == "which database should I use?"
        ack = await h.send(
            s, {"type": "answer", "question_id": asked.data["question_id"], "text": "SQLite"}
        )
        assert ack.status == "accepted"
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "completed"
        result = await h.wait_for(s, "tool.result")
        assert result.data["content"] == "SQLite"
        await h.assert_paired(s)


class FailingChildModel:
    """The scripted model, except that every call of a subtask fails upstream."""

    name = "failing-child"

    def __init__(self) -> None:
        self.inner = ScriptedModel()

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        system = request.messages[0].content or ""
        if SUBTASK_MARKER in system:
            raise ModelError("upstream returned 500", code="upstream_error")
        async with self.inner.stream(request) as deltas:
            yield deltas


async def test_failing_child_returns_an_error_result_to_the_parent() -> None:
    # (A child that runs out of LLM steps does not fail: the turn's budget is
    # spent, and the whole turn ends max_steps; see test_turn_budget.py.)
    async with open_runtime(model=FailingChildModel()) as h:
        s = await h.session()
        await h.message(s, "first explain a.py then explain b.py")
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "completed"
        events = await h.events(s)
        ended = [ev for ev in events if ev.type == "subtask.ended"]
        assert [ev.data["ok"] for ev in ended] == [False, False]
        started = [ev for ev in events if ev.type == "subtask.started"]
        parent_results = [
            ev
            for ev in events
            if ev.type == "tool.result"
            and ev.data["call_id"] in {st.data["call_id"] for st in started}
        ]
        assert [ev.data["ok"] for ev in parent_results] == [False, False]
        assert all("subtask failed" in str(ev.data["content"]) for ev in parent_results)
        await h.assert_paired(s)


async def test_cancel_reaches_the_child() -> None:
    async with open_runtime() as h:
        s = await h.session()
        await h.message(s, "first create a.md with x then explain it")
        req = await h.wait_for(s, "approval.requested")
        assert isinstance(req.data.get("subtask_id"), str)
        ack = await h.send(s, {"type": "cancel"})
        assert ack.status == "accepted"
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "cancelled"
        ended = await h.wait_for(s, "subtask.ended")
        assert ended.data["ok"] is False
        types = await h.types(s)
        assert types.count("subtask.started") == 1
        await h.assert_paired(s)


class FailingModel:
    """Streams a few words, then fails like an upstream that dropped mid-answer."""

    name = "failing"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        async def deltas() -> AsyncIterator[ModelDelta]:
            yield TextDelta("partial ")
            # The turn starts committing that; the rest arrives and the model fails
            # while the commit is in flight.
            await trio.lowlevel.checkpoint()
            yield TextDelta("answer")
            raise ModelError("upstream returned 500 after the first token", code="upstream_error")

        yield deltas()


async def test_model_failure_becomes_an_error_event_and_ends_the_turn() -> None:
    async with open_runtime(model=FailingModel()) as h:
        s = await h.session("ask")
        await h.message(s, "hello")
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "error"
        error = await h.wait_for(s, "error")
        assert error.data["code"] == "upstream_error"
        assert "500" in str(error.data["message"])
        message = await h.wait_for(s, "message")
        assert message.data["truncated"] is True
        # Everything the model sent before failing is committed (shown), then kept
        # as the truncated message: nothing still queued when it failed is lost.
        deltas = [str(ev.data["text"]) for ev in await h.events(s) if ev.type == "text.delta"]
        assert message.data["content"] == "".join(deltas) == "partial answer"
        # The session stays usable: a failing turn never takes anything else down.
        assert await h.supervisor.running_turns([s.id]) == {}


class PingPongModel:
    """Always asks to switch to the other of coder/debug."""

    name = "pingpong"

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[ModelDelta]]:
        target = "debug" if request.agent == "coder" else "coder"
        calls = sum(len(m.tool_calls) for m in request.messages)

        async def deltas() -> AsyncIterator[ModelDelta]:
            args = f'{{"mode": "{target}", "reason": "again"}}'
            yield ToolCallDelta(ToolCallRequest(f"c{calls}", "switch_mode", args))
            yield FinishDelta("tool_calls")

        yield deltas()


async def test_agent_switches_per_turn_are_capped() -> None:
    async with open_runtime(
        RuntimeConfig(max_switches=3, max_steps=10), model=PingPongModel()
    ) as h:
        s = await h.session("coder")
        await h.message(s, "go")
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "max_steps"
        types = await h.types(s)
        assert types.count("agent.switched") == 3
        refused = [
            ev for ev in await h.events(s) if ev.type == "tool.result" and ev.data["ok"] is False
        ]
        assert refused and "too many agent switches" in str(refused[0].data["content"])
        await h.assert_paired(s)


def test_pairing_violations_are_detected() -> None:
    call = ToolCallRequest("c1", "read_file", "{}")
    with pytest.raises(PairingViolation, match="without a result"):
        check_pairing([ChatMessage("assistant", None, (call,))])
    with pytest.raises(PairingViolation, match="answers no earlier call"):
        check_pairing([ChatMessage("tool", "x", tool_call_id="c9")])
    with pytest.raises(PairingViolation, match="more than one result"):
        check_pairing(
            [
                ChatMessage("assistant", None, (call,)),
                ChatMessage("tool", "x", tool_call_id="c1"),
                ChatMessage("tool", "y", tool_call_id="c1"),
            ]
        )
    check_pairing(
        [ChatMessage("assistant", None, (call,)), ChatMessage("tool", "x", tool_call_id="c1")]
    )


async def test_ide_error_reaches_the_model_marked_as_an_error() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "read missing.py")
        call = await h.wait_for(s, "tool.call")
        ack = await h.send(
            s, {"type": "tool_result", "call_id": call.data["call_id"], "error": "no such file"}
        )
        assert ack.status == "accepted"
        result = await h.wait_for(s, "tool.result")
        assert result.data["ok"] is False
        assert result.data["content"] == "error: no such file"
        final = await h.wait_for(s, "message", after=result.seq)
        assert "failed" in str(final.data["content"])


async def test_an_edit_cannot_bypass_a_deny_rule() -> None:
    policy = Policy((Rule("write_file", {"path": "secrets/*"}, "deny", "no secrets"),))
    async with open_runtime(policy=policy) as h:
        s = await h.session("coder")
        await h.message(s, "create notes.md with hi")
        req = await h.wait_for(s, "approval.requested")
        edit: dict[str, JSON] = {"path": "secrets/key", "content": "x"}
        ack = await h.send(
            s,
            {
                "type": "approval",
                "call_id": req.data["call_id"],
                "decision": "edit",
                "arguments": edit,
            },
        )
        assert ack.status == "rejected" and ack.code == "invalid_arguments"
        assert ack.error is not None and "no secrets" in ack.error
        assert await h.store.pending_approvals(s.id) != []
