"""Approval commands: who decided (``by``), and the codes for late or misplaced answers."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from agents import RuntimeConfig
from sessions import ApprovalStatus

from .harness import open_runtime


async def test_a_second_decision_on_an_approval_is_already_resolved() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        req = await h.approve_next(s)
        await h.wait_for(s, "tool.call")  # the call now waits for its tool result
        again = await h.send(
            s, {"type": "approval", "call_id": req.data["call_id"], "decision": "reject"}
        )
        assert (again.status, again.code) == ("rejected", "already_resolved")
        assert again.error == f"approval {req.data['call_id']!r} was already resolved (approved)"


async def test_approving_a_call_that_never_asked_is_not_waiting() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "read a.py")  # reads are allowed without asking
        call = await h.wait_for(s, "tool.call")
        ack = await h.send(
            s, {"type": "approval", "call_id": call.data["call_id"], "decision": "approve"}
        )
        assert (ack.status, ack.code) == ("rejected", "not_waiting")
        assert ack.error == (
            f"call {call.data['call_id']!r} is not waiting for an approval; "
            "it waits for a tool_result"
        )


async def test_a_tool_result_before_the_approval_is_not_waiting() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        req = await h.wait_for(s, "approval.requested")
        ack = await h.send(
            s, {"type": "tool_result", "call_id": req.data["call_id"], "result": "ok"}
        )
        assert (ack.status, ack.code) == ("rejected", "not_waiting")
        assert "not waiting for a tool_result; it waits for an approval" in str(ack.error)


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_a_client_policy_decision_is_recorded_as_by_policy(decision: str) -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        req = await h.wait_for(s, "approval.requested")
        call_id = str(req.data["call_id"])
        ack = await h.send(
            s, {"type": "approval", "call_id": call_id, "decision": decision, "by": "policy"}
        )
        assert ack.status == "accepted", ack
        resolved = await h.wait_for(s, "approval.resolved")
        assert (resolved.data["decision"], resolved.data["by"]) == (decision, "policy")
        approval = await h.store.get_approval(s.id, call_id)
        assert approval is not None and approval.resolved_by == "policy"


async def test_by_defaults_to_user() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        await h.approve_next(s)
        resolved = await h.wait_for(s, "approval.resolved")
        assert resolved.data["by"] == "user"


async def test_an_unknown_by_is_refused_and_the_approval_stays_pending() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        req = await h.wait_for(s, "approval.requested")
        call_id = str(req.data["call_id"])
        ack = await h.send(
            s, {"type": "approval", "call_id": call_id, "decision": "approve", "by": "robot"}
        )
        assert (ack.status, ack.code) == ("rejected", "invalid_command")
        assert "field 'by' must be one of 'user', 'policy'" in str(ack.error)
        approval = await h.store.get_approval(s.id, call_id)
        assert approval is not None and approval.status is ApprovalStatus.PENDING


async def test_an_approval_decided_as_it_expires_is_resolved_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The approve command holds the session's lock as the deadline passes: the
    decision wins, and the expiry writes nothing (no second resolution)."""
    from agents._core._commands import SubmitApproval
    from agents._session_commands import submit_approval

    async with open_runtime(RuntimeConfig(approval_timeout=5.0)) as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        request = await h.wait_for(s, "approval.requested")
        live = h.supervisor.sessions.get(s.id)
        assert live is not None
        async with live.locked():
            await trio.sleep(10)  # past the deadline: the turn's expiry waits for the lock
            approve = SubmitApproval("c1", str(request.data["call_id"]), "approve")
            ack = await submit_approval(live, h.supervisor.modes, approve)
            assert ack.status == "accepted"
        await h.answer_tool(s, "written")
        ended = await h.wait_for(s, "turn.ended")
        assert ended.data["reason"] == "completed"
        resolved = [e for e in await h.events(s) if e.type == "approval.resolved"]
        assert [e.data["decision"] for e in resolved] == ["approve"]
        await h.assert_paired(s)
