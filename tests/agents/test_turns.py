"""Scenario tests of whole turns: modes, approvals, delegation, cancel, caps, recovery."""

from __future__ import annotations

import trio
import trio.testing

from agents import RuntimeConfig
from agents._providers._scripted import stream_words
from sessions import (
    JSON,
    Append,
    Event,
    JSONObject,
    NewEvent,
    Turn,
    TurnStatus,
    now,
    open_memory_store,
)

from .harness import Harness, open_runtime, seqs_contiguous


async def ended(h: Harness, session_id: str, after: int = 0) -> str:
    session = await h.store.get_session(session_id)
    assert session is not None
    ev = await h.wait_for(session, "turn.ended", after=after)
    reason = ev.data["reason"]
    assert isinstance(reason, str)
    return reason


async def test_coder_writes_a_file_after_approval() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create hello.py with print('hi')")
        req = await h.approve_next(s)
        assert req.data["name"] == "write_file"
        assert req.data["arguments"] == {"path": "hello.py", "content": "print('hi')"}
        assert "write_file" in str(req.data["rule"])
        call = await h.answer_tool(s, "wrote 11 bytes")
        assert call.data["call_id"] == req.data["call_id"]
        assert await ended(h, s.id) == "completed"
        types = await h.types(s)
        assert types[:2] == ["user.message", "turn.started"]
        order = [
            "approval.requested",
            "approval.resolved",
            "tool.call",
            "tool.result",
            "message",
            "turn.ended",
        ]
        positions = [types.index(t, types.index("approval.requested")) for t in order]
        assert positions == sorted(positions)
        assert types.count("turn.ended") == 1
        assert "text.delta" in types[types.index("tool.result") :]
        assert seqs_contiguous(await h.events(s))
        await h.assert_paired(s)
        history = await h.supervisor.history(s)
        assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]


async def test_orchestrator_routes_explain_to_ask() -> None:
    async with open_runtime() as h:
        s = await h.session()
        assert s.current_agent == "orchestrator"
        await h.message(s, "explain how the event log works")
        switched = await h.wait_for(s, "agent.switched")
        assert switched.data["from"] == "orchestrator"
        assert switched.data["to"] == "ask"
        assert await ended(h, s.id) == "completed"
        final = await h.wait_for(s, "message")
        assert final.data["agent"] == "ask"
        again = await h.store.get_session(s.id)
        assert again is not None and again.current_agent == "ask"
        assert again.title == "explain how the event log works"
        await h.assert_paired(s)


async def test_architect_may_write_markdown_only() -> None:
    async with open_runtime() as h:
        s = await h.session("architect")
        await h.message(s, "create app.py with print(1)")
        refused = await h.wait_for(s, "tool.result")
        assert refused.data["ok"] is False
        assert "app.py" in str(refused.data["content"])
        assert await ended(h, s.id) == "completed"
        assert "approval.requested" not in await h.types(s)
        last = (await h.events(s))[-1].seq
        await h.message(s, "create docs/plan.md with # Plan")
        req = await h.approve_next(s, after=last)
        assert req.data["arguments"] == {"path": "docs/plan.md", "content": "# Plan"}
        await h.answer_tool(s, "ok", after=last)
        assert await ended(h, s.id, after=last) == "completed"
        await h.assert_paired(s)


async def test_ask_cannot_write() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        await h.message(s, "create notes.txt with hello")
        refused = await h.wait_for(s, "tool.result")
        assert refused.data["ok"] is False
        assert "ask" in str(refused.data["content"])
        assert await ended(h, s.id) == "completed"
        assert "tool.call" not in await h.types(s)
        await h.assert_paired(s)


async def test_debug_runs_a_command() -> None:
    async with open_runtime() as h:
        s = await h.session("debug")
        await h.message(s, "run pytest -x")
        req = await h.approve_next(s)
        assert req.data["name"] == "execute_command"
        call = await h.answer_tool(s, {"exit_code": 0, "output": "1 passed"})
        assert call.data["arguments"] == {"command": "pytest -x"}
        assert await ended(h, s.id) == "completed"
        await h.assert_paired(s)


async def test_orchestrator_delegates_two_part_request() -> None:
    async with open_runtime() as h:
        s = await h.session()
        await h.message(s, "first explain the log then explain the writer")
        assert await ended(h, s.id) == "completed"
        types = await h.types(s)
        assert types.count("subtask.started") == 2
        assert types.count("subtask.ended") == 2
        events = await h.events(s)
        started = [ev for ev in events if ev.type == "subtask.started"]
        assert [ev.data["agent"] for ev in started] == ["ask", "ask"]
        child_ids = {ev.data["subtask_id"] for ev in started}
        child_messages = [
            ev for ev in events if ev.type == "message" and ev.data.get("subtask_id") in child_ids
        ]
        assert child_messages, "the children's own messages are streamed inside their frames"
        ended_events = [ev for ev in events if ev.type == "subtask.ended"]
        assert all(ev.data["ok"] is True for ev in ended_events)
        # The parent's history holds only its own calls and the children's results.
        history = await h.supervisor.history(s)
        assert [m.role for m in history].count("tool") == 3  # two new_task + completion
        await h.assert_paired(s)


async def test_edit_with_invalid_arguments_is_refused() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x = 1")
        req = await h.wait_for(s, "approval.requested")
        call_id = req.data["call_id"]
        bad = await h.send(
            s,
            {
                "type": "approval",
                "call_id": call_id,
                "decision": "edit",
                "arguments": {"path": "/etc/passwd", "content": "x"},
            },
        )
        assert bad.status == "rejected"
        assert bad.code == "invalid_arguments"
        assert bad.error is not None and "/etc/passwd" in bad.error
        assert (await h.store.get_approval(s.id, str(call_id))) is not None
        good = await h.send(
            s,
            {
                "type": "approval",
                "call_id": call_id,
                "decision": "edit",
                "arguments": {"path": "b.py", "content": "x = 2"},
            },
        )
        assert good.status == "accepted"
        call = await h.wait_for(s, "tool.call")
        assert call.data["arguments"] == {"path": "b.py", "content": "x = 2"}
        await h.answer_tool(s, "ok")
        assert await ended(h, s.id) == "completed"
        await h.assert_paired(s)


async def test_reject_with_feedback_reaches_the_model() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "delete important.txt")
        req = await h.wait_for(s, "approval.requested")
        ack = await h.send(
            s,
            {
                "type": "approval",
                "call_id": req.data["call_id"],
                "decision": "reject",
                "feedback": "keep it",
            },
        )
        assert ack.status == "accepted"
        assert await ended(h, s.id) == "completed"
        result = await h.wait_for(s, "tool.result")
        assert result.data["content"] == "rejected by user: keep it"
        final = await h.wait_for(s, "message", after=result.seq)
        assert "keep it" in str(final.data["content"])
        assert "tool.call" not in await h.types(s)
        await h.assert_paired(s)


async def test_approval_expires_as_reject(autojump_clock: trio.testing.MockClock) -> None:
    async with open_runtime(RuntimeConfig(approval_timeout=30)) as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        req = await h.wait_for(s, "approval.requested")
        assert await ended(h, s.id) == "completed"
        resolved = await h.wait_for(s, "approval.resolved")
        assert resolved.data["by"] == "timeout"
        assert resolved.data["decision"] == "reject"
        approval = await h.store.get_approval(s.id, str(req.data["call_id"]))
        assert approval is not None and approval.status.value == "expired"
        late = await h.send(
            s, {"type": "approval", "call_id": req.data["call_id"], "decision": "approve"}
        )
        assert late.status == "rejected" and late.code == "already_resolved"
        await h.assert_paired(s)


async def test_cancel_mid_stream_commits_truncated_text(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        ack = await h.message(s, "stream 20 words then hold cancel then 480 words")
        text: list[str] = []

        def completes_head(ev: Event) -> bool:
            text.append(str(ev.data["text"]))
            assert stream_words(20).startswith("".join(text)), "text went past the gate"
            return "".join(text) == stream_words(20)

        # Every word before the gate is committed: the reply is held, still running.
        with trio.fail_after(60):
            await h.wait_for(s, "text.delta", where=completes_head)
        start = trio.current_time()
        # A held turn never ends by itself: if cancel did not cancel, this would wait
        # forever, so the deadline (jumped to at once by the autojump clock) fails it.
        with trio.fail_after(60):
            cancel = await h.send(s, {"type": "cancel", "turn_id": ack.turn_id})
            assert cancel.status == "accepted"
            assert await ended(h, s.id) == "cancelled"
        # Virtual time (autojump): no timer of a second or more is on the cancel path.
        assert trio.current_time() - start < 1.0
        message = await h.wait_for(s, "message")
        assert message.data["truncated"] is True
        assert message.data["content"] == stream_words(20)
        deltas = [ev for ev in await h.events(s) if ev.type == "text.delta"]
        assert message.data["content"] == "".join(str(ev.data["text"]) for ev in deltas)
        assert (await h.types(s)).count("turn.ended") == 1
        await h.assert_paired(s)
        # The cancel closed the model's stream too: nothing holds the gate any more.
        other = await h.session("ask")
        await h.message(other, "release cancel")
        assert await ended(h, other.id) == "completed"
        answer = await h.wait_for(other, "message")
        assert answer.data["content"] == "No stream is held on cancel."


async def test_cancel_mid_approval_resolves_it_as_cancelled() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "create a.py with x")
        req = await h.wait_for(s, "approval.requested")
        cancel = await h.send(s, {"type": "cancel"})
        assert cancel.status == "accepted"
        assert await ended(h, s.id) == "cancelled"
        resolved = await h.wait_for(s, "approval.resolved")
        assert resolved.data["by"] == "cancel"
        approval = await h.store.get_approval(s.id, str(req.data["call_id"]))
        assert approval is not None and approval.status.value == "cancelled"
        assert await h.store.pending_approvals(s.id) == []
        await h.assert_paired(s)


async def test_max_steps_ends_the_turn() -> None:
    async with open_runtime(RuntimeConfig(max_steps=3)) as h:
        s = await h.session("ask")
        await h.message(s, "loop")
        for n in range(3):
            await h.answer_tool(s, f"content {n}", after=(await h.events(s))[-1].seq)
        assert await ended(h, s.id) == "max_steps"
        assert (await h.types(s)).count("message") == 3
        await h.assert_paired(s)


async def test_on_busy_reject_queue_and_interrupt() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        first = await h.message(s, "create a.py with x")
        await h.wait_for(s, "approval.requested")
        busy = await h.send(s, {"type": "user_message", "content": "hi", "on_busy": "reject"})
        assert busy.status == "rejected" and busy.code == "busy"
        queued = await h.message(s, "explain the plan")
        assert queued.turn_id != first.turn_id
        interrupt = await h.message(s, "explain now", on_busy="interrupt")
        ends = []
        last = 0
        for _ in range(3):
            ev = await h.wait_for(s, "turn.ended", after=last)
            ends.append((ev.turn_id, ev.data["reason"]))
            last = ev.seq
        assert ends == [
            (first.turn_id, "interrupted"),
            (interrupt.turn_id, "completed"),
            (queued.turn_id, "completed"),
        ]
        await h.assert_paired(s)


async def test_repeated_command_id_has_one_effect() -> None:
    async with open_runtime() as h:
        s = await h.session("ask")
        command = {"type": "user_message", "id": "c-1", "content": "hello there"}
        one = await h.send(s, dict(command))
        two = await h.send(s, dict(command))
        assert one.status == "accepted"
        assert two.status == "duplicate" and two.turn_id == one.turn_id
        await ended(h, s.id)
        assert (await h.types(s)).count("user.message") == 1


async def test_bad_commands_are_refused_with_a_reason() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        cases: list[tuple[dict[str, JSON], str]] = [
            ({"type": "nope", "id": "x"}, "unknown_command"),
            ({"type": "user_message", "id": "y"}, "invalid_command"),
            ({"type": "tool_result", "id": "z", "call_id": "missing", "result": 1}, "unknown_call"),
            ({"type": "cancel", "id": "w"}, "no_turn"),
            (
                {"type": "user_message", "id": "v", "content": "x", "agent": "ghost"},
                "unknown_agent",
            ),
        ]
        for command, code in cases:
            ack = await h.supervisor.submit(s, command)
            assert ack.status == "rejected", command
            assert ack.code == code and ack.error
        assert await h.store.read_events(s.id) == []


async def test_duplicate_tool_result_is_refused() -> None:
    async with open_runtime() as h:
        s = await h.session("coder")
        await h.message(s, "read main.py")
        call = await h.answer_tool(s, "print(1)")
        again = await h.send(
            s, {"type": "tool_result", "call_id": call.data["call_id"], "result": "other"}
        )
        assert again.status == "rejected" and again.code == "already_resolved"
        assert await ended(h, s.id) == "completed"


async def test_restart_resumes_a_turn_waiting_for_approval() -> None:
    async with open_memory_store() as store:
        async with open_runtime(store=store) as h:
            s = await h.session("coder")
            await h.message(s, "create a.py with x")
            req = await h.wait_for(s, "approval.requested")
        # The first supervisor is gone; the turn stays open in the store (its row
        # says running: that it waits is derived from its log, a pending approval).
        assert [t.status for t in await store.active_turns()] == [TurnStatus.RUNNING]
        assert len(await store.pending_approvals(s.id)) == 1
        async with open_runtime(store=store) as h2:
            ack = await h2.send(
                s, {"type": "approval", "call_id": req.data["call_id"], "decision": "approve"}
            )
            assert ack.status == "accepted"
            await h2.answer_tool(s, "ok")
            assert await ended(h2, s.id) == "completed"
            await h2.assert_paired(s)


async def test_restart_closes_a_streaming_turn_as_interrupted() -> None:
    async with open_memory_store() as store:
        async with open_runtime(store=store) as h:
            s = await h.session("ask")
        # What a crash mid-stream leaves behind: a running turn and some deltas.
        turn = Turn("turn_x", s.id, "ask", TurnStatus.RUNNING, now(), now())
        await store.append(
            Append(
                s.id,
                (
                    NewEvent("user.message", {"message_id": "m0", "content": "hi"}),
                    NewEvent("turn.started", {"agent": "ask", "user_message_seq": 1}, "turn_x"),
                    NewEvent("text.delta", {"message_id": "m1", "text": "Hello "}, "turn_x"),
                    NewEvent("text.delta", {"message_id": "m1", "text": "wor"}, "turn_x"),
                ),
                turn=turn,
            )
        )
        async with open_runtime(store=store) as h2:
            assert await ended(h2, s.id) == "interrupted"
            message = await h2.wait_for(s, "message")
            assert message.data["message_id"] == "m1"
            assert message.data["content"] == "Hello wor"
            assert message.data["truncated"] is True
            last = (await h2.events(s))[-1].seq
            ack = await h2.message(s, "hello again")
            again = await h2.wait_for(s, "turn.ended", after=last)
            assert again.turn_id == ack.turn_id
            assert again.data["reason"] == "completed"
            await h2.assert_paired(s)


async def test_restart_closes_a_turn_that_no_longer_waits_as_interrupted() -> None:
    """Waiting is read from the log: answered calls mean the turn was working."""
    async with open_memory_store() as store:
        async with open_runtime(store=store) as h:
            s = await h.session("coder")
        # An older version's row says awaiting_tool, but the call has its result:
        # the crash came while the next LLM step was streaming.
        turn = Turn("turn_x", s.id, "coder", TurnStatus.AWAITING_TOOL, now(), now())
        call: JSONObject = {"call_id": "c1", "name": "read_file", "arguments": {"path": "a.py"}}
        await store.append(
            Append(
                s.id,
                (
                    NewEvent("user.message", {"message_id": "m0", "content": "read a.py"}),
                    NewEvent("turn.started", {"agent": "coder", "user_message_seq": 1}, "turn_x"),
                    NewEvent(
                        "message",
                        {
                            "message_id": "m1",
                            "role": "assistant",
                            "content": "",
                            "agent": "coder",
                            "truncated": False,
                            "tool_calls": [call],
                        },
                        "turn_x",
                    ),
                    NewEvent("tool.call", call, "turn_x"),
                    NewEvent(
                        "tool.result",
                        {"call_id": "c1", "ok": True, "summary": "x", "content": "x"},
                        "turn_x",
                    ),
                ),
                turn=turn,
            )
        )
        async with open_runtime(store=store) as h2:
            assert await ended(h2, s.id) == "interrupted"
            assert [t.status for t in await store.active_turns()] == []
            await h2.assert_paired(s)
