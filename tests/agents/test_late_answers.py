"""An answer to a call that no longer waits says how the call ended.

Like a second decision on an approval ("already resolved (approved)"): a call
whose turn was cancelled is "already resolved (cancelled)", one that timed out
"(expired)"; only a call somebody answered is "already answered". The log alone
tells which, so a restarted server says the same.
"""

from __future__ import annotations

import trio
import trio.testing

from agents import Ack, RuntimeConfig
from agents.testing import SessionState
from sessions import JSON, Session

from .harness import Harness, open_runtime


async def late(h: Harness, s: Session, command: dict[str, JSON]) -> Ack:
    ack = await h.send(s, command)
    assert (ack.status, ack.code) == ("rejected", "already_resolved"), ack
    return ack


def answer(question_id: JSON) -> dict[str, JSON]:
    return {"type": "answer", "question_id": question_id, "text": "a.py"}


def result(call_id: JSON) -> dict[str, JSON]:
    return {"type": "tool_result", "call_id": call_id, "result": "late"}


async def test_a_question_of_a_cancelled_turn_was_cancelled() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        await h.message(s, "ask which file?")
        asked = await h.wait_for(s, "question.asked")
        question = asked.data["question_id"]
        assert (await h.send(s, {"type": "cancel"})).status == "accepted"
        ack = await late(h, s, answer(question))
        assert ack.error == f"question {question!r} was already resolved (cancelled)"
        state = SessionState(s.id)
        state.apply_all(await h.events(s))
        assert state.unanswered == {question: "cancelled"}


async def test_a_question_nobody_answered_in_time_expired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(RuntimeConfig(question_timeout=5)) as h:
        s = await h.session("ask")
        await h.message(s, "ask which file?")
        asked = await h.wait_for(s, "question.asked")
        await h.wait_for(s, "turn.ended")
        ack = await late(h, s, answer(asked.data["question_id"]))
        assert ack.error == f"question {asked.data['question_id']!r} was already resolved (expired)"


async def test_an_answered_question_was_answered() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        await h.message(s, "ask which file?")
        asked = await h.wait_for(s, "question.asked")
        assert (await h.send(s, answer(asked.data["question_id"]))).status == "accepted"
        ack = await late(h, s, answer(asked.data["question_id"]))
        assert ack.error == f"question {asked.data['question_id']!r} was already answered"


async def test_a_tool_call_of_a_cancelled_turn_was_cancelled() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "read a.py")
        call = await h.wait_for(s, "tool.call")
        assert (await h.send(s, {"type": "cancel"})).status == "accepted"
        ack = await late(h, s, result(call.data["call_id"]))
        assert ack.error == f"tool call {call.data['call_id']!r} was already resolved (cancelled)"


async def test_a_tool_call_the_ide_did_not_answer_in_time_expired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(RuntimeConfig(tool_timeout=5)) as h:
        s = await h.session("coder")
        await h.message(s, "read a.py")
        call = await h.wait_for(s, "tool.call")
        await h.wait_for(s, "turn.ended")
        ack = await late(h, s, result(call.data["call_id"]))
        assert ack.error == f"tool call {call.data['call_id']!r} was already resolved (expired)"


async def test_a_tool_result_for_an_expired_approval_says_expired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(RuntimeConfig(approval_timeout=5)) as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        request = await h.wait_for(s, "approval.requested")
        await h.wait_for(s, "turn.ended")
        call_id = request.data["call_id"]
        ack = await late(h, s, result(call_id))
        assert ack.error == f"tool call {call_id!r} was already resolved (expired)"
        approval = {"type": "approval", "call_id": call_id, "decision": "approve"}
        ack = await late(h, s, approval)
        assert ack.error == f"approval {call_id!r} was already resolved (expired)"
