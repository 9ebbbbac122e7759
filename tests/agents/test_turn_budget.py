"""One step budget per turn, subtasks included, and a limit on how deep subtasks nest.

SPEC §4.1: "Cap: 25 LLM steps per turn (configurable)". The cap is the turn's:
a subtask spends it too, and running out anywhere ends the whole turn
``max_steps``, its open subtasks closed innermost first.
"""

from __future__ import annotations

import json

import trio

from agents import RuntimeConfig
from agents.testing import SessionState
from sessions import Event, Session, open_memory_store

from .harness import Harness, open_runtime


def nested(depth: int, innermost: str = "stream 1 words") -> str:
    """A message that makes the scripted architect delegate *depth* times in a row."""
    message = innermost
    for _ in range(depth):
        message = "call new_task " + json.dumps({"mode": "architect", "message": message})
    return message


async def answer_calls(h: Harness, s: Session, after: int = 0) -> Event:
    """Answer every ``tool.call`` after *after* until a ``turn.ended``, which is returned."""
    with trio.fail_after(10):
        async with h.store.subscribe(s.id, after=after) as sub:
            async for ev in sub:
                if ev.type == "tool.call":
                    command = {"type": "tool_result", "call_id": ev.data["call_id"], "result": "x"}
                    ack = await h.send(s, dict(command))
                    assert ack.status == "accepted", ack
                elif ev.type == "turn.ended":
                    return ev
    raise AssertionError("subscription ended")


def steps(events: list[Event]) -> int:
    """The LLM steps a log shows: one assistant message each (closings are truncated)."""
    return sum(1 for ev in events if ev.type == "message" and not ev.data["truncated"])


def of(events: list[Event], type_: str) -> list[Event]:
    return [ev for ev in events if ev.type == type_]


async def test_a_subtask_spends_the_turns_steps_and_running_out_ends_the_turn() -> None:
    async with open_runtime(RuntimeConfig(max_steps=3)) as h:
        s = await h.session()
        await h.message(s, "first loop then loop")
        end = await answer_calls(h, s)
        assert end.data["reason"] == "max_steps"
        events = await h.events(s)
        # The parent's new_task, then two of the child's read_file steps: three in all.
        assert steps(events) == 3
        assert len(of(events, "tool.call")) == 2
        [started] = of(events, "subtask.started")
        # The child is closed first, then the parent's call it answers, then the turn.
        tail = events[-3:]
        assert [ev.type for ev in tail] == ["subtask.ended", "tool.result", "turn.ended"]
        assert tail[0].data["subtask_id"] == started.data["subtask_id"]
        assert tail[0].data["ok"] is False
        assert tail[1].data["call_id"] == started.data["call_id"]
        assert tail[1].data["ok"] is False
        assert "subtask_id" not in tail[1].data  # the parent's (main) context
        await h.assert_paired(s)


async def test_no_subtask_starts_without_a_step_left_and_nested_ones_close_inside_out() -> None:
    async with open_runtime(RuntimeConfig(max_steps=2)) as h:
        s = await h.session("architect")
        await h.message(s, nested(3))
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "max_steps"
        events = await h.events(s)
        assert steps(events) == 2
        # Step 2 (the child's) asked for a grandchild: with no step left it never starts.
        [started] = of(events, "subtask.started")
        child = started.data["subtask_id"]
        tail = events[-4:]
        assert [ev.type for ev in tail] == [
            "tool.result",  # the child's new_task, in the child's context
            "subtask.ended",  # the child
            "tool.result",  # the main context's new_task the child answers
            "turn.ended",
        ]
        assert tail[0].data["subtask_id"] == child and tail[0].data["ok"] is False
        assert tail[1].data["subtask_id"] == child
        assert tail[2].data["call_id"] == started.data["call_id"]
        assert "subtask_id" not in tail[2].data
        await h.assert_paired(s)


async def test_a_delegation_deeper_than_the_limit_is_refused_to_the_model() -> None:
    async with open_runtime(RuntimeConfig(max_subtask_depth=2)) as h:
        s = await h.session("architect")
        await h.message(s, nested(5))
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "completed"
        events = await h.events(s)
        started = of(events, "subtask.started")
        assert len(started) == 2
        deepest = started[1].data["subtask_id"]
        refusals = [
            ev
            for ev in of(events, "tool.result")
            if str(ev.data["content"]).startswith("too many nested subtasks")
        ]
        assert [(ev.data["ok"], ev.data.get("subtask_id")) for ev in refusals] == [(False, deepest)]
        assert "limit 2" in str(refusals[0].data["content"])
        # The refused call was never sent anywhere: only its result answers it.
        assert all(ev.data.get("call_id") != refusals[0].data["call_id"] for ev in started)
        await h.assert_paired(s)


async def test_delegations_nest_at_most_four_deep_by_default() -> None:
    assert RuntimeConfig().max_subtask_depth == 4
    async with open_runtime() as h:
        s = await h.session("architect")
        await h.message(s, nested(12))
        end = await h.wait_for(s, "turn.ended")
        assert end.data["reason"] == "completed"
        events = await h.events(s)
        assert len(of(events, "subtask.started")) == 4
        assert len(of(events, "subtask.ended")) == 4
        await h.assert_paired(s)


async def test_nested_subtask_frames_name_the_child_and_a_restart_resumes_them() -> None:
    async with open_memory_store() as store:
        async with open_runtime(store=store) as h:
            s = await h.session("architect")
            await h.message(s, nested(2, "read notes.md"))
            call = await h.wait_for(s, "tool.call")
        events = await store.read_events(s.id)
        outer, inner = (str(ev.data["subtask_id"]) for ev in of(events, "subtask.started"))
        assert outer != inner  # the child's frame is not stamped with its parent's id
        assert call.data["subtask_id"] == inner
        # The log alone knows both open subtasks and how they nest.
        state = SessionState(s.id)
        state.apply_all(events)
        assert set(state.open_subtasks) == {outer, inner}
        assert state.subtask_depth(inner) == 2
        async with open_runtime(store=store) as h2:
            end = await answer_calls(h2, s, after=call.seq - 1)
            assert end.data["reason"] == "completed"
            events = await store.read_events(s.id)
            ended = [ev.data["subtask_id"] for ev in of(events, "subtask.ended")]
            assert ended == [inner, outer]
            assert all(ev.data["ok"] is True for ev in of(events, "subtask.ended"))
            await h2.assert_paired(s)


async def test_a_resumed_turn_goes_on_with_what_is_left_of_its_steps() -> None:
    config = RuntimeConfig(max_steps=3)
    async with open_memory_store() as store:
        async with open_runtime(config, store=store) as h:
            s = await h.session("ask")
            await h.message(s, "loop")
            call = await h.wait_for(s, "tool.call")
        state = SessionState(s.id)
        state.apply_all(await store.read_events(s.id))
        assert state.turn_steps == 1
        async with open_runtime(config, store=store) as h2:
            end = await answer_calls(h2, s, after=call.seq - 1)
            assert end.data["reason"] == "max_steps"
            events = await store.read_events(s.id)
            assert steps(events) == 3  # not 1 + a fresh 3
            await h2.assert_paired(s)
